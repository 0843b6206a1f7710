"""`python -m sweep.run grid.yaml`: the command line. It validates the grid and the dataset, expands the
cells, and hands them to the engine (`sweep.engine`: plan → execute → publish) or prints the dry-run plan.

Exit codes: 0 every cell succeeded, 1 some cells failed, 2 the grid or dataset is invalid, or the output
dir is a file, not writable, in use by another sweep or would overwrite an input (nothing started),
3 stopped because the output disk filled or turned read-only mid-run (what was written is kept; free
space and re-run to resume), 130 / 143 stopped by SIGINT / SIGTERM (what finished is kept and reported).
docs/errors.md: what is refused, what becomes an error row, what is retried.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sweep.data.load import load_image_samples
from sweep.data.sources import DatasetError, Sample, dataset_fingerprint
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import GridConfig, GridError, load_grid
from sweep.results.inputs import check_store_paths
from sweep.results.lock import OutputDirError, check_output_dir

log = logging.getLogger("sweep")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep.run",
        description="Caption a dataset with every cell of a model x precision x max_new_tokens grid, "
        "score and measure each cell, log to MLflow and report the quality-vs-cost Pareto fronts.",
        epilog="Exit codes: 0 all cells ok, 1 some cells failed, 2 invalid grid or dataset, or an output dir "
        "that is a file, not writable, in use by another sweep or would overwrite an input (nothing "
        "started), 3 stopped: the output "
        "disk filled mid-run (what was written is kept; re-run to resume), 130/143 stopped by "
        "SIGINT/SIGTERM.",
    )
    p.add_argument("grid", type=Path, help="grid.yaml describing the sweep")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid field, e.g. --set dataset.limit=8 --set 'precisions=[fp16]'")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else start an embedded Ray)")
    p.add_argument("--verbose", action="store_true",
                   help="show on this terminal what goes to <output_dir>/sweep.log (Ray, Tune, MLflow and "
                   "tokenizer INFO lines) and forward the actors' logs")
    p.add_argument("--dry-run", action="store_true",
                   help="print every cell (family, backend and why, precision per module, store state, "
                   "ETA from past runs, whether it shares the generation of a larger budget) and exit: 0 if "
                   "every cell can run, 1 if not; starts no Ray, downloads nothing")
    p.add_argument("--fresh", action="store_true",
                   help="ignore finished and half-finished cells in the result store (they are archived "
                   "under cells-archive/, not deleted) and compute every cell again")
    return p


def load_samples(grid: GridConfig) -> tuple[list[Sample] | None, str]:
    """Image samples (coco, hf, karpathy) now; video scenes are detected later, on Ray (None until then)."""
    if grid.dataset.kind == "video":
        from sweep.data.video import list_videos, video_fingerprint

        list_videos(grid.dataset)  # bad manifests fail here, before Ray
        return None, video_fingerprint(grid.dataset)
    samples = load_image_samples(grid.dataset)
    return samples, dataset_fingerprint(samples, grid.dataset.image_max_side)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the terminal shows warnings and errors; INFO lines go to the sweep's log file (sweep.logs), and
    # here too with --verbose
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        grid = load_grid(args.grid, args.overrides)
        check_store_paths(grid)  # the store never writes over an input, its database where meant
        samples, fingerprint = load_samples(grid)
        check_output_dir(grid.output_dir, create=not args.dry_run)
    except (GridError, DatasetError, OutputDirError) as err:
        print(err, file=sys.stderr)
        return 2
    cells = expand_cells(grid, fingerprint)
    if args.dry_run:  # the very plan the run would execute (sweep.plan.sweep_plan), printed
        from sweep.plan.dry_run import format_sweep_plan
        from sweep.plan.sweep_plan import dry_run_plan

        plan = dry_run_plan(grid, cells, samples, args.fresh)
        print(format_sweep_plan(plan, len(samples) if samples is not None else None))
        return 0 if plan.runnable else 1
    try:
        return run_sweep(grid, cells, samples, args.address, args.verbose, args.fresh).exit_code
    except OutputDirError as err:  # another sweep holds the output dir: nothing started
        print(err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
