"""One cell's Ray Data pipeline: samples → decode/resize (CPU tasks) → caption on the cell's model hosts
(GPU actors lent by the sweep's `HostPool`, kept loaded across the cells of one model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from actors.contract import BatchResult, CellStart, SampleBatch
from sweep.cells import Cell
from sweep.config import GridConfig
from sweep.data import Sample
from sweep.stages import DecodeFrames, DecodeImage


@dataclass(frozen=True)
class PipelineSettings:
    """The grid settings the per-cell pipeline needs (the grid itself stays on the driver)."""

    image_max_side: int
    cpus_per_decode_task: float
    energy_country: str | None
    accelerator_type: str | None = None  # e.g. "L4": model actors only on nodes with that accelerator

    @classmethod
    def from_grid(cls, grid: GridConfig) -> PipelineSettings:
        return cls(
            image_max_side=grid.dataset.image_max_side,
            cpus_per_decode_task=grid.resources.cpus_per_decode_task,
            energy_country=grid.energy.country_iso_code if grid.energy.enabled else None,
            accelerator_type=grid.resources.accelerator_type,
        )


def sample_batch(batch: dict[str, Any], video: bool) -> SampleBatch:
    """Ray Data's numpy batch as the hosts' typed input."""
    return SampleBatch(
        sample_ids=[str(s) for s in batch["sample_id"]],
        errors=[str(e) for e in batch["error"]],
        widths=[int(w) for w in batch["image_width"]],
        heights=[int(h) for h in batch["image_height"]],
        pixels=None if video else list(batch["image"]),
        frames_jpeg=[list(frames) for frames in batch["frames_jpeg"]] if video else None,
    )


def caption_rows(result: BatchResult) -> pd.DataFrame:
    """A host's answer as caption-table rows: the batch's facts beside each of its samples (what each
    image waited, where it ran); the batch's energy on its first row, so that summing the column is right."""
    rows = pd.DataFrame([vars(s) for s in result.samples])
    n = len(rows)
    rows["batch_latency_sec"] = result.latency_sec
    rows["batch_images"] = result.captioned
    rows["batch_start_ts"] = result.start_ts
    rows["batch_end_ts"] = result.end_ts
    rows["actor_id"] = result.actor_id
    rows["node_id"] = result.node_id
    rows["peak_memory_bytes"] = result.peak_memory_bytes
    rows["peak_memory_kind"] = result.peak_memory_kind
    rows["energy_kwh"] = [result.energy_kwh if i == 0 else 0.0 for i in range(n)]
    rows["emissions_kg"] = [result.emissions_kg if i == 0 else 0.0 for i in range(n)]
    rows["model_cells_before"] = result.model_cells_before
    return rows


def caption_samples(cell: Cell, samples: list[Sample], settings: PipelineSettings,
                    on_batch: Callable[[pd.DataFrame], None], host_pool: Any,
                    on_start: Callable[[list[CellStart]], None] | None = None) -> int:
    """Caption every sample with the cell's model, handing each finished batch to `on_batch` as it
    arrives (so a crash loses at most the batches in flight), and the hosts' load reports to `on_start`
    once, before the first batch. Returns the number of rows produced.

    Ray Data decodes in CPU tasks and streams the batches here; each goes straight to one of the cell's
    hosts (round robin), with two batches queued per host so that a host never waits for the next one.
    """
    import ray

    video = any(s.video_id for s in samples)
    rows = [{"sample_id": s.sample_id, "path": s.path, "frame_times": list(s.frame_times), "error": s.error}
            for s in samples]
    generation = cell.generation()
    set_id, hosts = ray.get(host_pool.acquire.remote(cell.load_spec()))
    healthy = False
    produced = 0
    in_flight: list[Any] = []

    def collect(keep: int) -> None:
        nonlocal produced
        while len(in_flight) > keep:
            (ref,), _ = ray.wait(in_flight, num_returns=1)
            in_flight.remove(ref)
            batch = caption_rows(ray.get(ref))
            on_batch(batch)
            produced += len(batch)

    try:
        # waits for the model to load; a load error surfaces here, before any image is read
        starts = ray.get([host.begin_cell.remote(cell.cell_id, generation) for host in hosts])
        if on_start:
            on_start(starts)
        # about one block per batch, so decoding streams batch by batch
        blocks = max(1, min(len(rows), math.ceil(len(rows) / cell.batch_size)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        decode = DecodeFrames(settings.image_max_side) if video else DecodeImage(settings.image_max_side)
        ds = ds.map(decode, num_cpus=settings.cpus_per_decode_task)
        batches = ds.iter_batches(batch_size=cell.batch_size, batch_format="numpy", prefetch_batches=2)
        for i, batch in enumerate(batches):
            request = sample_batch(batch, video)
            in_flight.append(hosts[i % len(hosts)].caption.remote(request, generation, cell.cell_id))
            collect(keep=2 * len(hosts))
        collect(keep=0)
        healthy = True
        return produced
    finally:
        ray.get(host_pool.release.remote(set_id, healthy))
