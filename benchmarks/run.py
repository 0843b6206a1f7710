"""Benchmarks of the sweep engine: batching, engine overhead, re-run, replica sharding, GPU throughput,
token-budget sharing, scoring, successive halving, the pipeline's ceiling, HF padding, precisions on CPU,
cold cells, the processor in the decode tasks.

    python benchmarks/run.py [--quick] [--repeats N]
                             [--sections batching,engine,rerun,scaling,gpu,token_budgets,scoring,
                                         halving,pipeline_ceiling,padding,precisions,warmup,
                                         preprocess]

Prints every number (medians over repeats) and writes benchmarks/results/<date>-<machine>.json and .md
(or under --out-dir). See benchmarks/README.md for what each number means. One module per section
(batching, engine, rerun, scaling, gpu, token_budgets, scoring, halving, pipeline_ceiling, padding,
precisions, warmup, preprocess),
`common` for what they share, `model_side` for every name taken from `actors`, `render` for the markdown;
this file is the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import `benchmarks.*` from the repo, not siblings by name
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import (  # noqa: E402
    batching,
    engine,
    gpu,
    halving,
    padding,
    pipeline_ceiling,
    precisions,
    preprocess,
    render,
    rerun,
    scaling,
    scoring,
    token_budgets,
    warmup,
)
from benchmarks.common import (  # noqa: E402
    COCO_MINI,
    REPO,
    Context,
    log,
    machine_info,
    machine_slug,
    start_shared_ray,
)

SECTIONS = {"batching": batching, "engine": engine, "rerun": rerun, "scaling": scaling, "gpu": gpu,
            "token_budgets": token_budgets, "scoring": scoring, "halving": halving,
            "pipeline_ceiling": pipeline_ceiling, "padding": padding, "precisions": precisions,
            "warmup": warmup, "preprocess": preprocess}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="8 images, 1 repeat, a 1-cell engine grid, replicas 1 and 2, one Ray (1 logical GPU) "
                   "shared by every section, sections sharing sweeps (for the test)")
    p.add_argument("--repeats", type=int, default=None, help="repeats of the batching section (default 3)")
    p.add_argument("--engine-repeats", type=int, default=1, help="repeats of the engine/scaling sections")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--coco", type=Path, default=COCO_MINI)
    p.add_argument("--limit", type=int, default=None, help="images per sweep (default: all 79 of coco-mini)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if not (args.coco / "captions_val2017.json").is_file():
        p.error(f"coco-mini not found at {args.coco}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("VLM_SWEEP_CACHE", str(Path.home() / ".cache" / "vlm-sweep"))
    quick = args.quick
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]) if argv is None else str(argv),
        "quick": quick,
        "machine": machine_info(),
    }
    m = result["machine"]
    log(f"machine: {m['cpu_model']}, {m['cpu_cores']} cores, GPU {m['gpu']}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}-{machine_slug(m)}{'-quick' if quick else ''}"
    ctx = Context(
        coco=args.coco,
        work=Path(tempfile.mkdtemp(prefix="vlm-bench-")),
        quick=quick,
        repeats=args.repeats or (1 if quick else 3),
        engine_repeats=1 if quick else args.engine_repeats,
        limit=8 if quick else args.limit,
    )

    def save() -> None:
        """Written after every section, so a long run that is stopped keeps what it measured."""
        result["total_seconds"] = time.perf_counter() - started
        result["failed_cells"] = list(ctx.failures)
        m["load_average_at_end"] = list(os.getloadavg())
        (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
        (args.out_dir / f"{stem}.md").write_text(render.markdown(result))

    if quick:  # one Ray start instead of one per sweep: the quick run is the test suite's
        result["ray"] = start_shared_ray()
        log(result["ray"])
    try:
        for name, section in SECTIONS.items():
            if name in args.sections:
                log(section.TITLE)
                section_start = time.perf_counter()
                result[name] = section.run(ctx)
                result.setdefault("section_seconds", {})[name] = time.perf_counter() - section_start
                for line in render.console(name, result[name]):
                    log(line)
                save()
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
        if quick:
            import ray

            ray.shutdown()
    save()
    log(f"results: {args.out_dir / stem}.json and .md ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
