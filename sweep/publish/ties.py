"""Ties for the terminal: the full list (`sweep.publish.report.tie_summary`, one line per cell) while it fits
a screen, else one line per group of cells that are tied together; the full list stays in report.html and
in results.csv (`tied_with`)."""

from __future__ import annotations

import pandas as pd

from sweep.publish.report import QUALITY, front_pool
from sweep.quality.frontier import tied
from sweep.quality.statistics import Comparisons

SCREEN_LINES = 24  # a terminal's height: a longer tie list is grouped


def tied_with(results: pd.DataFrame, comparisons: Comparisons | None) -> dict[str, list[str]]:
    """Cell id -> the labels of the cells it cannot be told apart from on CIDEr (paired 95% interval of
    the difference includes 0), best first; empty for cells without per-image scores."""
    pool, _ = front_pool(results)
    pool = pool[pool[QUALITY].astype(float).notna()].sort_values(QUALITY, ascending=False, kind="stable")
    ids = [cid for cid in pool["cell_id"] if comparisons is not None and cid in comparisons]
    labels = dict(zip(results["cell_id"], results["label"], strict=True))
    out: dict[str, list[str]] = {cid: [] for cid in results["cell_id"]}
    for k, a in enumerate(ids):
        for b in ids[k + 1:]:
            diff = comparisons.difference(a, b)
            if diff is not None and tied(diff):
                out[a].append(labels[b])
                out[b].append(labels[a])
    for cid in out:  # best first, as the pool is ordered
        order = {labels[c]: n for n, c in enumerate(ids)}
        out[cid].sort(key=lambda label: order.get(label, len(order)))
    return out


def tie_groups(results: pd.DataFrame, ties: dict[str, list[str]]) -> list[list[str]]:
    """Groups of cells joined by ties (connected: a ties b, b ties c puts a, b, c together), each listed
    best first, the groups by their best cell."""
    labels = dict(zip(results["cell_id"], results["label"], strict=True))
    by_label = {labels[cid]: cid for cid in ties}
    cider = dict(zip(results["label"], pd.to_numeric(results[QUALITY], errors="coerce"), strict=True))
    seen: set[str] = set()
    groups = []
    for cid in sorted(ties, key=lambda c: -(cider.get(labels[c]) or 0.0)):
        if labels[cid] in seen or not ties[cid]:
            continue
        group, todo = [], [labels[cid]]
        while todo:
            label = todo.pop()
            if label in seen:
                continue
            seen.add(label)
            group.append(label)
            todo += ties[by_label[label]]
        groups.append(sorted(group, key=lambda label: -(cider.get(label) or 0.0)))
    return groups


def terminal_ties(full: list[str], results: pd.DataFrame, tied: dict[str, list[str]],
                  screen: int = SCREEN_LINES) -> list[str]:
    """`full` (the tie summary's lines) when it fits `screen` lines, else its header and top-two line
    followed by one line per group of tied cells (`tied`: `tied_with`'s answer)."""
    if len(full) <= screen:
        return full
    groups = tie_groups(results, tied)
    cider = dict(zip(results["label"], pd.to_numeric(results[QUALITY], errors="coerce"), strict=True))
    lines = [*full[:2], f"  {len(full) - 2} lines of ties, grouped: cells joined by ties (a ties b, b ties "
                        "c) on one line, best first; every pair in report.html and results.csv (tied_with)"]
    for n, group in enumerate(groups, start=1):
        values = [cider[g] for g in group]
        lines.append(f"  group {n} ({len(group)} cells, CIDEr {min(values):.3f} to {max(values):.3f}): "
                     + ", ".join(group))
    return lines
