"""One cell's Ray Data pipeline: samples → decode/resize (CPU tasks) → caption on the cell's model hosts
(GPU actors lent by the sweep's `HostPool`, kept loaded across the cells of one model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweep.cells import Cell
from sweep.config import GridConfig
from sweep.data import Sample
from sweep.stages import DecodeFrames, DecodeImage

CAPTION_COLUMNS = [
    "sample_id", "caption", "generated_tokens", "error", "processing_time_sec", "batch_latency_sec",
    "batch_images", "batch_start_ts", "batch_end_ts", "image_width", "image_height", "actor_id", "node_id",
    "peak_memory_bytes", "peak_memory_kind", "energy_kwh", "emissions_kg", "load_report",
    "model_cells_before",
]


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


def caption_samples(cell: Cell, samples: list[Sample], settings: PipelineSettings,
                    on_batch: Callable[[pd.DataFrame], None], host_pool: Any) -> int:
    """Caption every sample with the cell's model, handing each finished batch to `on_batch` as it
    arrives (so a crash loses at most the batches in flight). Returns the number of rows produced.

    Ray Data decodes in CPU tasks and streams the batches here; each goes straight to one of the cell's
    hosts (round robin), with two batches queued per host so that a host never waits for the next one.
    """
    import ray

    video = any(s.video_id for s in samples)
    rows = [{"sample_id": s.sample_id, "path": s.path, "frame_times": list(s.frame_times), "error": s.error}
            for s in samples]
    cell_json = cell.model_dump_json()
    set_id, hosts = ray.get(host_pool.acquire.remote(cell_json))
    healthy = False
    produced = 0
    in_flight: list[Any] = []

    def collect(keep: int) -> None:
        nonlocal produced
        while len(in_flight) > keep:
            (ref,), _ = ray.wait(in_flight, num_returns=1)
            in_flight.remove(ref)
            batch = pd.DataFrame(ray.get(ref))
            on_batch(batch[CAPTION_COLUMNS])
            produced += len(batch)

    try:
        # waits for the model to load; a load error surfaces here, before any image is read
        ray.get([host.begin_cell.remote(cell_json) for host in hosts])
        # about one block per batch, so decoding streams batch by batch
        blocks = max(1, min(len(rows), math.ceil(len(rows) / cell.batch_size)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        decode = DecodeFrames(settings.image_max_side) if video else DecodeImage(settings.image_max_side)
        ds = ds.map(decode, num_cpus=settings.cpus_per_decode_task)
        batches = ds.iter_batches(batch_size=cell.batch_size, batch_format="numpy", prefetch_batches=2)
        for i, batch in enumerate(batches):
            in_flight.append(hosts[i % len(hosts)].caption.remote(batch, cell_json))
            collect(keep=2 * len(hosts))
        collect(keep=0)
        healthy = True
        return produced
    finally:
        ray.get(host_pool.release.remote(set_id, healthy))
