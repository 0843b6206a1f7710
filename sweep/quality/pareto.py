"""A plot of quality vs cost with its Pareto front (which points dominate: `sweep.quality.frontier`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from sweep.quality.frontier import confident_front, pareto_front

__all__ = ["confident_front", "mark_front", "pareto_front", "plot_front"]


def _number(row: dict, key: str) -> float:
    # Missing, None or non-numeric values count as NaN: such rows can be neither on the front nor plotted.
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _error_bar(row: dict, value: float, keys: tuple[str, str] | None) -> tuple[float, float] | None:
    """(below, above) the point of the row's interval, or None when it has no interval. A percentile
    interval need not contain its point: the bar is clipped at the point then."""
    if keys is None:
        return None
    low, high = _number(row, keys[0]), _number(row, keys[1])
    if math.isnan(low) or math.isnan(high):
        return None
    return max(value - low, 0.0), max(high - value, 0.0)


def mark_front(
    rows: list[dict],
    quality: str,
    cost: str,
    *,
    maximize_quality: bool = True,
    minimize_cost: bool = True,
) -> list[bool]:
    """One flag per row: is it on the quality-vs-cost Pareto front."""
    points = [(_number(r, quality), _number(r, cost)) for r in rows]
    on_front = set(pareto_front(points, maximize_first=maximize_quality, minimize_second=minimize_cost))
    return [i in on_front for i in range(len(rows))]


def plot_front(
    rows: list[dict],
    quality: str,
    cost: str,
    label_key: str,
    path: Path,
    title: str,
    note: str | None = None,
    *,
    maximize_quality: bool = True,
    minimize_cost: bool = True,
    quality_ci: tuple[str, str] | None = None,
    cost_ci: tuple[str, str] | None = None,
    tied: Sequence[bool] | None = None,
) -> Path:
    """Scatter of quality (y) vs cost (x), front highlighted as a step line, saved as PNG at `path`.

    `quality_ci` / `cost_ci`: the (low, high) keys of each axis' interval: drawn as error bars on the rows
    that have both ends. `tied`: one flag per row, not on the front but not dominated with confidence
    either: drawn apart from the dominated points."""
    path = Path(path)
    flags = mark_front(rows, quality, cost, maximize_quality=maximize_quality, minimize_cost=minimize_cost)
    tied = list(tied) if tied is not None else [False] * len(rows)
    plotted: list[tuple[float, float, str, str]] = []  # cost, quality, label, "front" | "tied" | ""
    skipped: list[str] = []
    bars: list[tuple[float, float, tuple[float, float], tuple[float, float]]] = []
    for row, on_front, is_tied in zip(rows, flags, tied, strict=True):
        label = str(row.get(label_key, "?"))
        q, c = _number(row, quality), _number(row, cost)
        if math.isnan(q) or math.isnan(c):
            skipped.append(label)
            continue
        plotted.append((c, q, label, "front" if on_front else "tied" if is_tied else ""))
        c_err, q_err = _error_bar(row, c, cost_ci), _error_bar(row, q, quality_ci)
        if c_err or q_err:
            bars.append((c, q, c_err or (0.0, 0.0), q_err or (0.0, 0.0)))

    # Figure + Agg canvas rather than pyplot: no global backend switch, no display, safe in worker threads.
    # matplotlib (a second of import) only when a plot is drawn: a re-run keeps the plots it has
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if bars:
        ax.errorbar([b[0] for b in bars], [b[1] for b in bars],
                    xerr=[[b[2][0] for b in bars], [b[2][1] for b in bars]],
                    yerr=[[b[3][0] for b in bars], [b[3][1] for b in bars]],
                    fmt="none", ecolor="0.55", elinewidth=0.8, capsize=2, zorder=1, label="95% interval")
    others = [p for p in plotted if not p[3]]
    ties = [p for p in plotted if p[3] == "tied"]
    front = sorted((p for p in plotted if p[3] == "front"), key=lambda p: (p[0], p[1]))
    if ties:
        ax.scatter([p[0] for p in ties], [p[1] for p in ties], color="tab:orange", s=36, zorder=3,
                   label="tied with the front (not dominated with confidence)")
    if others:
        ax.scatter([p[0] for p in others], [p[1] for p in others], color="0.6", s=30, label="dominated")
    if front:
        # Best quality reachable within a cost budget: it changes only at front points, hence a step.
        ax.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            drawstyle="steps-post" if minimize_cost else "steps-pre",
            color="tab:red",
            linewidth=1.5,
            zorder=2,
        )
        ax.scatter(
            [p[0] for p in front],
            [p[1] for p in front],
            color="tab:red",
            s=50,
            zorder=3,
            label="Pareto front",
        )
    for c, q, label, _ in plotted:
        ax.annotate(label, (c, q), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{cost} ({'lower' if minimize_cost else 'higher'} is better)")
    ax.set_ylabel(f"{quality} ({'higher' if maximize_quality else 'lower'} is better)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend(loc="best", fontsize=8)

    footer = [note] if note else []
    if skipped:
        footer.append("not plotted: " + ", ".join(skipped))
    if not plotted:
        footer.append("no row has both values")
    if footer:
        fig.text(0.01, 0.01, "\n".join(footer), fontsize=8, va="bottom", ha="left", wrap=True, color="0.25")
        fig.subplots_adjust(bottom=0.12 + 0.03 * len(footer))

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
