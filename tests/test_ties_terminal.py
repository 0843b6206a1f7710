"""The terminal's tie list: every pair while it fits a screen, one line per group of tied cells beyond."""

import numpy as np
import pandas as pd

from sweep.publish.report import tie_summary
from sweep.publish.ties import SCREEN_LINES, terminal_ties, tie_groups, tied_with
from sweep.quality.statistics import Comparisons

N = 80


def _sweep(groups: int, per_group: int):
    """`groups` groups of cells: within a group the CIDEr differences are noise (ties), between groups a
    whole point (separated)."""
    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 0.3, N)
    tables, rows = {}, []
    for g in range(groups):
        for k in range(per_group):
            cid = f"g{g}c{k}"
            cider = base + 3.0 - g + rng.normal(0, 0.2, N)
            tables[cid] = pd.DataFrame({"sample_id": [str(i) for i in range(N)], "cider": cider, "error": ""})
            rows.append({"cell_id": cid, "label": f"group{g}/cell{k}", "status": "ok", "weights": "real",
                         "cider": float(cider.mean())})
    return pd.DataFrame(rows), Comparisons(tables)


def test_a_short_list_is_printed_whole():
    results, comparisons = _sweep(2, 3)
    full = tie_summary(results, comparisons)
    assert len(full) <= SCREEN_LINES
    assert terminal_ties(full, results, tied_with(results, comparisons)) == full


def test_a_list_longer_than_a_screen_is_grouped():
    results, comparisons = _sweep(3, 10)
    full = tie_summary(results, comparisons)
    tied = tied_with(results, comparisons)
    assert len(full) > SCREEN_LINES
    lines = terminal_ties(full, results, tied)
    assert len(lines) <= SCREEN_LINES and lines[:2] == full[:2]
    groups = [line for line in lines if line.startswith("  group ")]
    assert len(groups) == 3 and all("(10 cells" in line for line in groups)
    assert "group0/cell" in groups[0] and "group2/cell" in groups[2] and "group1" not in groups[0]


def test_tied_with_is_symmetric_and_groups_are_connected():
    results, comparisons = _sweep(2, 4)
    tied = tied_with(results, comparisons)
    labels = dict(zip(results["cell_id"], results["label"], strict=True))
    for cid, others in tied.items():
        for other in others:
            back = next(c for c, label in labels.items() if label == other)
            assert labels[cid] in tied[back]
    groups = tie_groups(results, tied)
    assert sorted(len(g) for g in groups) == [4, 4]
    assert {g[0].split("/")[0] for g in groups} == {"group0", "group1"}
