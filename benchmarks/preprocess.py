"""12. The processor on the host vs in the decode tasks (issue 26, item 3): one cell's pipeline
(`sweep.execute.pipeline.caption_samples`, Ray decode tasks feeding one model host) with the tiny Qwen2-VL,
its processor widened to a real checkpoint's pixel range (up to 128 image tokens: `padding.widened_copy`),
coco-mini at 448 px, batch 8; the family's processor run on the host (inside each batch's time) and in the
decode tasks (`PipelineSettings.preprocess_in_decode_tasks`), alternated on one loaded model in one run.

Per variant: images/s over the generation window, the host's busy seconds per batch (its batch latency),
its idle seconds per batch (the window less the batches' latencies: what the feed did not deliver in
time), the processor's seconds per image wherever it ran, and whether the captions are identical."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import Context, log, median

TITLE = "12. Processor on the host vs in the decode tasks (tiny Qwen2-VL, 448 px, batch 8)"
IMAGE_MAX_SIDE = 448
BATCH_SIZE = 8
MAX_NEW_TOKENS = 4
VARIANTS = {"host": False, "decode_task": True}  # PipelineSettings.preprocess_in_decode_tasks


def grid_for(coco: Path, out: Path, model: Path) -> Any:
    from sweep.grid.config import GridConfig

    return GridConfig.model_validate({
        "name": "preprocess",
        "dataset": {"captions": str(coco / "captions_val2017.json"), "images": str(coco / "val2017"),
                    "image_max_side": IMAGE_MAX_SIDE},
        "models": [{"id": str(model)}],
        "precisions": ["fp32"],
        "backend": "hf",
        "max_new_tokens": [MAX_NEW_TOKENS],
        "generation": {"min_new_tokens": MAX_NEW_TOKENS, "num_beams": [1]},
        "resources": {"batch_size": BATCH_SIZE, "replicas": 1, "gpus_per_actor": 1},
        "output_dir": str(out),
    })


def one_call(cell: Any, samples: list[Any], settings: Any, pool: Any) -> tuple[dict[str, float], dict]:
    """caption_samples once: its window, images/s, host busy and idle seconds per batch, the processor's
    seconds per image; and the captions by sample id."""
    import pandas as pd

    from sweep.execute.pipeline import caption_samples
    from sweep.results.batches import per_image

    parts: list[Any] = []  # sweep.execute.pipeline.BatchRows: caption rows + the batch's row
    caption_samples(cell, samples, settings, lambda t: parts.append(t[None]), pool)
    batches = pd.DataFrame([part.batch for part in parts])
    rows = per_image(pd.concat([part.images for part in parts]), batches)
    window = float(rows["batch_end_ts"].max() - rows["batch_start_ts"].min())
    busy = float(batches["batch_latency_sec"].sum())
    ok = rows[rows["error"] == ""]
    return {
        "images_per_sec": len(ok) / window,
        "host_busy_seconds_per_batch": busy / len(batches),
        "host_idle_seconds_per_batch": max(0.0, window - busy) / len(batches),
        "preprocess_seconds_per_image": float(batches["preprocess_sec"].sum()) / len(ok),
        "preprocess_where": ",".join(sorted(set(batches["preprocess_where"]))),
    }, dict(zip(ok["sample_id"], ok["caption"], strict=True))


def bench_preprocess(coco: Path, work: Path, repeats: int, limit: int | None) -> dict[str, Any]:
    import ray

    from benchmarks import model_side
    from benchmarks.padding import widened_copy
    from sweep.data.sources import dataset_fingerprint, load_coco_samples
    from sweep.engine import init_ray, shutdown_ray
    from sweep.execute.hosts import HostPool
    from sweep.execute.pipeline import PipelineSettings
    from sweep.grid.cells import expand_cells

    model = widened_copy(model_side.model_path("tiny:qwen2_vl"), work / "qwen2_vl-wide")
    grid = grid_for(coco, work / "preprocess", model)
    samples = load_coco_samples(grid.dataset)[:limit]
    cell = expand_cells(grid, dataset_fingerprint(samples, IMAGE_MAX_SIDE))[0]
    init_ray(grid, [cell], None, False)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    captions: dict[str, dict] = {}
    try:
        base = PipelineSettings.from_grid(grid)
        pool = ray.remote(HostPool).options(num_cpus=0).remote(ray.cluster_resources().get("GPU", 0), None,
                                                               None)
        try:
            # outside the comparison: loads the model, and the processor in each decode worker (Ray keeps
            # them: `pipeline.decode_task_cpus`)
            for warm in VARIANTS.values():
                one_call(cell, samples[:4 * BATCH_SIZE], replace(base, preprocess_in_decode_tasks=warm), pool)
            for rep in range(repeats):  # alternated, so a noisy neighbour hits both alike
                order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
                for name in order:
                    settings = replace(base, preprocess_in_decode_tasks=VARIANTS[name])
                    facts, captions[name] = one_call(cell, samples, settings, pool)
                    runs[name].append(facts)
                    log(f"  processor on {name}: {facts['images_per_sec']:.2f} img/s, host busy "
                        f"{facts['host_busy_seconds_per_batch']:.3f} s and idle "
                        f"{facts['host_idle_seconds_per_batch']:.3f} s per batch, processor "
                        f"{facts['preprocess_seconds_per_image'] * 1000:.1f} ms/image "
                        f"({facts['preprocess_where']})")
        finally:
            ray.get(pool.shutdown.remote())
            ray.kill(pool)
    finally:
        shutdown_ray()
    summary = {name: {key: median([r[key] for r in rs]) for key in rs[0] if key != "preprocess_where"}
               for name, rs in runs.items()}
    same = sum(captions["host"][k] == captions["decode_task"].get(k) for k in captions["host"])
    return {
        "model": "tiny:qwen2_vl (processor widened: up to 128 image tokens)", "precision": "fp32",
        "image_max_side": IMAGE_MAX_SIDE, "batch_size": BATCH_SIZE, "max_new_tokens": MAX_NEW_TOKENS,
        "images": len(samples), "repeats": repeats, "summary": summary,
        "ratio_images_per_sec_task_vs_host":
            summary["decode_task"]["images_per_sec"] / summary["host"]["images_per_sec"],
        "identical_captions": same, "compared_captions": len(captions["host"]), "runs": runs,
    }


def run(ctx: Context) -> dict[str, Any]:
    # --quick (the suite's smoke run): 16 images, each variant once
    return bench_preprocess(ctx.coco, ctx.work, 1 if ctx.quick else max(2, ctx.repeats),
                            16 if ctx.quick else ctx.limit)
