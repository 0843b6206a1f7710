"""2. Engine overhead: a grid through `run_sweep` vs a hand-written sequential script doing the same cells.

The engine's split comes from its own phase timings (`SweepResult.phases`) and its results table."""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import model_side
from benchmarks.common import (
    COCO_IMAGES,
    PROMPT,
    Context,
    EngineRun,
    coco_samples,
    decode_images,
    log,
    make_grid,
    median,
    run_engine,
)

TITLE = "2. engine overhead: run_sweep vs sequential script"
PRECISIONS = ["fp32", "int8"]
BATCH_SIZE = 8
LOCAL_GPUS = 2  # logical GPUs of the embedded Ray: two cells run at once


@dataclass
class FirstRun:
    """One engine run of the grid into a fresh output dir (the re-run section reads it back)."""

    grid: Any
    run: EngineRun
    split: dict[str, Any]


#: --quick: one cell, the scaling section's (`scaling.MAX_NEW_TOKENS`), whose replicas-1 row reads this run
QUICK_AXES = (["tiny:llava"], ["fp32"], [12])


def grid_axes(ctx: Context) -> tuple[list[str], list[str], list[int]]:
    if ctx.quick:
        return QUICK_AXES
    return ["tiny:llava", "tiny:qwen2_vl"], PRECISIONS, [4, 12]


def engine_split(run: EngineRun) -> dict[str, Any]:
    ph, wall = run.phases, run.wall
    results = run.results[run.results["status"] == "ok"]
    n_ok = results["n_samples"] - results["n_errors"]
    # a cell whose model an earlier cell loaded reports that load: count each load once
    fresh = results[results["model_reused"] == 0] if "model_reused" in results else results
    generation = float((n_ok / results["images_per_sec"]).sum())
    cell_wall = float(results["cell_wall_seconds"].sum())
    return {
        "wall_seconds": wall,
        "ray_start_seconds": ph["ray_start"],
        "trials_seconds": ph["trials"],
        "model_load_seconds_sum": float((fresh["load_seconds"] * fresh["n_actors"]).sum()),
        "model_loads": int(len(fresh)),
        "cells": int(len(results)),
        "generation_seconds_sum": generation,
        "cell_wall_seconds_sum": cell_wall,
        "pipeline_overhead_seconds_sum": cell_wall - generation,
        "scoring_seconds": ph["scoring"],
        "mlflow_seconds": ph["mlflow"],
        "report_plots_seconds": ph["report"],
        # MLflow parent run, results.csv, the table: what the driver does outside Ray start, trials, report
        "driver_other_seconds": wall - ph["ray_start"] - ph["trials"] - ph["report"],
    }


def first_runs(ctx: Context, with_sequential: bool) -> tuple[list[FirstRun], list[tuple[float, dict]]]:
    """engine_repeats × (the grid through the engine, fresh output dir; then, if asked, the script)."""
    models, precisions, tokens = grid_axes(ctx)
    runs, sequential = [], []
    for r in range(ctx.engine_repeats):
        out = ctx.work / f"engine-{r}"
        shutil.rmtree(out, ignore_errors=True)
        grid = make_grid(ctx.coco, out, models, precisions, tokens, ctx.limit, local_gpus=LOCAL_GPUS)
        run = run_engine(ctx, grid)
        runs.append(FirstRun(grid, run, engine_split(run)))
        log(f"  engine repeat {r + 1}/{ctx.engine_repeats}: {run.wall:.1f}s "
            f"(Ray start {run.phases['ray_start']:.1f}s)")
        if with_sequential:
            sequential.append(sequential_baseline(ctx, models, precisions, tokens))
            log(f"  sequential script repeat {r + 1}/{ctx.engine_repeats}: {sequential[-1][0]:.1f}s")
    return runs, sequential


def sequential_baseline(ctx: Context, models: list[str], precisions: list[str], tokens: list[int]
                        ) -> tuple[float, dict[str, float]]:
    """The same cells by hand: load, caption batched at 8, score with CaptionScorer, unload."""
    from sweep.quality.scoring import CaptionScorer

    split = {"decode": 0.0, "load": 0.0, "generation": 0.0, "scoring": 0.0}
    start = t = time.perf_counter()
    samples = coco_samples(ctx.coco, ctx.limit)
    items = list(zip([s.sample_id for s in samples], decode_images(samples, 224), strict=True))
    refs = {s.sample_id: list(s.references) for s in samples}
    split["decode"] += time.perf_counter() - t
    with CaptionScorer() as scorer:
        for model in models:
            for precision in precisions:
                t = time.perf_counter()
                captioner = model_side.load_captioner(model, precision)
                split["load"] += time.perf_counter() - t
                for max_new in tokens:
                    t = time.perf_counter()
                    settings = model_side.cell_generation(captioner, PROMPT, max_new)
                    captions = {}
                    for i in range(0, len(items), BATCH_SIZE):
                        batch = items[i : i + BATCH_SIZE]
                        results = model_side.caption(captioner, batch, PROMPT, settings)
                        for (sample_id, _), (text, _) in zip(batch, results, strict=True):
                            captions[sample_id] = text
                    split["generation"] += time.perf_counter() - t
                    t = time.perf_counter()
                    scorer.score(captions, refs)
                    split["scoring"] += time.perf_counter() - t
                del captioner
                gc.collect()
    return time.perf_counter() - start, split


def run(ctx: Context) -> dict[str, Any]:
    runs, sequential = first_runs(ctx, with_sequential=True)
    ctx.first_runs = runs
    models, precisions, tokens = grid_axes(ctx)
    walls = [r.run.wall for r in runs]
    base = [wall for wall, _ in sequential]
    splits = [r.split for r in runs]
    return {
        "grid": {
            "models": models,
            "precisions": precisions,
            "max_new_tokens": tokens,
            "batch_size": BATCH_SIZE,
            "images": ctx.limit or COCO_IMAGES,
            "local_gpus": LOCAL_GPUS,
            "cells": len(models) * len(precisions) * len(tokens),
        },
        "repeats": ctx.engine_repeats,
        "engine_wall_seconds": median(walls),
        "sequential_wall_seconds": median(base),
        "ratio_engine_vs_sequential": median([e / b for e, b in zip(walls, base, strict=True)]),
        "ratio_engine_without_ray_start_vs_sequential": median(
            [(e - s["ray_start_seconds"]) / b for e, s, b in zip(walls, splits, base, strict=True)]
        ),
        "engine_split": {k: median([s[k] for s in splits]) for k in splits[0]},
        "sequential_split": {k: median([s[k] for _, s in sequential]) for k in sequential[0][1]},
        "raw": {"engine": walls, "sequential": base},
    }
