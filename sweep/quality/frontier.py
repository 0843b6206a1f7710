"""The frontier: what a sweep trades quality against, and when one cell beats another (pure).

One home for
- the objectives: grid name (`search.objectives`) -> the results column of a cell's value, and the
  per-image metric whose paired interval compares two cells (`sweep.quality.statistics.Comparisons`);
- the memory axis rule: GPU peak where memory was measured on a GPU, else the weights' size (on CPU the
  peak is the process's RSS, mostly the framework: the same for every model and precision);
- dominance (points), "tied" and "beats with confidence" (paired intervals), with its two cost rules.

The two cost rules. Quality is judged the same way everywhere: j beats i only when the paired interval
of quality(j) - quality(i) lies above zero. On a cost with a paired interval (cost(j) - cost(i)):

- `AT_MOST_AS_DEAR` (the report's "tied with the front", `sweep.publish.report.mark_fronts`): j must be
  at least as cheap *with confidence* (interval high <= 0). A cell is called dominated only when the
  evidence says so on every axis, so "tied" errs towards showing a cell;
- `NOT_DEARER` (successive halving's stop, `sweep.search.halving`): j must not be dearer with confidence
  (interval low <= 0). A rung sees few images, so a cost interval there is wide: demanding confident
  cheapness would almost never stop a cell, and what halving guards is quality (a stopped cell is worse
  with confidence); a stop inside a cost tie is named in its reason with the cost ratios. Pruning adds
  one condition (`cheap_enough_to_prune`): j must not be dearer by its point estimate either, so the
  cheaper cell of a tied pair (on the rung's point front of that cost, and likely on the full run's)
  is never stopped by it.

A cost without a paired interval (memory: one number per cell) is compared as points under both rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # the grid's config imports the objectives: no pandas at its import
    import pandas as pd

QUALITY = "cider"
PEAK_MEMORY = "peak_memory_gb"
WEIGHTS_MEMORY = "weight_gb"  # weight_bytes / 1e9, added to the results by `mark_fronts`

ObjectiveName = Literal["latency", "memory", "energy"]


@dataclass(frozen=True)
class Objective:
    """A cost a sweep minimises."""

    name: str  # as the grid's `search.objectives` spells it
    column: str  # the cell's value in results.csv (memory: see `memory_column`)
    paired: str | None  # per-image metric of the paired interval between two cells; None: points only
    # how `paired` is computed from a caption table: (per-image column, statistic over the images)
    per_image: tuple[str, str] | None = None


OBJECTIVES: dict[str, Objective] = {
    "latency": Objective("latency", "latency_p50_s", "latency_p50_s", ("batch_latency_sec", "median")),
    "memory": Objective("memory", PEAK_MEMORY, None),
    # each batch's energy spread over its images (`sweep.results.tables.energy_per_image`): a column of
    # a rung's table; the stored caption tables lack it, so the report compares energy as points
    "energy": Objective("energy", "energy_kwh", "energy_per_image"),
}


class Interval(Protocol):
    """A paired difference a - b with its interval (`sweep.quality.statistics.Difference`)."""

    low: float
    high: float


def measured_on_gpu(kind: object) -> bool:
    return str(kind or "").startswith("gpu")


def memory_column(kinds: Iterable[object]) -> str:
    """The memory axis: the GPU peak where a cell measured GPU memory (or where no cell says how: stores
    older than `peak_memory_kind`), else the weights' size."""
    kinds = [str(k or "") for k in kinds]
    on_gpu = any(measured_on_gpu(k) for k in kinds) or all(k == "" for k in kinds)
    return PEAK_MEMORY if on_gpu else WEIGHTS_MEMORY


def cost_axes(results: pd.DataFrame) -> dict[str, str]:
    """Cost axis -> results column, the memory axis by `memory_column`."""
    kinds = results["peak_memory_kind"].fillna("").astype(str) if "peak_memory_kind" in results else []
    columns = {name: o.column for name, o in OBJECTIVES.items()}
    return {**columns, "memory": memory_column(kinds)}


def cell_memory(costs: Mapping[str, object], kind: object) -> float:
    """One cell's memory on the axis the rule picks for it (`kind`: its `peak_memory_kind`), in GB."""
    if memory_column([kind]) == PEAK_MEMORY:
        value = costs.get(PEAK_MEMORY)
    else:
        value = costs.get("weight_bytes")
        value = value / 1e9 if isinstance(value, int | float) else None
    return float(value) if isinstance(value, int | float) else math.nan


def dominates(better: tuple[float, float], worse: tuple[float, float]) -> bool:
    """Points (quality, cost), quality maximised, cost minimised: `better` is at least as good on both
    and strictly better on one. A point with a NaN coordinate dominates nothing and is dominated by none."""
    (qb, cb), (qw, cw) = better, worse
    return qb >= qw and cb <= cw and (qb > qw or cb < cw)


def pareto_front(points: Sequence[tuple[float, float]], maximize_first: bool = True,
                 minimize_second: bool = True) -> list[int]:
    """Indices (ascending) of the points no other point `dominates` (identical points are all kept).
    Points with a NaN coordinate are never on the front and dominate nothing."""
    keyed: list[tuple[int, tuple[float, float]]] = []
    for i, (first, second) in enumerate(points):
        a, b = float(first), float(second)
        if not (math.isnan(a) or math.isnan(b)):
            keyed.append((i, (a if maximize_first else -a, b if minimize_second else -b)))
    return [i for i, p in keyed if not any(dominates(q, p) for j, q in keyed if j != i)]


def confident_front(n: int, beats: Callable[[int, int], bool]) -> list[int]:
    """Indices (ascending) of the n items no other item beats with confidence (`beats(j, i)`: j beats i,
    e.g. `beats_with_confidence`). The Pareto front is a subset when `beats` implies dominance."""
    return [i for i in range(n) if not any(beats(j, i) for j in range(n) if j != i)]


def better_with_confidence(quality: Interval | None) -> bool:
    """The paired quality difference j - i lies above zero (NaN: not known, so not better)."""
    return quality is not None and quality.low > 0


def tied(difference: Interval) -> bool:
    """The paired difference's interval includes zero: at this sample size neither cell is better with
    confidence (NaN bounds: not known, so tied)."""
    return not (difference.low > 0 or difference.high < 0)


def at_most_as_dear(cost: Interval) -> bool:
    """Cost rule of the report's fronts: j - i at or below zero with confidence (see the module doc)."""
    return cost.high <= 0


def not_dearer(cost: Interval) -> bool:
    """Cost rule of halving's stop: j - i not above zero with confidence (see the module doc)."""
    return not cost.low > 0


AT_MOST_AS_DEAR = at_most_as_dear
NOT_DEARER = not_dearer
CostRule = Callable[[Interval], bool]


def cheap_enough(paired: Interval | None, cost_j: float, cost_i: float, rule: CostRule) -> bool:
    """j at least as cheap as i on one cost: by `rule` on the paired difference j - i where there is one,
    else as points (an unknown cost never is)."""
    if paired is not None and not (math.isnan(paired.low) or math.isnan(paired.high)):
        return rule(paired)
    return not (math.isnan(cost_j) or math.isnan(cost_i)) and cost_j <= cost_i


def cheap_enough_to_prune(paired: Interval | None, cost_j: float, cost_i: float) -> bool:
    """Halving's cost condition (`sweep.search.halving`): `cheap_enough` by NOT_DEARER, and j not the
    dearer by its point estimate (the families grid lost its fastest cell to a better one at `latency
    ×0.89` inside a latency tie before this). A NaN point is left to `cheap_enough`."""
    return not cost_j > cost_i and cheap_enough(paired, cost_j, cost_i, NOT_DEARER)


def beats(quality: Interval | None, cost: Interval | None, point_j: tuple[float, float],
          point_i: tuple[float, float], rule: CostRule) -> bool:
    """Cell j beats cell i with confidence on one cost: quality better with confidence and `cheap_enough`
    by `rule`. Without a paired quality difference (no per-image scores): points, `dominates`."""
    if quality is None:
        return dominates(point_j, point_i)
    return better_with_confidence(quality) and cheap_enough(cost, point_j[1], point_i[1], rule)
