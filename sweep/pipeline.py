"""One cell's Ray Data pipeline: samples → decode/resize (CPU tasks) → caption (GPU actor pool)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from sweep.cells import Cell
from sweep.config import GridConfig
from sweep.data import Sample
from sweep.stages import DecodeFrames, DecodeImage

CAPTION_COLUMNS = [
    "sample_id", "caption", "generated_tokens", "error", "processing_time_sec", "batch_latency_sec",
    "batch_images", "batch_start_ts", "batch_end_ts", "image_width", "image_height", "actor_id", "node_id",
    "peak_memory_bytes", "peak_memory_kind", "energy_kwh", "emissions_kg", "load_report",
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
                    on_batch: Callable[[pd.DataFrame], None]) -> int:
    """Caption every sample with the cell's model, handing each finished batch to `on_batch` as it
    arrives (so a crash loses at most the batches in flight). Returns the number of rows produced."""
    import ray
    from ray.data import ActorPoolStrategy

    from actors.stage import CaptionStage

    video = any(s.video_id for s in samples)
    rows = [{"sample_id": s.sample_id, "path": s.path, "frame_times": list(s.frame_times), "error": s.error}
            for s in samples]
    # about one block per batch, so the actor pool can shard the images across replicas
    blocks = max(1, min(len(rows), math.ceil(len(rows) / cell.batch_size)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    decode = DecodeFrames(settings.image_max_side) if video else DecodeImage(settings.image_max_side)
    ds = ds.map(decode, num_cpus=settings.cpus_per_decode_task)
    ds = ds.map_batches(
        CaptionStage,
        fn_constructor_kwargs={
            "cell_json": cell.model_dump_json(), "energy_country": settings.energy_country,
        },
        batch_size=cell.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=cell.replicas),
        num_gpus=cell.gpus_per_actor,
        # GPU actors must not hold a CPU: on small machines that silently idles logical GPUs
        num_cpus=0,
        # a dead actor is restarted and its batches retried; the store drops any duplicate rows
        max_restarts=2,
        max_task_retries=2,
        # Ray's own accelerator label: requires the node resource "accelerator_type:<name>"
        accelerator_type=settings.accelerator_type,
    )
    produced = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
        on_batch(batch[CAPTION_COLUMNS])
        produced += len(batch)
    return produced
