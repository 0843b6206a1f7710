"""3. Re-run: `run_sweep` again on a finished grid and output dir; every cell is read back from the store."""

from __future__ import annotations

from typing import Any

from benchmarks import engine
from benchmarks.common import Context, log, median, run_engine

TITLE = "3. re-run of the finished grid"
TARGET = 0.1


def run(ctx: Context) -> dict[str, Any]:
    """Re-runs the engine section's grids (or, without that section, first runs of its grid)."""
    firsts = ctx.first_runs or engine.first_runs(ctx, with_sequential=False)[0]
    ratios = []
    for first in firsts:
        for _ in range(1 if ctx.quick else 3):
            again = run_engine(ctx, first.grid)
            ratios.append(again.wall / first.run.wall)
            log(f"  re-run of the finished grid: {again.wall:.2f}s ({ratios[-1]:.3f} of the first run)")
    first_wall = median([f.run.wall for f in firsts])
    return {
        "ratio_rerun_vs_first": median(ratios),
        "first_wall_seconds": first_wall,
        "rerun_wall_seconds": median(ratios) * first_wall,
        "repeats": len(ratios),
        "raw_ratios": ratios,
        "target": f"<= {TARGET}",
        "target_met": median(ratios) <= TARGET,
    }
