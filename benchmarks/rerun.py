"""3. Re-run: `run_sweep` again on a finished grid and output dir; every cell is read back from the store.

As a user runs it, through the CLI (`python -m benchmarks.rerun [grid.yaml]`): a first run of the grid in
a fresh output dir, then re-runs of the same command; prints both walls (process start to exit, imports
included) and the ratio, median over the re-runs. Default grid: the quickstart."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
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


ROOT = Path(__file__).resolve().parents[1]


def cli_wall(grid: Path, out: Path, extra: tuple[str, ...] = ()) -> float:
    """Seconds of one `python -m sweep.run grid --set output_dir=out` process, start to exit."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    cmd = [sys.executable, "-m", "sweep.run", str(grid), "--set", f"output_dir={out}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sweep.run exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return wall


def cli_rerun(grid: Path, out: Path, repeats: int = 3) -> dict[str, Any]:
    """First run in `out` (must be fresh), then `repeats` re-runs of the same command."""
    first = cli_wall(grid, out)
    log(f"first run: {first:.2f}s")
    walls = []
    for _ in range(repeats):
        walls.append(cli_wall(grid, out))
        log(f"  re-run: {walls[-1]:.2f}s ({walls[-1] / first:.3f} of the first run)")
    ratio = median(walls) / first
    return {"grid": str(grid), "first_wall_seconds": first, "rerun_wall_seconds": walls,
            "ratio_rerun_vs_first": ratio, "target": f"<= {TARGET}", "target_met": ratio <= TARGET}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rerun", description=__doc__.split("\n\n")[1])
    quickstart = ROOT / "search_spaces" / "quickstart_trained.yaml"
    parser.add_argument("grid", type=Path, nargs="?", default=quickstart)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: a fresh temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rerun-") as tmp:
        out = args.out or Path(tmp) / "out"
        result = cli_rerun(args.grid.resolve(), out, args.repeats)
    log(f"re-run / first run (median of {args.repeats}): {result['ratio_rerun_vs_first']:.3f} "
        f"(target {result['target']}: {'met' if result['target_met'] else 'not met'})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
