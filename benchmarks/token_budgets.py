"""6. Token-budget sharing (issue 16): `search_spaces/quickstart_trained.yaml` shared and unshared, side by
side in one run, and the same zoo models over max_new_tokens [16, 32, 64, 128].

Per grid: how many cells' captions are identical string for string between the two runs, the summed
generation seconds (what the model hosts spent in generate(): each distinct batch's latency once, plus
the budgets a backend had to generate on its own), and the whole sweep's wall (Ray start to report).
The shared and unshared sweeps alternate which goes first on every repeat (a shared, noisy machine).
--quick: the halving section's quick grid instead (`quick_grid`), whose shared run that section reads."""

from __future__ import annotations

from typing import Any

from benchmarks.common import QUICKSTART_GRID, Context, log, median, quickstart_data, run_engine_once

TITLE = "6. token-budget sharing: one generation per largest budget vs one per cell"
GRID = QUICKSTART_GRID
LONG_BUDGETS = [16, 32, 64, 128]
TARGETS = {"quickstart": 0.6, "long": 0.55}  # generation seconds shared / unshared (issue 16)


def quickstart_grid(out: Any, share: bool, tokens: list[int] | None, limit: int | None, quick: bool) -> Any:
    """The quickstart grid with its repository-relative paths made absolute (the benchmark runs from
    anywhere), into `out`; --quick: the small model at fp32 only."""
    from sweep.grid.config import parse_grid

    data = quickstart_data(quick)
    if tokens:
        data["max_new_tokens"] = tokens
    if limit:
        data["dataset"]["limit"] = limit
    data["generation"] = {**data.get("generation", {}), "share_token_budgets": share}
    data["output_dir"] = str(out)
    data["tracking"] = {"experiment": "bench-budgets"}
    return parse_grid(data, str(GRID))


def quick_grid(ctx: Context, share: bool) -> Any:
    """--quick: the halving section's quick grid (one zoo model, two prompts, three budgets: two
    generations shared, six unshared), whose shared run is that section's full run, into the dir that
    section reads it from (`run_engine_once`): one sweep fewer."""
    from benchmarks import halving

    data = halving.zoo_data(quick=True)
    out = halving.run_dir(ctx, data["name"], "full")
    if not share:
        data = {**data, "generation": {**data.get("generation", {}), "share_token_budgets": False}}
        out = ctx.work / "budgets-quick-own"
    return halving.halving_grid(out, "full", data, ctx.limit, {})


def generation_seconds(store: Any, cell_ids: list[str]) -> float:
    """Seconds the hosts spent generating for these cells: each distinct batch (host, start) once at the
    generating cell's latency, plus derived budgets that were generated on their own (own_generation)."""
    import pandas as pd

    tables = [store.read_captions(c) for c in cell_ids]
    rows = pd.concat(tables, ignore_index=True)
    rows = rows[rows["batch_images"] > 0]
    shared = rows.get("shared_generation", pd.Series("", index=rows.index)).fillna("")
    batch = ["cell_id", "actor_id", "batch_start_ts"]  # one generate() of one cell's batch
    seconds = float(rows[shared == ""].drop_duplicates(batch)["batch_latency_sec"].sum())
    if "budget_measured" in rows:
        extra = rows[(shared != "") & (rows["budget_measured"] == "own_generation")]
        seconds += float(extra.drop_duplicates(batch)["batch_latency_sec"].sum())
    return seconds


def captions_of(store: Any, cell_id: str) -> list[tuple[str, str]]:
    table = store.read_captions(cell_id)
    return list(zip(table["sample_id"], table["caption"], strict=True))


def one_grid(ctx: Context, name: str, tokens: list[int] | None) -> dict[str, Any]:
    from sweep.results.store import ResultStore

    seen: dict[bool, dict[str, list[float]]] = {s: {"wall": [], "gen": [], "trials": []}
                                                for s in (True, False)}
    last: dict[bool, Any] = {}
    for r in range(ctx.engine_repeats):
        for share in ((True, False) if r % 2 == 0 else (False, True)):
            out = ctx.work / f"budgets-{name}-{'shared' if share else 'own'}-{r}"
            grid = (quick_grid(ctx, share) if ctx.quick else
                    quickstart_grid(out, share, tokens, ctx.limit, quick=False))
            sweep = run_engine_once(ctx, grid)
            store = ResultStore(grid.output_dir)
            ok = sweep.results[sweep.results["status"] == "ok"]
            gen = generation_seconds(store, list(ok["cell_id"]))
            generating = int((ok["shared_generation"] == "").sum())
            seen[share]["wall"].append(sweep.wall)
            seen[share]["gen"].append(gen)
            seen[share]["trials"].append(generating)
            last[share] = (store, sweep.results)
            log(f"  {name} {'shared' if share else 'unshared'} repeat {r + 1}/{ctx.engine_repeats}: wall "
                f"{sweep.wall:.1f}s, generation {gen:.1f}s, {generating} generating cells of {len(ok)}")
    (store_s, res_s), (store_o, res_o) = last[True], last[False]
    ids = [c for c in res_s["cell_id"] if c in set(res_o["cell_id"])]
    both_ok = [c for c in ids if (res_s.set_index("cell_id").loc[c, "status"] == "ok"
                                  and res_o.set_index("cell_id").loc[c, "status"] == "ok")]
    pairs = [(captions_of(store_s, c), captions_of(store_o, c)) for c in both_ok]
    same_cells = sum(a == b for a, b in pairs)
    same_captions = sum(x == y for a, b in pairs for x, y in zip(a, b, strict=False))
    gen_s, gen_o = median(seen[True]["gen"]), median(seen[False]["gen"])
    wall_s, wall_o = median(seen[True]["wall"]), median(seen[False]["wall"])
    target = TARGETS["long" if tokens else "quickstart"]
    return {
        "grid": (f"{GRID.name}" if not ctx.quick else f"{grid.name} (--quick: the halving section's grid)")
        + (f" with max_new_tokens {tokens}" if tokens else ""),
        "max_new_tokens": tokens or sorted(set(int(t) for t in res_s["max_new_tokens"])),
        "cells": len(ids),
        "images": int(res_s["n_samples"].max()) if "n_samples" in res_s else 0,
        "repeats": ctx.engine_repeats,
        "generating_cells_shared": int(median(seen[True]["trials"])),
        "generating_cells_unshared": int(median(seen[False]["trials"])),
        "identical_cells": same_cells,
        "compared_cells": len(pairs),
        "identical_captions": same_captions,
        "compared_captions": sum(len(a) for a, _ in pairs),
        "generation_seconds_shared": gen_s,
        "generation_seconds_unshared": gen_o,
        "ratio_generation": gen_s / gen_o if gen_o else float("nan"),
        "wall_seconds_shared": wall_s,
        "wall_seconds_unshared": wall_o,
        "ratio_wall": wall_s / wall_o if wall_o else float("nan"),
        "target": f"generation shared / unshared <= {target}",
        "target_met": bool(gen_o and gen_s / gen_o <= target),
        "raw": {"shared": seen[True], "unshared": seen[False]},
    }


def run(ctx: Context) -> dict[str, Any]:
    name = "quick" if ctx.quick else "quickstart"  # --quick: not the quickstart's grid (`quick_grid`)
    grids = {name: one_grid(ctx, name, None)}
    if not ctx.quick:
        grids["long"] = one_grid(ctx, "long", LONG_BUDGETS)
    return {"grids": grids, "note": "toy zoo models on CPU: generation is milliseconds per batch, so the "
            "whole-sweep wall is mostly Ray, loads, scoring and MLflow"}
