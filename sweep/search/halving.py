"""Pareto-aware successive halving: which cells stop at a rung (pure functions, no Ray, no I/O).

Every cell sees the images in one seeded order (`image_order`), so rung n is the same first n images for
every cell and two cells at a rung are compared image by image. At a rung, cell `a` is dominated by cell
`b` when, on the images both captioned there,

- quality: the paired bootstrap interval of CIDEr(b) - CIDEr(a) at the grid's `confidence` lies above 0;
- every objective of the grid: b is at least as cheap. The noisy costs are compared with their paired
  intervals, and b counts as at least as cheap unless it is dearer with confidence or by its point
  estimate (`sweep.quality.frontier.cheap_enough_to_prune`, which says why it is not the report's rule):
  latency, the
  interval of p50(b) - p50(a) (per-image batch latencies); energy, the interval of the mean energy per
  image (each batch's energy spread over its images). Memory (weights or GPU peak: one number per cell,
  not noisy) as points: b's value at most a's.

So a stopped cell is worse on quality with confidence than a cell that is not dearer on any cost, by
its point estimate nor with confidence. What this does not guarantee: a stopped cell whose cost is
within a tie of its dominator's (same latency within the noise) could, at the full image count, land on
a front by a point estimate inside that tie; the stop reason prints the cost ratios (each at least 1
now) so such a case can be seen.

A trial (one generation, possibly serving several token budgets: `sweep.plan.budgets`) stops only when every
cell it serves is dominated: a live member keeps the generation running, and the members cut from it
cost nothing more.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from sweep.quality.frontier import OBJECTIVES, QUALITY, better_with_confidence, cheap_enough_to_prune
from sweep.quality.statistics import Comparisons, Difference

DEFAULT_FIRST_RUNG = 16
FIRST_RUNG_SHARE = 8  # the default first rung is 1/8 of the images, at least DEFAULT_FIRST_RUNG


def default_first_rung(n_images: int) -> int:
    """The first rung when the grid sets none: an eighth of the images, at least 16. A rung decides only
    where a paired CIDEr interval clears zero, and its half-width shrinks as 1/sqrt(n): on the zoo's
    models a CIDEr gap of 0.5 cleared it at 12 images ([-0.86, -0.14]), gaps of 0.2-0.3 need a few dozen.
    At 200 images this is 25 (rungs 25, 50, 100, 200); at 50 images 16, as before."""
    return max(DEFAULT_FIRST_RUNG, round(n_images / FIRST_RUNG_SHARE))


def image_order(sample_ids: Sequence[str], seed: int) -> list[str]:
    """One seeded permutation of the sample ids, the same for every cell: rung n is its first n images.
    Sorted first, so the order does not depend on how the dataset listed them."""
    ids = sorted(sample_ids)
    random.Random(seed).shuffle(ids)
    return ids


def rung_sizes(n_images: int, rungs: Sequence[int] | None = None, first_rung: int | None = None,
               factor: float = 2.0) -> list[int]:
    """Image counts of the rungs for a dataset of n_images: the explicit `rungs` below n_images, or
    first_rung × factor^k below it; the whole dataset is always the last rung."""
    if n_images < 1:
        raise ValueError(f"no images to halve over (n_images={n_images})")
    if rungs is None:
        sizes, n = [], float(first_rung or default_first_rung(n_images))
        while round(n) < n_images:
            if not sizes or round(n) > sizes[-1]:
                sizes.append(round(n))
            n *= factor
    else:
        sizes = [n for n in rungs if n < n_images]
    return [*sizes, n_images]


def image_counts(sizes: Sequence[int], n_trials: int, factor: float = 2.0) -> tuple[int, float]:
    """(worst case, expected) images captioned by n_trials generations over these rungs. Worst case: no
    trial is stopped (n_trials × the last rung). Expected: a 1/factor share of the trials survives each
    rung (successive halving's nominal rate; the real one depends on how far apart the cells are)."""
    worst = n_trials * sizes[-1]
    expected, alive, before = 0.0, float(n_trials), 0
    for size in sizes:
        expected += alive * (size - before)
        before, alive = size, max(1.0, alive / factor)
    return worst, expected


def captioned(table: pd.DataFrame) -> pd.Series | slice:
    """The rows of a caption table that were captioned (no error)."""
    return table["error"].fillna("").astype(str) == "" if "error" in table else slice(None)


@dataclass(frozen=True)
class RungCell:
    """One cell at a rung: its per-image table (`sample_id`, `cider`, `batch_latency_sec`, `error`) over
    the rung's images, and its one-number costs (objective -> value, e.g. memory, energy)."""

    cell_id: str
    label: str
    table: pd.DataFrame
    costs: Mapping[str, float] = field(default_factory=dict)

    @cached_property
    def cider_by_image(self) -> pd.Series:
        """CIDEr of each captioned image (no error, a score), by sample id."""
        table = self.table
        if "cider" not in table:
            return pd.Series(dtype=float)
        ok = captioned(table)
        values = pd.to_numeric(table.loc[ok, "cider"], errors="coerce")
        return pd.Series(values.to_numpy(), index=table.loc[ok, "sample_id"].to_numpy()).dropna()


@dataclass(frozen=True)
class Domination:
    """Why a cell stopped: the cell that dominates it, on how many images, with the CIDEr difference
    (the stopped cell minus the dominating one) and the cost ratios (stopped / dominating)."""

    by: str
    by_label: str
    rung: int
    n_images: int
    cider: Difference  # stopped - dominating: its interval is below zero
    ratios: Mapping[str, float]

    def describe(self) -> str:
        d = self.cider
        text = (f"dominated by {self.by_label} at {self.n_images} images: CIDEr {_signed(d.estimate)} "
                f"[{_signed(d.low)}, {_signed(d.high)}]")
        for objective, ratio in self.ratios.items():
            if math.isfinite(ratio) and abs(ratio - 1) >= 0.005:  # the costs it loses on
                text += f", {objective} ×{ratio:.2f}"
        return text


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _cost(cell: RungCell, objective: str) -> float:
    if objective == "latency":  # the p50 over the rung's captioned images
        column, statistic = OBJECTIVES["latency"].per_image
    elif objective == "energy" and OBJECTIVES["energy"].paired in cell.table:
        column, statistic = OBJECTIVES["energy"].paired, "sum"
    else:
        column = statistic = ""
    if column:
        table = cell.table
        if column not in table:
            return math.nan
        values = pd.to_numeric(table.loc[captioned(table), column], errors="coerce").dropna()
        return float(getattr(values, statistic)()) if len(values) else math.nan
    value = cell.costs.get(objective, math.nan)
    return float(value) if value is not None else math.nan


def _cheap_enough(b: RungCell, a: RungCell, objective: str, comparisons: Comparisons) -> bool:
    """b at least as cheap as a on the objective, by pruning's rule (`frontier.cheap_enough_to_prune`:
    not dearer with confidence nor by its point estimate); unknown costs never are."""
    paired = OBJECTIVES[objective].paired
    diff = comparisons.difference(b.cell_id, a.cell_id, paired) if paired else None
    return cheap_enough_to_prune(diff, _cost(b, objective), _cost(a, objective))


def _ratio(a: RungCell, b: RungCell, objective: str) -> float:
    ca, cb = _cost(a, objective), _cost(b, objective)
    return ca / cb if cb > 0 and not math.isnan(ca) else math.nan


def dominator(a: RungCell, others: Sequence[RungCell], objectives: Sequence[str], rung: int,
              comparisons: Comparisons, by_gain: bool = False) -> Domination | None:
    """The cell among `others` that dominates `a` with the largest CIDEr gain, or None (a continues).
    `by_gain`: `others` come in descending order of that gain, so the first that dominates is it."""
    best: Domination | None = None
    for b in others:
        if by_gain and best is not None:
            break
        if b.cell_id == a.cell_id:
            continue
        diff = comparisons.difference(a.cell_id, b.cell_id, QUALITY)
        if diff is None or not better_with_confidence(diff.flipped()):
            continue  # a not worse than b with confidence: a tie or better
        if not all(_cheap_enough(b, a, o, comparisons) for o in objectives):
            continue
        if best is None or diff.estimate < best.cider.estimate:
            best = Domination(b.cell_id, b.label, rung, diff.n, diff,
                              {o: _ratio(a, b, o) for o in objectives})
    return best


def cider_gain(b: RungCell, a: RungCell) -> float:
    """Mean CIDEr of b minus a's on the images both scored (what the paired difference estimates)."""
    cb, ca = b.cider_by_image, a.cider_by_image
    if not cb.index.equals(ca.index):
        common = ca.index.intersection(cb.index)
        cb, ca = cb[common], ca[common]
    return float((cb.to_numpy() - ca.to_numpy()).mean()) if len(ca) else math.nan


def could_dominate(b: RungCell, a: RungCell, objectives: Sequence[str]) -> bool:
    """A necessary condition for b to dominate a, cheap to test: a higher mean CIDEr on the images both
    scored (a paired interval above zero needs a positive mean difference) and, with memory an
    objective, no more memory. Only the pairs that pass are bootstrapped."""
    if b.cell_id == a.cell_id:
        return False
    if "memory" in objectives:
        mb, ma = _cost(b, "memory"), _cost(a, "memory")
        if math.isnan(mb) or math.isnan(ma) or mb > ma:
            return False
    return cider_gain(b, a) > 0


def decide_rung(cells: Sequence[RungCell], objectives: Sequence[str], confidence: float, rung: int,
                n_resamples: int = 1000, seed: int = 0,
                targets: Sequence[str] | None = None) -> dict[str, Domination | None]:
    """Cell id -> its Domination (it stops) or None (it continues), for the `targets` among the cells
    that reached a rung (all of them when None), each compared with every cell that `could_dominate`
    it. Compared on the images each pair shares (the rung's images when both captioned all of them)."""
    unknown = sorted(set(objectives) - set(OBJECTIVES))  # the frontier's objectives
    if unknown:
        raise ValueError(f"unknown objectives {unknown}; known: {', '.join(OBJECTIVES)}")
    chosen = None if targets is None else set(targets)
    wanted = [c for c in cells if chosen is None or c.cell_id in chosen]
    candidates = {a.cell_id: sorted((b for b in cells if could_dominate(b, a, objectives)),
                                    key=lambda b, a=a: -cider_gain(b, a)) for a in wanted}
    needed = {a.cell_id for a in wanted if candidates[a.cell_id]}
    needed |= {b.cell_id for found in candidates.values() for b in found}
    # one Comparisons for the cells that need a bootstrap (the same resamples as comparing all of them)
    comparisons = Comparisons({c.cell_id: c.table for c in cells if c.cell_id in needed}, n_resamples, seed,
                              confidence)
    return {a.cell_id: dominator(a, candidates[a.cell_id], objectives, rung, comparisons, by_gain=True)
            for a in wanted}


def trials_to_stop(groups: Mapping[str, Sequence[str]],
                   decisions: Mapping[str, Domination | None]) -> dict[str, Domination]:
    """Trial cell id -> the Domination that stops it: a trial stops only when every cell its generation
    serves (`groups`: trial cell id -> its cells, itself included) is dominated; the trial's own
    Domination is reported (or its first member's)."""
    stop = {}
    for trial, members in groups.items():
        found = [decisions.get(m) for m in members]
        if found and all(d is not None for d in found):
            stop[trial] = decisions.get(trial) or found[0]
    return stop


@dataclass(frozen=True)
class MemoryEstimate:
    """A generation's weights before it runs: its precision and `sweep.plan.cell_facts.estimated_weight_bytes`
    (+inf when unknown)."""

    precision: str
    weight_bytes: float


def may_be_dominated_later(memory: float, waiting: Sequence[MemoryEstimate],
                           measured: Sequence[tuple[MemoryEstimate, float]]) -> bool:
    """Could a generation that has not reached the first rung yet (`waiting`) dominate a cell of
    `memory` (measured, as RungCell.costs["memory"])? With memory an objective, a dominating cell has at
    most its memory, so only a waiting generation whose memory may be that low could. Its memory is not
    measured yet: its estimate, scaled by the smallest measured / estimated ratio among the generations
    of its precision that reached the first rung (`measured`: (estimate, measured memory) pairs; the
    estimate misses what quantization leaves unquantized, e.g. the nf4 toy models measure 1.8-2.5x it), or
    the bare estimate where none did. Unknown (NaN memory, an estimate of +inf) may always dominate.

    A cell that no waiting generation can dominate has been compared at its first rung with every cell
    that could stop it there: holding it for a synchronous first rung would only cost a reload."""
    if not math.isfinite(memory):
        return bool(waiting)
    ratios: dict[str, float] = {}
    for estimate, value in measured:
        if estimate.weight_bytes > 0 and math.isfinite(estimate.weight_bytes) and math.isfinite(value):
            ratio = value / (estimate.weight_bytes / 1e9)
            ratios[estimate.precision] = min(ratio, ratios.get(estimate.precision, ratio))
    for other in waiting:
        if not math.isfinite(other.weight_bytes):
            return True
        if other.weight_bytes / 1e9 * ratios.get(other.precision, 1.0) <= memory:
            return True
    return False
