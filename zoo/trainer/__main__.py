"""``python -m zoo.trainer data --out DIR`` | ``python -m zoo.trainer train-zoo NAME...`` (any zoo model,
``zoo.trainer.catalog``; ``all``: every one) | ``python -m zoo.trainer train [--sizes small base]`` (the two
LLaVA models, the quickstart's: ``train-zoo shapes-llava-small shapes-llava-base``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from zoo.trainer import shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="write the synthetic shapes dataset in COCO captions format")
    data.add_argument("--out", type=Path, required=True, help="folder; one sub-folder per split")
    data.add_argument("--seed", type=int, default=shapes.DEFAULT_SEED)
    splits = list(shapes.SPLIT_SIZES)
    data.add_argument("--splits", nargs="+", default=splits, choices=splits)
    data.add_argument("--n", type=int, default=None, help="images per split (default: each split's size)")
    train = sub.add_parser("train", help="retrain the quickstart's two LLaVA captioners on CPU")
    train.add_argument("--out", type=Path, default=None, help="default: zoo/ at the repository root")
    train.add_argument("--seed", type=int, default=shapes.DEFAULT_SEED)
    train.add_argument("--sizes", nargs="+", default=None, help="small, base (default: both)")
    train.add_argument("--steps", type=int, default=None, help="override every size's step count")
    train.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    zoo = sub.add_parser("train-zoo", help="retrain zoo models, one after the other")
    zoo.add_argument("names", nargs="+", help="zoo model names (zoo.trainer.catalog.ZOO), or 'all'")
    zoo.add_argument("--out", type=Path, default=None, help="default: zoo/ at the repository root")
    zoo.add_argument("--seed", type=int, default=shapes.DEFAULT_SEED)
    zoo.add_argument("--steps", type=int, default=None, help="override every model's step count")
    zoo.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)

    if args.command == "data":
        start = time.perf_counter()
        sizes = {s: args.n for s in args.splits} if args.n else None
        for folder in shapes.write_dataset(args.out, args.seed, tuple(args.splits), sizes):
            print(f"wrote {folder}/captions.json and {folder}/images")
        print(f"done in {time.perf_counter() - start:.1f} s")
        return 0
    from zoo.trainer import catalog

    if args.command == "train":
        names = [f"shapes-llava-{size}" for size in args.sizes or ("small", "base")]
    else:
        names = list(catalog.ZOO) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in catalog.ZOO]
    if unknown:
        parser.error(f"unknown zoo models {unknown}; expected {sorted(catalog.ZOO)}")
    catalog.train_zoo(names, args.out or catalog.ZOO_DIR, args.seed, args.steps, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
