"""8. Pareto-aware successive halving (issue 17): `search.strategy: pareto_halving` against `full`, side by
side in one run, on `search_spaces/quickstart_trained.yaml` and on a larger toy grid (both zoo models x
fp32/int8/nf4 x max_new_tokens [4, 8, 16, 32] x two prompts, the 50 test images).

Per grid: the cells on each Pareto front of both runs (identical, or which differ and whether each
difference is a CIDEr tie in the full run), the images captioned (each generation's images: a cell cut
from a larger budget's generation captions none of its own), and the whole sweep's wall."""

from __future__ import annotations

import shutil
from typing import Any

import yaml

from benchmarks.common import REPO, Context, log

TITLE = "8. Pareto-aware successive halving vs the full grid"
GRID = REPO / "search_spaces" / "quickstart_trained.yaml"
SECOND_PROMPT = "What is in this picture?"
LARGE_TOKENS = [4, 8, 16, 32]
TARGETS = {"images": 0.4, "wall": 0.5}  # halving / full (issue 17)
AXES = ("latency", "memory", "energy")


def halving_grid(out: Any, strategy: str, large: bool, limit: int | None, search: dict) -> Any:
    """The quickstart grid (or the larger one) with absolute paths, into `out`, with `search`."""
    from sweep.config import parse_grid

    data = yaml.safe_load(GRID.read_text())
    for key in ("captions", "images"):
        data["dataset"][key] = str(REPO / data["dataset"][key])
    for model in data["models"]:
        model["id"] = str(REPO / model["id"])
    if large:
        data["max_new_tokens"] = LARGE_TOKENS
        data["prompts"] = [*data["prompts"], SECOND_PROMPT]
    if limit:
        data["dataset"]["limit"] = limit
    data["name"] = f"halving-{'large' if large else 'quickstart'}-{strategy}"
    data["search"] = {"strategy": strategy, **(search if strategy == "pareto_halving" else {})}
    data["output_dir"] = str(out)
    data["tracking"] = {"experiment": "bench-halving"}
    return parse_grid(data, str(GRID))


def images_captioned(store: Any, results: Any) -> int:
    """Images the generations captioned: the rows of every cell that generated (not cut from another)."""
    own = results[(results["shared_generation"].fillna("") == "") & results["status"].isin(["ok", "pruned"])]
    return int(sum(len(store.read_captions(c)) for c in own["cell_id"] if store.captions_path(c).is_file()))


def fronts(results: Any) -> dict[str, list[str]]:
    return {axis: sorted(results[results["pareto"].fillna("").str.split(",").map(lambda a, x=axis: x in a)]
                         ["label"]) for axis in AXES}


def explain(full_store: Any, full: Any, label: str, other_front: list[str]) -> str:
    """Is the cell (on one run's front, not the other's) tied on CIDEr in the full run with a cell of the
    other run's front? The paired interval from the full run's per-image scores."""
    from sweep.statistics import Comparisons

    ids = dict(zip(full["label"], full["cell_id"], strict=True))
    tables = {ids[x]: full_store.read_captions(ids[x]) for x in [label, *other_front] if x in ids}
    comparisons = Comparisons(tables)
    ties = []
    for other in other_front:
        diff = comparisons.difference(ids[label], ids[other]) if other in ids else None
        if diff is not None and diff.tie:
            ties.append(f"{other} ({diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}])")
    return ("CIDEr tie with " + ", ".join(ties)) if ties else "no CIDEr tie with the other front"


def one_grid(ctx: Context, large: bool, search: dict) -> dict[str, Any]:
    from sweep.store import ResultStore

    runs: dict[str, Any] = {}
    name = "large" if large else "quickstart"
    # the order alternates with the grid (a noisy shared machine hits both)
    for strategy in (("pareto_halving", "full") if large else ("full", "pareto_halving")):
        out = ctx.work / f"halving-{name}-{strategy}"
        shutil.rmtree(out, ignore_errors=True)
        grid = halving_grid(out, strategy, large, ctx.limit or (12 if ctx.quick else None), search)
        sweep = _run(ctx, grid)
        store = ResultStore(out)
        runs[strategy] = {"wall": sweep.wall, "results": sweep.results, "store": store,
                          "images": images_captioned(store, sweep.results)}
        log(f"  {name} {strategy}: wall {sweep.wall:.1f}s, {runs[strategy]['images']} images captioned, "
            f"{int((sweep.results['status'] == 'pruned').sum())} cells pruned")
    full, halv = runs["full"], runs["pareto_halving"]
    f_full, f_halv = fronts(full["results"]), fronts(halv["results"])
    differences = []
    for axis in AXES:
        for label in sorted(set(f_full[axis]) ^ set(f_halv[axis])):
            where = "full only" if label in f_full[axis] else "halving only"
            other = f_halv[axis] if where == "full only" else f_full[axis]
            differences.append({"axis": axis, "cell": label, "on": where,
                                "why": explain(full["store"], full["results"], label, other)})
    pruned = halv["results"][halv["results"]["status"] == "pruned"]
    ratio_images = halv["images"] / full["images"] if full["images"] else float("nan")
    ratio_wall = halv["wall"] / full["wall"] if full["wall"] else float("nan")
    explained = all(d["why"].startswith("CIDEr tie") for d in differences)
    return {
        "grid": GRID.name + (f" with max_new_tokens {LARGE_TOKENS} and prompts +{SECOND_PROMPT!r}" if large
                             else ""),
        "cells": len(full["results"]),
        "images": int(full["results"]["n_samples"].max()) if "n_samples" in full["results"] else 0,
        "search": search,
        "images_full": full["images"], "images_halving": halv["images"], "ratio_images": ratio_images,
        "wall_full": full["wall"], "wall_halving": halv["wall"], "ratio_wall": ratio_wall,
        "pruned": [f"{r['label']}: {r['reason']}" for _, r in pruned.iterrows()],
        "fronts_full": f_full, "fronts_halving": f_halv,
        "fronts_identical": not differences, "front_differences": differences,
        "targets": {"fronts": "identical, or every difference a CIDEr tie",
                    "images": f"halving / full <= {TARGETS['images']}",
                    "wall": f"halving / full <= {TARGETS['wall']}"},
        "targets_met": {"fronts": explained, "images": bool(ratio_images <= TARGETS["images"]),
                        "wall": bool(ratio_wall <= TARGETS["wall"])},
    }


def _run(ctx: Context, grid: Any) -> Any:
    from benchmarks.common import run_engine

    return run_engine(ctx, grid)


def run(ctx: Context) -> dict[str, Any]:
    search = {"first_rung": 6 if ctx.quick else 10, "factor": 2.0}
    grids = {"quickstart": one_grid(ctx, False, search)}
    if not ctx.quick:
        grids["large"] = one_grid(ctx, True, search)
    return {"grids": grids, "note": "one run each, side by side; the machine's 2 cores were shared"}
