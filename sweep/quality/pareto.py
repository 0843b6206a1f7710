"""A plot of quality vs cost with its Pareto front (which points dominate: `sweep.quality.frontier`)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


FIG_WIDTH, PLOT_HEIGHT = 9.0, 5.0  # inches; the plot area keeps its size, the figure grows below it
TOP_IN, UNDER_AXES_IN, LEGEND_BELOW_IN, MARGIN_IN = 0.45, 1.25, 0.5, 0.1
LEFT_IN, RIGHT_IN = 0.9, 0.3
LINE_IN = 0.17  # one line of the legend table or the footer
TABLE_COLUMNS = 3
FOOTER_CHARS = 150


def _layout(fig: Any, ax: Any, table_items: int, footer_lines: int) -> None:
    """Size the figure for the plot area (always PLOT_HEIGHT inches), the legend below the axes, the
    table of unlabelled points and the footer; the label offsets are in points, so a placement made
    before a resize stays free of overlaps."""
    rows = -(-table_items // TABLE_COLUMNS) + (1 if table_items else 0)
    below = UNDER_AXES_IN + LINE_IN * (rows + footer_lines) + MARGIN_IN
    height = TOP_IN + PLOT_HEIGHT + below
    fig.set_size_inches(FIG_WIDTH, height)
    ax.set_position((LEFT_IN / FIG_WIDTH, below / height, (FIG_WIDTH - LEFT_IN - RIGHT_IN) / FIG_WIDTH,
                     PLOT_HEIGHT / height))


def _label_points(ax: Any, renderer: Any, labelled: list, rest: list) -> list[tuple[int, str]]:
    """Name the front and tied points beside them; number the rest (and any name that found no free
    spot), and return the (number, label) table the figure lists below the plot."""
    from sweep.quality.labels import place_labels, point_boxes

    avoid = point_boxes(ax, [(p[0], p[1]) for p in [*labelled, *rest]])
    unplaced = place_labels(ax, renderer, [(p[0], p[1], p[2]) for p in labelled], avoid)
    numbered = [labelled[k] for k in unplaced] + list(rest)
    table = [(n, p[2]) for n, p in enumerate(numbered, start=1)]
    missing = place_labels(ax, renderer, [(p[0], p[1], str(n)) for n, p in enumerate(numbered, start=1)],
                           avoid)
    return [(n, label + (" (crowded: not marked)" if n - 1 in missing else "")) for n, label in table]


def _write_table(fig: Any, table: list[tuple[int, str]], footer_lines: int) -> None:
    if not table:
        return
    height = fig.get_figheight()
    rows = -(-len(table) // TABLE_COLUMNS)
    top = MARGIN_IN + LINE_IN * (footer_lines + rows)
    fig.text(0.01, (top + LINE_IN) / height, "numbered points:", fontsize=7.5, va="bottom", color="0.2")
    width = 0.98 / TABLE_COLUMNS
    for k, (n, label) in enumerate(table):
        row, column = k % rows, k // rows
        fig.text(0.01 + column * width, (top - row * LINE_IN) / height, f"{n}: {label}", fontsize=7.5,
                 va="bottom", color="0.2", gid="cell-table")


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

    footer = [note] if note else []
    if skipped:
        footer.append("not plotted: " + ", ".join(skipped))
    if not plotted:
        footer.append("no row has both values")
    footer_lines = [line for text in footer for line in textwrap.wrap(text, FOOTER_CHARS)]
    others = [p for p in plotted if not p[3]]
    fig = Figure(figsize=(FIG_WIDTH, 1.0), dpi=120)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    _layout(fig, ax, len(others), len(footer_lines))
    if bars:
        ax.errorbar([b[0] for b in bars], [b[1] for b in bars],
                    xerr=[[b[2][0] for b in bars], [b[2][1] for b in bars]],
                    yerr=[[b[3][0] for b in bars], [b[3][1] for b in bars]],
                    fmt="none", ecolor="0.55", elinewidth=0.8, capsize=2, zorder=1, label="95% interval")
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
    ax.set_xlabel(f"{cost} ({'lower' if minimize_cost else 'higher'} is better)")
    ax.set_ylabel(f"{quality} ({'higher' if maximize_quality else 'lower'} is better)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.margins(0.08, 0.1)
        ax.autoscale_view()
        ax.set_xlim(ax.get_xlim())  # fixed now: the labels are placed against these limits
        ax.set_ylim(ax.get_ylim())
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -LEGEND_BELOW_IN / PLOT_HEIGHT), ncol=2,
                  fontsize=8)
        table = _label_points(ax, canvas.get_renderer(), front + ties, others)
        _layout(fig, ax, len(table), len(footer_lines))
        _write_table(fig, table, len(footer_lines))
    if footer_lines:
        fig.text(0.01, MARGIN_IN / fig.get_figheight(), "\n".join(footer_lines), fontsize=8, va="bottom",
                 ha="left", color="0.25")

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
