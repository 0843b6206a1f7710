"""What a model host (a GPU actor of `actors.hosts`) does: load one model, caption batches for its cells."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import numpy as np
from PIL import Image

from actors.backends import make_captioner
from actors.base import Captioner, CaptionRequest, CaptionResult
from actors.custom import load_custom
from actors.energy import EnergyMeter


def images_of(batch: dict[str, np.ndarray], i: int) -> list[Image.Image]:
    """The sample's frames (video scenes, JPEG bytes) or its one decoded image."""
    if "frames_jpeg" in batch:
        import io

        return [Image.open(io.BytesIO(bytes(b))).convert("RGB") for b in batch["frames_jpeg"][i]]
    return [Image.fromarray(np.asarray(batch["image"][i], dtype=np.uint8))]


class CellOutOfMemory(RuntimeError):
    """Raised as `oom: ...` so the cell's failure reason reads `oom`."""


def generate_with_oom_retry(captioner: Captioner, requests: list[CaptionRequest],
                            kwargs: dict) -> list[CaptionResult]:
    """CUDA out of memory: retry once at half the batch size (two halves), then give up with `oom`."""
    import torch

    try:
        return captioner.generate(requests, kwargs)
    except torch.cuda.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if len(requests) == 1:
        raise CellOutOfMemory("oom: CUDA out of memory at batch size 1")
    half = (len(requests) + 1) // 2
    try:
        return [r for chunk in (requests[:half], requests[half:]) for r in captioner.generate(chunk, kwargs)]
    except torch.cuda.OutOfMemoryError as err:
        raise CellOutOfMemory(f"oom: CUDA out of memory at batch size {len(requests)} and {half}") from err


def effective_generation(family_defaults: dict, cell_kwargs: dict) -> dict:
    """The family's defaults under the cell's settings, with min length never above the budget."""
    kwargs = {**family_defaults, **cell_kwargs}
    for key in ("min_new_tokens", "min_length"):
        if key in kwargs:
            kwargs[key] = min(kwargs[key], kwargs["max_new_tokens"])
    return kwargs


class CaptionStage:
    """One model at one precision, loaded once, captioning batches for every cell that uses that model
    (cells differ in prompt and generation settings, never in what is loaded: `actors.hosts.load_key`).
    Input rows come from the decode stage; errors pass through untouched."""

    def __init__(self, cell_json: str, energy_country: str | None):
        from sweep.cells import Cell

        cell = Cell.model_validate_json(cell_json)
        m = cell.model
        if m.loader:
            self.captioner = load_custom(m.loader, m.id, cell.precision)
        else:
            self.captioner = make_captioner(
                m.id, m.family, m.revision, m.trust_remote_code, cell.precision, cell.backend,
                weights_mode=m.weights,
            )
        self.actor_id = f"{socket.gethostname()}:{os.getpid()}"
        import ray

        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        self.energy = EnergyMeter(energy_country)
        self.cells: dict[str, tuple[Any, dict, str]] = {}  # cell json -> (cell, generate kwargs, report)
        self.cells_before: dict[str, int] = {}  # cell json -> cells this load had begun before it

    def begin_cell(self, cell_json: str) -> int:
        """A new cell starts on this model: its peak memory is its own (unless another cell shares the
        host meanwhile). Returns how many cells this load began before (0: loaded for this cell)."""
        self.captioner.reset_peak_memory()
        return self.cells_before.setdefault(cell_json, len(self.cells_before))

    def _cell_settings(self, cell_json: str) -> tuple[Any, dict, str]:
        if cell_json not in self.cells:
            from sweep.cells import Cell

            cell = Cell.model_validate_json(cell_json)
            kwargs = effective_generation(self.captioner.family.generation_defaults, cell.generate_kwargs())
            report = {**self.captioner.report.__dict__, "generation": kwargs}
            self.cells[cell_json] = (cell, kwargs, json.dumps(report, sort_keys=True))
        return self.cells[cell_json]

    def caption(self, batch: dict[str, np.ndarray], cell_json: str) -> dict[str, list]:
        cell, generate_kwargs, report_json = self._cell_settings(cell_json)
        n = len(batch["sample_id"])
        errors = [str(e) for e in batch["error"]]
        ok = [i for i in range(n) if not errors[i]]
        captions = [""] * n
        tokens = [0] * n
        self.energy.start()
        start_ts = time.time()
        start = time.perf_counter()
        if ok:
            requests = [
                CaptionRequest(sample_id=str(batch["sample_id"][i]), images=images_of(batch, i),
                               prompt=cell.prompt)
                for i in ok
            ]
            results = generate_with_oom_retry(self.captioner, requests, generate_kwargs)
            for i, result in zip(ok, results, strict=True):
                captions[i] = result.caption
                tokens[i] = result.generated_tokens
        elapsed = time.perf_counter() - start
        kwh, co2_kg = self.energy.stop()
        peak, peak_kind = self.captioner.peak_memory()
        per_image = elapsed / len(ok) if ok else 0.0
        return {
            "sample_id": [str(s) for s in batch["sample_id"]],
            "caption": captions,
            "generated_tokens": tokens,
            "error": errors,
            "processing_time_sec": [per_image if not e else 0.0 for e in errors],
            "batch_latency_sec": [elapsed] * n,
            "batch_images": [len(ok)] * n,
            "batch_start_ts": [start_ts] * n,
            "batch_end_ts": [start_ts + elapsed] * n,
            "image_width": [int(w) for w in batch["image_width"]],
            "image_height": [int(h) for h in batch["image_height"]],
            "actor_id": [self.actor_id] * n,
            "node_id": [self.node_id] * n,
            "peak_memory_bytes": [peak] * n,
            "peak_memory_kind": [peak_kind] * n,
            # the batch's share of energy goes on its first row so that summing the column is right
            "energy_kwh": [kwh if i == 0 else 0.0 for i in range(n)],
            "emissions_kg": [co2_kg if i == 0 else 0.0 for i in range(n)],
            "load_report": [report_json] * n,
            "model_cells_before": [self.cells_before.get(cell_json, 0)] * n,
        }
