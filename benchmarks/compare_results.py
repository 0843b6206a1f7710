"""Two sweeps' outputs, same results? Cells, captions and quality numbers compared exactly; timings ignored.

    python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR

Each directory is a sweep's output_dir (its `results.csv` and `cells/<cell_id>/captions.parquet`). What
must match, to the last digit:

- the cells: the same rows of results.csv, matched by cell id (a cell id that changed is a difference);
- every results.csv column the two tables share except the measured costs and what is derived from them
  (latency, throughput, memory, energy, wall and load times, the fronts, which ride on latency and energy);
  values are compared as the CSV's text, so 0.1234567 against 0.1234568 is a difference;
- each cell's captions: per sample the caption, its generated tokens, error, references, prompt hash and
  every per-image score column (cider, meteor, rouge_l, bleu_*), floats exactly (NaN equals NaN).

Columns that only one side has are listed, not failed (a table's layout may change while its numbers must
not). Prints every difference; exit 0 when there is none, 1 otherwise, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

# measured on the machine (timings, memory, energy) or derived from such a measurement: never compared
MEASURED = re.compile(
    r"latency|ttft|e2e|_sec$|seconds|per_sec|wall|energy|emission|kwh|co2|peak_memory|memory_gb|"
    r"cells_beside|pareto|node|actor|timestamp|_ts$|attempt|load_|model_reused|run_id|"
    r"preprocess_share|"  # processor seconds over the batches' wall time: a ratio of two timings
    r"fresh_process"  # whether a host process was reused (resources.reuse_host_processes), like model_reused
)
# what a caption row must keep, besides the per-image scores
CAPTION_COLUMNS = ("caption", "generated_tokens", "error", "references", "prompt_sha256")
SCORE_COLUMN = re.compile(r"^(cider|meteor|rouge_l|spice|bleu_.*)$")
ROW_KEY = "sample_id"


def compared_result_columns(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """Shared columns less the measured ones; a `*_kind` column (how a cost was taken) is a label: kept."""
    return [c for c in before.columns
            if c in after.columns and (c.endswith("_kind") or not MEASURED.search(c))]


def read_results(out: Path) -> pd.DataFrame:
    path = out / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.csv (not a finished sweep's output_dir?)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)  # text: equal to the last digit
    if "cell_id" not in table.columns:
        raise ValueError(f"{path}: no cell_id column")
    return table.set_index("cell_id")


def same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if hasattr(a, "__len__") and not isinstance(a, str):  # references: a list or an array of strings
        return list(a) == list(b)
    return a == b


def show(value: object) -> str:
    """A value as it would be typed: numpy scalars as Python's, floats with every digit."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    return repr(value)


def compare_captions(cell: str, before: Path, after: Path) -> list[str]:
    """Differences between one cell's two caption tables (one line each, capped per column)."""
    if not before.is_file() or not after.is_file():
        missing = [str(p) for p in (before, after) if not p.is_file()]
        return [f"{cell}: captions.parquet missing: {', '.join(missing)}"]
    a, b = pd.read_parquet(before), pd.read_parquet(after)
    out: list[str] = []
    if set(a[ROW_KEY]) != set(b[ROW_KEY]):
        only_a, only_b = set(a[ROW_KEY]) - set(b[ROW_KEY]), set(b[ROW_KEY]) - set(a[ROW_KEY])
        out.append(f"{cell}: samples differ: {len(only_a)} only before, {len(only_b)} only after")
    a, b = a.set_index(ROW_KEY), b.set_index(ROW_KEY)
    shared = a.index.intersection(b.index)
    columns = [c for c in a.columns if c in CAPTION_COLUMNS or SCORE_COLUMN.match(c)]
    for column in columns:
        if column not in b.columns:
            out.append(f"{cell}: captions column {column} missing after")
            continue
        diffs = [s for s in shared if not same_value(a.at[s, column], b.at[s, column])]
        for sample in diffs[:3]:
            out.append(f"{cell} sample {sample} {column}: {show(a.at[sample, column])} -> "
                       f"{show(b.at[sample, column])}")
        if len(diffs) > 3:
            out.append(f"{cell} {column}: {len(diffs) - 3} more samples differ")
    return out


def compare(before_dir: Path, after_dir: Path) -> tuple[list[str], list[str]]:
    """(differences, notes): notes are columns only one side has and what was compared."""
    before, after = read_results(before_dir), read_results(after_dir)
    diffs: list[str] = []
    notes: list[str] = []

    def name(cell: str, table: pd.DataFrame = before) -> str:
        return f"{table.at[cell, 'label']} ({cell})" if "label" in table.columns else cell

    for cell in before.index.difference(after.index):
        diffs.append(f"cell {name(cell)} only before")
    for cell in after.index.difference(before.index):
        diffs.append(f"cell {name(cell, after)} only after")
    columns = compared_result_columns(before, after)
    for side, table, other in (("before", before, after), ("after", after, before)):
        only = [c for c in table.columns if c not in other.columns]
        if only:
            notes.append(f"results.csv columns only {side}: {', '.join(only)}")
    shared = before.index.intersection(after.index)
    for cell in shared:
        for column in columns:
            x, y = before.at[cell, column], after.at[cell, column]
            if x != y:
                diffs.append(f"{name(cell)} {column}: {x} -> {y}")
        caption_path = Path("cells") / cell / "captions.parquet"
        diffs += compare_captions(name(cell), before_dir / caption_path, after_dir / caption_path)
    notes.append(f"compared {len(shared)} cells; results.csv columns compared ({len(columns)}): "
                 f"{', '.join(columns)}")
    return diffs, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", type=Path, help="output_dir of the first sweep")
    p.add_argument("after", type=Path, help="output_dir of the second sweep")
    args = p.parse_args(argv)
    try:
        diffs, notes = compare(args.before, args.after)
    except (OSError, ValueError) as exc:
        print(f"compare_results: {exc}", file=sys.stderr)
        return 2
    for line in notes:
        print(f"note: {line}")
    for line in diffs:
        print(f"DIFF: {line}")
    print(f"{len(diffs)} differences" if diffs else "identical: same cells, captions and quality numbers")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
