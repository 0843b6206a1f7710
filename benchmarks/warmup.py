"""11. Cold cells (issue 26): the quickstart's per-cell latency without and with the warm-up, side by side
in one run. A loaded model serves every cell of its model and precision; without a warm-up the cell that
loaded it pays the first batch's one-time costs, so it reads slower than the cells that reuse it.

The quickstart's models, precisions and images, with one change so that the cells of one load are of
identical shape: max_new_tokens 8 and min_new_tokens 8 (every caption exactly 8 tokens) under three
prompts of the same token count as the models see them (checked before the run: `same_shape_prompts`),
and no token-budget sharing: three cells per load, each its own generation of the same shapes, alike but
for their turn. Per load: the first cell's latency p50 over its siblings' mean; the median of that ratio
over the loads, for `warmup_batches: 0` and `1` (caches reset in both: HF keeps none)."""

from __future__ import annotations

import shutil
from typing import Any

from benchmarks.common import QUICKSTART_GRID, Context, log, median, quickstart_data

TITLE = "11. Cold cells: first cell of each load vs its siblings, without and with the warm-up"
# one word apart, one token each in the zoo models' tokenizer: 13 prompt tokens each
PROMPTS = ["Describe this image in one sentence.", "Describe this picture in one sentence.",
           "Describe this photo in one sentence."]
TOKENS = 8


def warmup_grid(out: Any, warmup_batches: int, quick: bool, limit: int | None = None) -> Any:
    from sweep.grid.config import parse_grid

    data = quickstart_data(quick)
    if limit:  # --quick: one batch of 8 images per cell
        data["dataset"]["limit"] = limit
    data["name"] = f"warmup-{warmup_batches}"
    data["prompts"] = PROMPTS
    data["max_new_tokens"] = [TOKENS]
    data["generation"] = {**data.get("generation", {}), "min_new_tokens": TOKENS,
                          "share_token_budgets": False}
    data["measurement"] = {"warmup_batches": warmup_batches, "reset_caches": True}
    data["output_dir"] = str(out)
    data["tracking"] = {"experiment": "bench-warmup"}
    return parse_grid(data, str(QUICKSTART_GRID))


def same_shape_prompts(models: list[str], prompts: list[str]) -> dict[str, int]:
    """Each model's prompt length in tokens, the same for every prompt (else the siblings would not be of
    identical shape, and the comparison would measure the prompts: a ValueError)."""
    from benchmarks import model_side

    lengths = {}
    for model in models:
        counts = {p: model_side.prompt_tokens(model, p) for p in prompts}
        if len(set(counts.values())) != 1:
            raise ValueError(f"the warm-up prompts differ in length for {model}: {counts}")
        lengths[model] = counts[prompts[0]]
    return lengths


def first_vs_siblings(results: Any) -> list[dict[str, Any]]:
    """Per load (model, precision): the latency p50 of the cell that loaded it and its siblings' mean."""
    rows = []
    ok = results[results["status"] == "ok"]
    for (model, precision), cells in ok.groupby(["model", "precision"]):
        first = cells[cells["model_reused"] == 0]["latency_p50_s"]
        siblings = cells[cells["model_reused"] == 1]["latency_p50_s"]
        if len(first) != 1 or siblings.empty:
            continue  # a load shared by no sibling, or split across hosts: nothing to compare
        ratio = float(first.iloc[0]) / float(siblings.mean())
        rows.append({"load": f"{model}/{precision}", "first": float(first.iloc[0]),
                     "siblings": float(siblings.mean()), "ratio": ratio})
    return rows


def run(ctx: Context) -> dict[str, Any]:
    from benchmarks.common import run_engine

    variants: dict[str, Any] = {}
    tokens = same_shape_prompts([m["id"] for m in quickstart_data(ctx.quick)["models"]], PROMPTS)
    for warmup in (0, 1):
        out = ctx.work / f"warmup-{warmup}"
        shutil.rmtree(out, ignore_errors=True)
        sweep = run_engine(ctx, warmup_grid(out, warmup, ctx.quick, ctx.limit))
        loads = first_vs_siblings(sweep.results)
        policy = sorted(set(sweep.results["cache_policy"].dropna().astype(str)))
        variants[str(warmup)] = {"wall": sweep.wall, "loads": loads, "cache_policy": policy,
                                 "median_ratio": median([r["ratio"] for r in loads])}
        log(f"  warmup_batches {warmup}: wall {sweep.wall:.1f}s, first/siblings latency p50 "
            f"{variants[str(warmup)]['median_ratio']:.2f}x (median over {len(loads)} loads)")
    return {"variants": variants, "prompts": PROMPTS, "prompt_tokens": tokens, "max_new_tokens": TOKENS,
            "note": "one run each, back to back on the machine's 2 shared cores"}
