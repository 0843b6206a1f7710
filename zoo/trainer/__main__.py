"""``python -m zoo.trainer data --out DIR`` | ``python -m zoo.trainer train [--out zoo]``."""

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
    train = sub.add_parser("train", help="retrain the zoo's tiny LLaVA captioners on CPU")
    train.add_argument("--out", type=Path, default=None, help="default: zoo/ at the repository root")
    train.add_argument("--seed", type=int, default=shapes.DEFAULT_SEED)
    train.add_argument("--sizes", nargs="+", default=None, help="small, base (default: both)")
    train.add_argument("--steps", type=int, default=None, help="override every size's step count")
    train.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)

    if args.command == "data":
        start = time.perf_counter()
        for folder in shapes.write_dataset(args.out, args.seed, tuple(args.splits)):
            print(f"wrote {folder}/captions.json and {folder}/images")
        print(f"done in {time.perf_counter() - start:.1f} s")
        return 0
    from zoo.trainer import train as trainer

    sizes = tuple(args.sizes or trainer.SIZES)
    unknown = [s for s in sizes if s not in trainer.SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; expected {sorted(trainer.SIZES)}")
    trainer.train_all(args.out or trainer.ZOO_DIR, args.seed, sizes, args.steps, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
