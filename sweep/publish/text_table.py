"""The results as the terminal prints them: the plain-text table (columns and headers from
`sweep.results.tables`), with the notes on cells that captioned nothing useful (degenerate output) or
could not caption some images (error rows)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweep.quality.statistics import ci_columns
from sweep.results.tables import shown


def as_float(value: object) -> float:
    """The value as a number; NaN for what is not one (an empty CSV cell, a label)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


#: the printed table's columns, headers from `sweep.results.tables.RESULTS_TABLE`
TABLE_COLUMNS = shown(["label", "status", "backend", "weights", "cider", "bleu_4", "meteor", "rouge_l",
                       "mean_caption_words", "latency_p50_s", "images_per_sec", "peak_memory_gb",
                       "energy_kwh", "pareto", "pareto_tied", "degenerate_output"])
#: metrics shown with their interval in the printed table
TABLE_INTERVALS = ("cider",)
DEGENERATE_MARK = "DEGENERATE"
DEGENERATE_NOTE = ("DEGENERATE: (nearly) the same caption for every image ({share:.0%} or more of at least "
                   "{n} images): the model may not see the images; its scores are not a result")


def with_interval(row: pd.Series, key: str, digits: int = 2) -> str:
    """`1.23 [1.10, 1.35]` when the row has the metric's interval, else the bare value."""
    low, high = (row.get(c) for c in ci_columns(key))
    value = _fmt(row[key], digits)
    if isinstance(low, float) and isinstance(high, float) and math.isfinite(low) and math.isfinite(high):
        return f"{value} [{low:.{digits}f}, {high:.{digits}f}]"
    return value


def degenerate_mark(value: object) -> str:
    return DEGENERATE_MARK if isinstance(value, float) and value == 1.0 else ""


def _table_value(row: pd.Series, key: str) -> str:
    if key in TABLE_INTERVALS:
        return with_interval(row, key)
    if key == "degenerate_output":
        return degenerate_mark(row[key])
    if key == "n_errors":
        value = as_float(row[key])
        return f"{value:.0f}" if math.isfinite(value) else "-"
    return _fmt(row[key])


def _has_error_rows(results: pd.DataFrame) -> pd.Series:
    if "n_errors" not in results:
        return pd.Series(False, index=results.index)
    return pd.to_numeric(results["n_errors"], errors="coerce").fillna(0) > 0


def format_table(results: pd.DataFrame) -> str:
    """A plain-text table (no control characters: it reads the same in a terminal and a job log). An
    `errors` column (each cell's error rows: images it could not caption) when any cell has one."""
    cols = [(k, h) for k, h in TABLE_COLUMNS if k in results]
    if _has_error_rows(results).any():
        at = next((i + 1 for i, (k, _) in enumerate(cols) if k == "status"), len(cols))
        cols.insert(at, *shown(["n_errors"]))
    if "degenerate_output" in results and not (results["degenerate_output"] == 1.0).any():
        cols = [(k, h) for k, h in cols if k != "degenerate_output"]  # the marker column only when needed
    cells = [[h for _, h in cols]]
    for _, row in results.iterrows():
        cells.append([_table_value(row, k) if k in row else "" for k, _ in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def error_row_lines(out_dir: Path, results: pd.DataFrame) -> list[str]:
    """For each cell with error rows: how many, and the first error reason (from its caption table)."""
    from sweep.results.store import ResultStore

    store, lines = ResultStore(out_dir), []
    for _, row in results[_has_error_rows(results)].iterrows():
        first = ""
        try:
            errors = store.read_captions(row["cell_id"])["error"].astype(str)
            first = next((e for e in errors if e), "")
        except Exception:  # no table (failed cell) or an old one: the count alone
            pass
        total = as_float(row.get("n_samples"))
        of = f" of {total:.0f}" if math.isfinite(total) else ""
        count = f"{as_float(row['n_errors']):.0f}{of}"
        lines.append(f"  {row['label']}: {count} images not captioned (error rows)"
                     + (f"; the first: {first[:300]}" if first else ""))
    return ([f"{len(lines)} cells have error rows (images they could not caption, not scored):", *lines]
            if lines else [])


def degenerate_notes(results: pd.DataFrame) -> list[str]:
    """One note naming the cells flagged `degenerate_output`, or none."""
    from sweep.quality.statistics import DEGENERATE_MIN_IMAGES, DEGENERATE_SHARE

    if "degenerate_output" not in results:
        return []
    flagged = results[results["degenerate_output"] == 1.0]["label"].tolist()
    if not flagged:
        return []
    note = DEGENERATE_NOTE.format(share=DEGENERATE_SHARE, n=DEGENERATE_MIN_IMAGES)
    return [f"{note}: {', '.join(flagged)}"]
