"""A cell's batches beside its images: the batch table's row of a host's answer (`batch_row`), the join of
batch facts onto images (`per_image`, the one home of "an image's share of its batch's total"), and the
adapter that reads a store written before the batch table existed (`split_legacy`). Declarations:
`sweep.results.tables` (CAPTION_TABLE, BATCH_TABLE)."""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from actors.contract import BatchResult, share_of_total
from sweep.results.tables import BATCH_FACTS, BATCH_TABLE

BATCH_COLUMNS = tuple(c.name for c in BATCH_TABLE)
TOTALS = tuple(c for c in BATCH_TABLE if c.share)


def batch_row(result: BatchResult, batch_id: str) -> dict[str, Any]:
    """The batch table's row of one host answer (its facts, in the declared order)."""
    return {"batch_id": batch_id, **{c.name: getattr(result, c.source) for c in BATCH_FACTS}}


def per_image(captions: pd.DataFrame, batches: pd.DataFrame, shares: bool = False) -> pd.DataFrame:
    """The caption rows (their order kept) with the facts of the batch each was in: the latency an image
    waited is its batch's `batch_latency_sec`, where it ran its batch's `actor_id`, ... A batch's totals
    (energy, emissions, processor seconds) are not facts of an image: with `shares`, each image gets its
    share instead (the column `Column.share` names: `energy_per_image`, ...): the total split evenly over
    the batch's rows in `captions` (error rows included: the batch was measured with them), NaN where
    the total was not measured. Rows whose batch `batches` lacks get NaN facts."""
    out = captions.copy()
    if "batch_id" not in out or batches.empty:
        return out
    facts = batches.drop_duplicates("batch_id").set_index("batch_id").reindex(out["batch_id"])
    totals = {c.name for c in TOTALS}
    for name in facts.columns:
        if name not in totals and name not in out:
            out[name] = facts[name].to_numpy()
    if shares:
        rows = out["batch_id"].map(out["batch_id"].value_counts()).to_numpy()
        for column in TOTALS:
            if column.name in facts:
                values = pd.to_numeric(facts[column.name], errors="coerce").to_numpy(dtype=float)
                out[column.share] = [share_of_total(v, 1, n) for v, n in zip(values, rows, strict=True)]
    return out


def of_rows(batches: pd.DataFrame, captions: pd.DataFrame) -> pd.DataFrame:
    """The batches the caption rows were in, in the order of their first row (a cell's batch table)."""
    if "batch_id" not in captions or "batch_id" not in batches:
        return batches.iloc[0:0]
    order = pd.unique(captions["batch_id"])
    known = batches.drop_duplicates("batch_id").set_index("batch_id")
    missing = [b for b in order if b not in known.index]
    if missing:
        raise ValueError(f"{len(missing)} batches of the caption rows are not in the batch table "
                         f"(e.g. {missing[0]})")
    return known.loc[order].reset_index()


def is_legacy(columns: Any) -> bool:
    """A caption table of the layout before the batch table: no `batch_id` (its batch facts on every row,
    its batch totals on each batch's first row, 0.0 on the others)."""
    return "batch_id" not in set(columns)


# the rows of one batch in the older layout: one host, one start and end, one latency (and one attempt)
LEGACY_KEY = ("actor_id", "batch_start_ts", "batch_end_ts", "batch_latency_sec", "attempt")


def split_legacy(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An older caption table (`is_legacy`) as (caption table, batch table) of today's layout: its batch
    columns moved to one row per batch (the totals summed over the batch's rows: all on its first),
    each row given its batch's id (a hash of the batch's key, so converting twice gives the same ids)."""
    key = [k for k in LEGACY_KEY if k in table]
    keys = table[key].astype(str).agg("|".join, axis=1) if key else pd.Series("", index=table.index)
    ids = keys.map(lambda k: "v1-" + hashlib.sha1(k.encode()).hexdigest()[:16])
    moved = [c for c in BATCH_COLUMNS if c in table and c != "batch_id"]
    frame = table[moved].assign(batch_id=ids.to_numpy())
    batches = frame.drop_duplicates("batch_id").set_index("batch_id")
    for column in TOTALS:
        if column.name in frame:
            # skipna=False: a total not measured (NaN on the batch's first row) stays NaN, not 0
            batches[column.name] = frame.groupby("batch_id", sort=False)[column.name].agg(
                lambda s: s.sum(skipna=False))
    batches = batches.reset_index()[[c for c in BATCH_COLUMNS if c in moved or c == "batch_id"]]
    captions = table.drop(columns=moved).assign(batch_id=ids.to_numpy())
    return captions, batches
