"""Which cell to use under a job's constraints: the best that meets every one, the cells that cannot be told
apart from it (paired intervals), what each costs relative to it, and why the others are out.

Pure: it reads a results table and a `Comparisons` (paired bootstrap differences over the same images);
`sweep.pick` is the command line, `sweep.publish.report` puts it at the top of report.html."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweep.quality.frontier import tied
from sweep.quality.statistics import Comparisons, Difference

#: the common GPU sizes the report and the MLflow parent run answer for (GB), beside no constraint
GPU_SIZES_GB = (16, 24, 80)


@dataclass(frozen=True)
class Limit:
    """One constraint: `name` (its flag), the cost it reads, its bound and direction."""

    name: str
    cost: str  # key of `cell_costs`
    bound: float
    at_most: bool  # True: the cost must be <= bound; False: >= bound

    def broken_by(self, value: float) -> float:
        """How far `value` breaks the limit, relative to it (0 when met; inf when not measured)."""
        if math.isnan(value):
            return math.inf
        if self.at_most:
            return max(0.0, value / self.bound - 1) if self.bound > 0 else (0.0 if value <= 0 else math.inf)
        return max(0.0, self.bound / value - 1) if value > 0 else math.inf

    def describe(self, value: float) -> str:
        sign = "<=" if self.at_most else ">="
        got = "not measured" if math.isnan(value) else f"{value:.4g}"
        return f"{self.name} {sign} {self.bound:g}: {COST_NAMES[self.cost]} is {got}"


COST_NAMES = {"memory_gb": "memory (GB)", "images_per_sec": "images/s", "latency_s": "latency p50 (s)",
              "kwh_per_1k": "kWh per 1,000 images"}


def constraints(max_memory_gb: float | None = None, min_images_per_sec: float | None = None,
                max_latency_s: float | None = None,
                max_kwh_per_1k_images: float | None = None) -> list[Limit]:
    """The limits set (None: no limit on that cost)."""
    spec = [("max-memory-gb", "memory_gb", max_memory_gb, True),
            ("min-images-per-sec", "images_per_sec", min_images_per_sec, False),
            ("max-latency-s", "latency_s", max_latency_s, True),
            ("max-kwh-per-1k-images", "kwh_per_1k", max_kwh_per_1k_images, True)]
    return [Limit(name, cost, float(bound), at_most)
            for name, cost, bound, at_most in spec if bound is not None]


def _num(row: dict, key: str) -> float:
    try:
        value = float(row.get(key))
    except (TypeError, ValueError):
        return math.nan
    return value


def cell_costs(row: dict, memory_column: str) -> dict[str, float]:
    """The costs a constraint can bound, from a results row (`memory_column`: GPU peak, or the weights'
    size where no GPU memory was measured)."""
    n = _num(row, "n_samples")
    energy = _num(row, "energy_kwh")
    return {"memory_gb": _num(row, memory_column), "images_per_sec": _num(row, "images_per_sec"),
            "latency_s": _num(row, "latency_p50_s"),
            "kwh_per_1k": energy / n * 1000 if n > 0 else math.nan}


@dataclass(frozen=True)
class Tie:
    label: str
    cell_id: str
    difference: Difference  # tie - best, on the metric
    relative_costs: dict[str, float]  # cost / the best's cost


@dataclass
class Pick:
    """The answer for one set of constraints. `best` None: no cell meets them (`closest` says which comes
    nearest and what it breaks)."""

    metric: str
    limits: list[Limit]
    best: dict[str, Any] | None = None
    ties: list[Tie] = field(default_factory=list)
    runner_up: tuple[str, Difference] | None = None  # the second-best eligible cell and best - it
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (label, the constraint it breaks)
    closest: tuple[str, str] | None = None
    judged: bool = True  # False: no per-image scores, ties not judged

    @property
    def more_images_to_separate(self) -> float:
        """About how many more images would separate the best from the runner-up (0 if already apart)."""
        if self.runner_up is None:
            return math.nan
        diff = self.runner_up[1]
        return 0.0 if not tied(diff) else max(0.0, diff.images_to_separate() - diff.n)


def _broken(limits: list[Limit], costs: dict[str, float]) -> list[tuple[float, Limit]]:
    """The limits `costs` break, worst (relatively) first, with how far."""
    broken = [(lim.broken_by(costs[lim.cost]), lim) for lim in limits]
    return sorted((b for b in broken if b[0] > 0), key=lambda b: -b[0])


def pick(rows: list[dict], comparisons: Comparisons | None, limits: list[Limit], memory_column: str,
         metric: str = "cider") -> Pick:
    """`rows`: the candidate cells (ok, one kind of weights), each with cell_id, label, metric and costs."""
    out = Pick(metric, limits)
    eligible, nearest = [], []
    for row in rows:
        if math.isnan(_num(row, metric)):
            continue
        costs = cell_costs(row, memory_column)
        broken = _broken(limits, costs)
        if not broken:
            eligible.append((row, costs))
        else:
            reason = "; ".join(limit.describe(costs[limit.cost]) for _, limit in broken)
            out.excluded.append((str(row["label"]), reason))
            nearest.append((broken[0][0], str(row["label"]), reason))
    if not eligible:
        if nearest:
            _, label, reason = min(nearest, key=lambda n: n[0])
            out.closest = (label, reason)
        return out
    eligible.sort(key=lambda rc: -_num(rc[0], metric))
    best, best_costs = eligible[0]
    out.best = {**best, "costs": best_costs}
    known = comparisons is not None and str(best["cell_id"]) in comparisons
    out.judged = known
    for row, costs in eligible[1:]:
        diff = comparisons.difference(str(row["cell_id"]), str(best["cell_id"]), metric) if known else None
        if diff is None:
            continue
        if out.runner_up is None:
            out.runner_up = (str(row["label"]), diff.flipped())
        if tied(diff):
            relative = {k: costs[k] / best_costs[k] if best_costs[k] else math.nan for k in costs}
            out.ties.append(Tie(str(row["label"]), str(row["cell_id"]), diff, relative))
    return out


def gpu_picks(rows: list[dict], comparisons: Comparisons | None, memory_column: str,
              metric: str = "cider") -> dict[str, Pick]:
    """No constraint, then each common GPU size (memory at most its GB)."""
    out = {"any": pick(rows, comparisons, [], memory_column, metric)}
    for size in GPU_SIZES_GB:
        out[f"{size}gb"] = pick(rows, comparisons, constraints(max_memory_gb=size), memory_column, metric)
    return out


def pick_tags(picks: dict[str, Pick]) -> dict[str, str]:
    """MLflow tags of the parent run: the choice and its ties for each answer (`pick_16gb`, ...)."""
    tags = {}
    for name, answer in picks.items():
        tags[f"pick_{name}"] = str(answer.best["label"]) if answer.best else "no cell meets the constraint"
        if answer.best and answer.ties:
            tags[f"pick_{name}_ties"] = ", ".join(t.label for t in answer.ties)[:4000]
        more = answer.more_images_to_separate
        if math.isfinite(more):
            tags[f"pick_{name}_more_images_to_separate_top_two"] = str(math.ceil(more))
    return tags


def recommendation_sections(picks: dict[str, Pick]) -> list[tuple[str, list[str]]]:
    """(title, lines) per answer of `gpu_picks`, for the report."""
    titles = {"any": "No constraint", **{f"{s}gb": f"Fits {s} GB of GPU memory" for s in GPU_SIZES_GB}}
    unconstrained = picks.get("any")
    out = []
    for name, answer in picks.items():
        same = (name != "any" and unconstrained is not None and answer.best is not None
                and unconstrained.best is not None and not answer.excluded
                and answer.best["cell_id"] == unconstrained.best["cell_id"])
        lines = [f"every cell fits: the same choice as with no constraint ({answer.best['label']})"] if same \
            else format_pick(answer)
        out.append((titles.get(name, name), lines))
    return out


def _relative(relative: dict[str, float]) -> str:
    parts = [f"{COST_NAMES[k].split(' (')[0]} {v:.2g}x" for k, v in relative.items() if math.isfinite(v)]
    return ", ".join(parts) or "costs not measured"


def format_pick(result: Pick, max_excluded: int = 12) -> list[str]:
    """The answer in lines of plain text (the CLI prints them; the report shows them)."""
    asked = "; ".join(f"{lim.name} {lim.bound:g}" for lim in result.limits) or "no constraint"
    lines = [f"constraints: {asked}; quality: {result.metric}"]
    if result.best is None:
        lines.append("no cell meets the constraints")
        if result.closest:
            lines.append(f"  closest: {result.closest[0]}, which breaks {result.closest[1]}")
        return lines
    best = result.best
    low, high = _num(best, f"{result.metric}_ci_low"), _num(best, f"{result.metric}_ci_high")
    interval = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
    costs = ", ".join(f"{COST_NAMES[k]} {v:.4g}" for k, v in best["costs"].items() if math.isfinite(v))
    value = _num(best, result.metric)
    lines.append(f"choice: {best['label']}: {result.metric} {value:.3f}{interval}; {costs}")
    if not result.judged:
        lines.append("  ties: not judged (no per-image scores for this cell)")
    elif result.ties:
        lines.append(f"  cannot be told apart from it ({len(result.ties)}; paired 95% interval of the "
                     f"{result.metric} difference includes 0), costs relative to the choice:")
        for tie in result.ties:
            d = tie.difference
            lines.append(f"    {tie.label}: {d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]; "
                         f"{_relative(tie.relative_costs)}")
    else:
        lines.append("  no other cell meeting the constraints ties with it: it is better with confidence")
    if result.runner_up is not None:
        label, diff = result.runner_up
        more = result.more_images_to_separate
        if tied(diff):
            text = ("no number of images separates them (the same score)" if math.isinf(more)
                    else f"about {math.ceil(more):,} more images would separate them")
        else:
            text = "already separated"
        lines.append(f"  top two: {best['label']} vs {label}: {diff.estimate:+.3f} over {diff.n} images; "
                     f"{text}")
    if result.excluded:
        lines.append(f"  excluded ({len(result.excluded)}):")
        lines += [f"    {label}: breaks {reason}" for label, reason in result.excluded[:max_excluded]]
        if len(result.excluded) > max_excluded:
            lines.append(f"    ... and {len(result.excluded) - max_excluded} more")
    return lines
