"""8. Pareto-aware successive halving (issues 17, 28): `search.strategy: pareto_halving` against `full`,
side by side in one run, on `search_spaces/zoo_families.yaml` (the eight zoo captioners of eight families x
fp32/int8/nf4 x 8/16/32 tokens over the 200-image test split: 72 cells, 24 generations). --quick: one of
its models at fp32 under two prompts (two generations on one model host) over the first 8 images; its
full run is the token-budget section's shared run. The two-model grids this section measured before (the
quickstart and a larger toy grid) could not save (docs/halving.md says why); their numbers stay there.

Per grid: the cells on each Pareto front of both runs (identical, or which differ and whether each
difference is a CIDEr tie in the full run), the images captioned (each generation's images: a cell cut
from a larger budget's generation captions none of its own), the whole sweep's wall, and the bound: the
fewest images any pruning that keeps the full run's fronts could caption."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import yaml

from benchmarks.common import REPO, Context, log

TITLE = "8. Pareto-aware successive halving vs the full grid"
GRID = REPO / "search_spaces" / "zoo_families.yaml"
QUICK_MODELS = ("shapes-llava-small",)
#: --quick: the grid's prompt and a second one, so that two generations compete on one model host
QUICK_PROMPTS = ["Describe this image in one sentence.", "Describe this picture in one sentence."]
TARGETS = {"images": 0.4, "wall": 0.5}  # halving / full (issue 28)
AXES = ("latency", "memory", "energy")


def zoo_data(quick: bool = False, models: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The families grid as a dict, its repository-relative paths made absolute; `models`: only the zoo
    models whose id ends with one of these names (--quick: one of them, fp32, `QUICK_PROMPTS`)."""
    data = yaml.safe_load(GRID.read_text())
    for key in ("captions", "images"):
        data["dataset"][key] = str(REPO / data["dataset"][key])
    for model in data["models"]:
        model["id"] = str(REPO / model["id"])
    models = QUICK_MODELS if quick and models is None else models
    if models:
        data["models"] = [m for m in data["models"] if m["id"].endswith(models)]
    if quick:
        data["precisions"], data["prompts"] = ["fp32"], QUICK_PROMPTS
    return data


def run_dir(ctx: Context, name: str, strategy: str) -> Any:
    """The output dir of the grid `name`'s run under `strategy`."""
    return ctx.work / f"halving-{name}-{strategy}"


def halving_grid(out: Any, strategy: str, data: dict[str, Any], limit: int | None, search: dict) -> Any:
    """The grid `data` under one strategy, into `out`, with `search` (halving's settings)."""
    from sweep.grid.config import parse_grid

    data = {**data, "dataset": dict(data["dataset"])}
    if limit:
        data["dataset"]["limit"] = limit
    data["name"] = f"halving-{data['name']}-{strategy}"
    data["search"] = {"strategy": strategy, **(search if strategy == "pareto_halving" else {})}
    data["output_dir"] = str(out)
    data["tracking"] = {"experiment": "bench-halving"}
    return parse_grid(data, str(GRID))


def images_captioned(store: Any, results: Any) -> int:
    """Images the generations captioned: the rows of every cell that generated (not cut from another)."""
    own = results[(results["shared_generation"].fillna("") == "") & results["status"].isin(["ok", "pruned"])]
    return int(sum(len(store.read_captions(c)) for c in own["cell_id"] if store.captions_path(c).is_file()))


def fewest_images(results: Any, n_images: int, first_rung: int,
                  axes: tuple[str, ...] = AXES) -> dict[str, Any]:
    """What any pruning that keeps the full run's fronts (those of `axes`) must caption: every generation
    that serves a cell on one of them to the end, every other one at least its first rung. The bound says
    how far below the full grid pruning can go on this grid, whatever the rule; `generations` the count
    of each kind."""
    generations, front_generations = _generations(results, axes)
    images = len(front_generations) * n_images + (len(generations) - len(front_generations)) * first_rung
    return {"images": images, "generations": len(generations), "front_generations": len(front_generations)}


def _generations(results: Any, axes: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """(every generation, those serving a cell on a front of `axes`), each by its lead cell id."""
    gen = results["shared_generation"].fillna("").astype(str)
    lead = gen.where(gen != "", results["cell_id"])  # the generation each cell belongs to
    on = results["pareto"].fillna("").astype(str).str.split(",")
    on_front = on.map(lambda fronts: any(axis in fronts for axis in axes))
    return set(lead), set(lead[on_front])


def fastest_wall(store: Any, results: Any, wall: float, first_rung: int,
                 axes: tuple[str, ...] = AXES) -> dict[str, float]:
    """The wall bound beside the images' one: pruning saves at most the captioning of the generations
    that serve no front cell beyond their first rung. Their captioning window in the full run (first
    batch start to last batch end), scaled to the images past the first rung, is the most the full
    run's `wall` can lose; a model's load, the sweep's start, scoring and publishing are paid either
    way (and halving adds its decisions and any reload)."""
    generations, front = _generations(results, axes)
    saved = 0.0
    for lead in generations - front:
        batches = store.read_batches(lead)
        if batches.empty:
            continue
        window = float(batches["batch_end_ts"].max() - batches["batch_start_ts"].min())
        n = int(results.loc[results["cell_id"] == lead, "n_samples"].max())
        saved += window * max(0.0, 1 - first_rung / n) if n else 0.0
    return {"wall": wall - saved, "captioning_saved": saved}


def fronts(results: Any, axes: tuple[str, ...] = AXES) -> dict[str, list[str]]:
    """Axis -> the cell ids on its front (ids, not labels: a label does not name the prompt)."""
    return {axis: sorted(results[results["pareto"].fillna("").str.split(",").map(lambda a, x=axis: x in a)]
                         ["cell_id"]) for axis in axes}


def names(store: Any, results: Any, prompts: list[str]) -> dict[str, str]:
    """Cell id -> label, with the prompt's number where the grid has several (read from cell.json)."""
    import json

    out = {}
    for cid, label in zip(results["cell_id"], results["label"], strict=True):
        if len(prompts) > 1 and store.config_path(cid).is_file():
            prompt = json.loads(store.config_path(cid).read_text())["prompt"]
            label += f" p{prompts.index(prompt) + 1}" if prompt in prompts else ""
        out[cid] = label
    return out


def explain(full_store: Any, cell: str, other_front: list[str], label: dict[str, str]) -> str:
    """Is the cell (on one run's front, not the other's) tied on CIDEr in the full run with a cell of the
    other run's front? The paired interval from the full run's per-image scores."""
    from sweep.quality.statistics import Comparisons

    tables = {c: full_store.read_captions(c) for c in [cell, *other_front]
              if full_store.captions_path(c).is_file()}
    comparisons = Comparisons(tables)
    ties = []
    for other in other_front:
        diff = comparisons.difference(cell, other)
        if diff is not None and diff.tie:
            ties.append(f"{label[other]} ({diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}])")
    return ("CIDEr tie with " + ", ".join(ties)) if ties else "no CIDEr tie with the other front"


def one_grid(ctx: Context, data: dict[str, Any], search: dict, halving_first: bool = True) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for strategy in (("pareto_halving", "full") if halving_first else ("full", "pareto_halving")):
        runs[strategy] = one_run(ctx, data, search, strategy)
    return compare(ctx, data, search, runs["full"], runs["pareto_halving"])


def one_run(ctx: Context, data: dict[str, Any], search: dict, strategy: str, tag: str = "") -> dict[str, Any]:
    """One sweep of the grid under `strategy` (`tag`: a name for its folder beside the strategy)."""
    from sweep.results.store import ResultStore

    name = data["name"]
    out = run_dir(ctx, name, f"{strategy}{tag}")
    grid = halving_grid(out, strategy, data, ctx.limit, search)
    sweep = _run(ctx, grid)
    store = ResultStore(out)
    run = {"wall": sweep.wall, "results": sweep.results, "store": store, "grid": grid, "phases": sweep.phases,
           "images": images_captioned(store, sweep.results)}
    log(f"  {name} {strategy}{tag}: wall {sweep.wall:.1f}s, {run['images']} images captioned, "
        f"{int((sweep.results['status'] == 'pruned').sum())} cells pruned")
    return run


def compare(ctx: Context, data: dict[str, Any], search: dict, full: dict[str, Any],
            halv: dict[str, Any]) -> dict[str, Any]:
    """The halving run against the full one: images, wall, their bounds, the fronts (section 8's row)."""
    grid = full["grid"]
    label = names(full["store"], full["results"], list(grid.prompts))
    axes = tuple(search.get("objectives", AXES))  # the fronts of the objectives the search keeps
    f_full, f_halv = fronts(full["results"], axes), fronts(halv["results"], axes)
    pruned = halv["results"][halv["results"]["status"] == "pruned"]
    pruned_ids = set(pruned["cell_id"])
    differences = []
    for axis in axes:
        for cid in sorted(set(f_full[axis]) ^ set(f_halv[axis]), key=label.get):
            where = "full only" if cid in f_full[axis] else "halving only"
            other = f_halv[axis] if where == "full only" else f_full[axis]
            # a cell measured to the end in both runs moved by run-to-run cost noise, not by pruning
            cause = "pruned" if cid in pruned_ids else "cost noise between the two runs (not pruned)"
            differences.append({"axis": axis, "cell": label[cid], "on": where, "cause": cause,
                                "why": explain(full["store"], cid, other, label)})
    lost = [d for d in differences if d["cause"] == "pruned"]
    ratio_images = halv["images"] / full["images"] if full["images"] else float("nan")
    n_images = int(full["results"]["n_samples"].max())
    rungs = halving_rungs(halv["grid"], n_images)
    bound = fewest_images(full["results"], n_images, rungs[0], axes)
    ratio_wall = halv["wall"] / full["wall"] if full["wall"] else float("nan")
    wall_bound = fastest_wall(full["store"], full["results"], full["wall"], rungs[0], axes)
    explained = all(d["why"].startswith("CIDEr tie") for d in lost)
    return {
        "grid": GRID.name + ("" if len(data["models"]) == 8 and not ctx.quick else
                             f" ({len(data['models'])} models, precisions {data['precisions']})"),
        "cells": len(full["results"]),
        "images": int(full["results"]["n_samples"].max()) if "n_samples" in full["results"] else 0,
        "search": search,
        "images_full": full["images"], "images_halving": halv["images"], "ratio_images": ratio_images,
        "rungs": rungs,
        "images_bound": bound["images"],
        "ratio_bound": bound["images"] / full["images"] if full["images"] else float("nan"),
        "generations": bound["generations"], "front_generations": bound["front_generations"],
        "wall_full": full["wall"], "wall_halving": halv["wall"], "ratio_wall": ratio_wall,
        "wall_bound": wall_bound["wall"], "ratio_wall_bound": wall_bound["wall"] / full["wall"],
        "captioning_saved_at_most": wall_bound["captioning_saved"],
        "pruned": [f"{label[r['cell_id']]}: {r['reason']}" for _, r in pruned.iterrows()],
        "front_cells_pruned": [f"{d['axis']}: {d['cell']}" for d in lost],
        "fronts_full": f_full, "fronts_halving": f_halv,
        "fronts_identical": not differences, "front_differences": differences,
        "targets": {"fronts": "no front cell of the full run pruned, or each one a CIDEr tie",
                    "images": f"halving / full <= {TARGETS['images']}",
                    "wall": f"halving / full <= {TARGETS['wall']}"},
        "targets_met": {"fronts": explained, "images": bool(ratio_images <= TARGETS["images"]),
                        "wall": bool(ratio_wall <= TARGETS["wall"])},
    }


def halving_rungs(grid: Any, n_images: int) -> list[int]:
    from sweep.search.halving import rung_sizes

    search = grid.search
    return rung_sizes(n_images, search.rungs, search.first_rung or None, search.factor)


def _run(ctx: Context, grid: Any) -> Any:
    from benchmarks.common import run_engine_once

    return run_engine_once(ctx, grid)  # a fresh output dir, or the run another section made there


def run(ctx: Context, models: tuple[str, ...] | None = None,
        precisions: list[str] | None = None) -> dict[str, Any]:
    """`models`, `precisions`: a part of the grid (`python -m benchmarks.halving --models ...`)."""
    # the default first rung (sweep.search.halving.default_first_rung): 25 of the 200 images
    search = {"first_rung": 4, "factor": 2.0} if ctx.quick else {"factor": 2.0}
    data = zoo_data(ctx.quick, models)
    if precisions:
        data["precisions"] = precisions
    made = run_dir(ctx, data["name"], "full") in ctx.runs  # --quick: by the token-budget section
    grids = {"zoo_families": one_grid(ctx, data, search)}
    quick = "; the full run is the token-budget section's shared run, made before" if made else ""
    return {"grids": grids, "note": "one run each, side by side, halving first; the machine's 2 cores "
            "were shared" + quick}


def main() -> None:
    """Section 8 alone on a part of the families grid (on a loaded machine the whole grid's two runs
    take over an hour): `python -m benchmarks.halving --models shapes-llava-small,... --precisions
    fp32,nf4 --out FILE.json` writes the section's result and its markdown beside it."""
    import argparse
    import json
    import tempfile
    from pathlib import Path

    from benchmarks import render
    from benchmarks.common import COCO_MINI, machine_info

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--models", default="", help="comma list of zoo model names (default: all eight)")
    p.add_argument("--precisions", default="", help="comma list (default: the grid's)")
    p.add_argument("--limit", type=int, default=None, help="images (default: all 200)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    ctx = Context(coco=COCO_MINI, work=Path(tempfile.mkdtemp(prefix="vlm-bench-halving-")), quick=False,
                  repeats=1, engine_repeats=1, limit=args.limit)
    models = tuple(m for m in args.models.split(",") if m) or None
    result = {"machine": machine_info(), "command": " ".join(sys.argv),
              "halving": run(ctx, models, [x for x in args.precisions.split(",") if x] or None)}
    args.out.write_text(json.dumps(result, indent=2, default=str))
    args.out.with_suffix(".md").write_text("\n".join(render.halving_md(result["halving"])) + "\n")
    shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    main()
