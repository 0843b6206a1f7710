"""The recommendation of a finished sweep (`sweep.quality.pick`) from its results: which cells are
candidates, which memory column a constraint reads, and the answers for the common GPU sizes."""

from __future__ import annotations

import math

import pandas as pd

from sweep.publish.report import CPU_MEMORY_COST, cost_axes, front_pool
from sweep.quality.pick import GPU_SIZES_GB, Limit, Pick, constraints, pick
from sweep.quality.statistics import Comparisons


def candidates(results: pd.DataFrame) -> tuple[list[dict], str, str | None]:
    """The cells a recommendation chooses among (ok cells of the best kind of weights: real, else toy,
    else random, with its note), and the memory column (GPU peak, else the weights' size on CPU)."""
    results = results.copy()
    if CPU_MEMORY_COST not in results and "weight_bytes" in results:
        results[CPU_MEMORY_COST] = results["weight_bytes"] / 1e9
    pool, note = front_pool(results)
    return pool.to_dict("records"), cost_axes(results)["memory"], note


def recommend(results: pd.DataFrame, comparisons: Comparisons | None, limits: list[Limit],
              metric: str = "cider") -> Pick:
    rows, memory, _ = candidates(results)
    return pick(rows, comparisons, limits, memory, metric)


def gpu_picks(results: pd.DataFrame, comparisons: Comparisons | None) -> dict[str, Pick]:
    """No constraint, then each common GPU size (memory at most its GB)."""
    out = {"any": recommend(results, comparisons, [])}
    for size in GPU_SIZES_GB:
        out[f"{size}gb"] = recommend(results, comparisons, constraints(max_memory_gb=size))
    return out


def pick_tags(picks: dict[str, Pick]) -> dict[str, str]:
    """MLflow tags of the parent run: the choice and its ties for each answer (`pick_16gb`, ...)."""
    tags = {}
    for name, answer in picks.items():
        tags[f"pick_{name}"] = str(answer.best["label"]) if answer.best else "none meets the constraint"
        if answer.best and answer.ties:
            tags[f"pick_{name}_ties"] = ", ".join(t.label for t in answer.ties)[:4000]
        more = answer.more_images_to_separate
        if math.isfinite(more):
            tags[f"pick_{name}_more_images_to_separate_top_two"] = str(math.ceil(more))
    return tags
