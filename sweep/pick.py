"""`python -m sweep.pick <output_dir> [constraints]`: the cell to use for a job, from a finished sweep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep.pick",
        description="The best cell of a finished sweep that meets every constraint, the cells that cannot be "
        "told apart from it (paired 95%% intervals over the same images), what each costs relative to it, "
        "how many more images would separate the top two, and why the other cells are out.")
    p.add_argument("output_dir", type=Path, help="the sweep's output_dir (holds results.csv)")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help="GPU peak memory (or, where no GPU memory was measured, the weights' size) at most")
    p.add_argument("--min-images-per-sec", type=float, default=None, help="throughput at least")
    p.add_argument("--max-latency-s", type=float, default=None, help="median batch latency at most")
    p.add_argument("--max-kwh-per-1k-images", type=float, default=None,
                   help="energy per 1,000 images at most")
    p.add_argument("--metric", default="cider", choices=["cider", "bleu_4", "meteor", "rouge_l"],
                   help="the quality to maximise (default cider)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.output_dir / "results.csv").is_file():
        print(f"{args.output_dir}: no results.csv here; pass a finished sweep's output_dir", file=sys.stderr)
        return 2
    import pandas as pd

    from sweep.publish.report import candidates, front_pool, load_tables
    from sweep.publish.spreadsheet import read_back
    from sweep.quality.pick import constraints, format_pick, pick
    from sweep.quality.statistics import Comparisons

    results = read_back(pd.read_csv(args.output_dir / "results.csv"))  # formula-like labels unescaped
    limits = constraints(args.max_memory_gb, args.min_images_per_sec, args.max_latency_s,
                         args.max_kwh_per_1k_images)
    comparisons = Comparisons(load_tables(args.output_dir, results))
    rows, memory = candidates(results)
    _, note = front_pool(results)
    for line in format_pick(pick(rows, comparisons, limits, memory, args.metric)):
        print(line)
    if any(lim.cost == "memory_gb" for lim in limits):
        print(f"memory read from: {memory}" + ("  (no GPU memory measured: the weights' size)"
                                                if memory != "peak_memory_gb" else ""))
    if note:
        print(f"NOTE: {note}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
