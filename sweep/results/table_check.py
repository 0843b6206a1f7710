"""Whether written tables agree with their declarations in `sweep.results.tables`: `check_table` for one
table, `check_output` for a sweep's output dir (results.csv, every cell's caption and batch tables, and
every caption row's batch in its cell's batch table). The tests run these on what sweeps wrote."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.results.tables import BATCH_TABLE, CAPTION_TABLE, RESULTS_TABLE, Column, Dtype

if TYPE_CHECKING:
    import pandas as pd


def _declared(table: Sequence[Column], name: str) -> Column | None:
    """The column `name`, or the pattern column (`weight_bytes_<part>`) it is one of."""
    for column in table:
        stem = column.name.split("<")[0]
        if column.name == name or ("<" in column.name and name.startswith(stem) and len(name) > len(stem)):
            return column
    return None


def _dtype_ok(values: pd.Series, dtype: Dtype) -> bool:
    """Whether the values are of the declared dtype, as pandas reads them back from parquet or CSV
    (where a missing value makes an int column float and an empty str column NaN)."""
    import pandas as pd

    api = pd.api.types
    present = values.dropna()
    if dtype == "float":
        return api.is_numeric_dtype(values) and not api.is_bool_dtype(values) or present.empty
    if dtype == "int":
        return api.is_integer_dtype(values) or (api.is_float_dtype(values) and (present % 1 == 0).all())
    if dtype == "bool":
        return api.is_bool_dtype(values) or present.map(lambda v: isinstance(v, bool)).all()
    if dtype == "list[str]":
        return present.map(lambda v: all(isinstance(x, str) for x in v)).all()
    return present.map(lambda v: isinstance(v, str)).all()


def check_table(frame: pd.DataFrame, table: Sequence[Column]) -> list[str]:
    """What in a written table disagrees with its declaration: columns not declared, columns always there
    (`when` "") missing, values not of the declared dtype. [] when it agrees."""
    problems = []
    for name in frame.columns:
        column = _declared(table, str(name))
        if column is None:
            problems.append(f"{name}: not declared")
        elif not _dtype_ok(frame[name], column.dtype):
            problems.append(f"{name}: {frame[name].dtype}, declared {column.dtype}")
    always = [c.name for c in table if not c.when and "<" not in c.name]
    problems += [f"{name}: missing" for name in always if name not in frame]
    return problems


def check_output(out_dir: Path) -> list[str]:
    """`check_table` over a sweep's output dir: results.csv, every cell's captions.parquet and
    batches.parquet, and every caption row's batch in its cell's batch table."""
    import pandas as pd

    out_dir = Path(out_dir)
    problems = []
    if (out_dir / "results.csv").is_file():
        problems += [f"results.csv {p}" for p in check_table(pd.read_csv(out_dir / "results.csv"),
                                                             RESULTS_TABLE)]
    for path in sorted(out_dir.glob("cells/*/captions.parquet")):
        cell, captions = path.parent.name, pd.read_parquet(path)
        problems += [f"{cell} {p}" for p in check_table(captions, CAPTION_TABLE)]
        batches_path = path.with_name("batches.parquet")
        if not batches_path.is_file():
            problems.append(f"{cell}: batches.parquet missing")
            continue
        batches = pd.read_parquet(batches_path)
        problems += [f"{cell} batches {p}" for p in check_table(batches, BATCH_TABLE)]
        if "batch_id" in captions and "batch_id" in batches:
            orphans = int((~captions["batch_id"].isin(batches["batch_id"])).sum())
            problems += [f"{cell}: {orphans} caption rows whose batch is not in batches.parquet"] if orphans \
                else []
    return problems
