"""4. Replicas on logical GPUs: one cell with `resources.replicas` 1, 2, 4 (a sharding check on CPU)."""

from __future__ import annotations

import shutil
from typing import Any

from benchmarks.common import (
    COCO_IMAGES,
    QUICK_RAY_GPUS,
    Context,
    EngineRun,
    log,
    make_grid,
    median,
    run_engine,
    same_sweep,
)

TITLE = "4. replicas on logical GPUs (sharding overhead on CPU)"
MAX_NEW_TOKENS = 12
LOCAL_GPUS = 4


def run(ctx: Context) -> dict[str, Any]:
    replicas = [1, 2] if ctx.quick else [1, 2, 4]
    keys = ("wall", "ray_start", "cell_wall", "ips")
    seen: dict[int, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in replicas}
    read: set[int] = set()  # replicas whose row is the engine section's run (--quick)
    for r in range(ctx.engine_repeats):
        for n in replicas:
            out = ctx.work / f"scaling-{n}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            # --quick: the replicas share the shared Ray's one logical GPU
            per_actor = {"gpus_per_actor": QUICK_RAY_GPUS / n} if ctx.quick else {}
            grid = make_grid(ctx.coco, out, ["tiny:llava"], ["fp32"], [MAX_NEW_TOKENS], ctx.limit,
                             local_gpus=LOCAL_GPUS, replicas=n, **per_actor)
            sweep = engine_run_of(ctx, grid, r)
            if sweep is None:
                sweep = run_engine(ctx, grid)
            else:
                read.add(n)
            got = seen[n]
            got["wall"].append(sweep.wall)
            got["ray_start"].append(sweep.phases["ray_start"])
            got["cell_wall"].append(float(sweep.results["cell_wall_seconds"].iloc[0]))
            got["ips"].append(float(sweep.results["images_per_sec"].iloc[0]))
            log(f"  scaling replicas={n} repeat {r + 1}/{ctx.engine_repeats}: {sweep.wall:.1f}s, "
                f"cell {got['cell_wall'][-1]:.1f}s, {got['ips'][-1]:.1f} img/s")
    n_images = ctx.limit or COCO_IMAGES
    return {
        "cell": f"tiny:llava/fp32/t{MAX_NEW_TOKENS}",
        "images": n_images,
        "local_gpus": LOCAL_GPUS,
        "repeats": ctx.engine_repeats,
        "note": "CPU only: replicas share 2 cores, so this checks sharding overhead, not speed-up"
        + (f"; replicas {sorted(read)}: the engine section's run of this very sweep" if read else ""),
        "rows": [
            {
                "replicas": n,
                "wall_seconds": median(seen[n]["wall"]),
                "ray_start_seconds": median(seen[n]["ray_start"]),
                "cell_wall_seconds": median(seen[n]["cell_wall"]),
                "cell_images_per_sec": n_images / median(seen[n]["cell_wall"]),
                "generation_images_per_sec": median(seen[n]["ips"]),
            }
            for n in replicas
        ],
    }


def engine_run_of(ctx: Context, grid: Any, repeat: int = 0) -> EngineRun | None:
    """--quick: the engine section's run when it ran this very sweep (its quick grid is this section's
    replicas-1 cell, `engine.QUICK_AXES`): one sweep fewer; None otherwise (and always in a full run)."""
    if not ctx.quick or repeat >= len(ctx.first_runs):
        return None
    first = ctx.first_runs[repeat]
    return first.run if same_sweep(first.grid, grid) else None
