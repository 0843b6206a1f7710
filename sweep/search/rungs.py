"""The driver's side of a rung: the cells' stored rows over the rung's images, scored for CIDEr, as
`sweep.search.halving.RungCell`s (reads the result store, calls the scorer; the decision itself is pure)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from sweep.quality.frontier import cell_memory
from sweep.results.batches import of_rows, per_image
from sweep.results.store import ResultStore
from sweep.search.halving import RungCell


def _key(cell_id: str, sample_id: str) -> str:
    return f"{cell_id}|{sample_id}"  # one flat string key per (cell, image): one scorer call per rung


class RungEvaluator:
    """`evaluate(rung, cell_ids)`: the RungCells of those cells over the first `sizes[rung]` samples of
    `order`. `score(predictions, references)` returns per-image CIDEr by key (`CaptionScorer.score_images`
    with the sweep's document frequencies); what a call lacks is scored in one call.

    Asynchronous halving evaluates at every rung report, mostly the same cells again: an image's CIDEr
    never changes within a sweep (fixed document frequencies, stored rows are never redone), so each is
    scored once, and a cell's RungCell is kept once it covers the whole rung."""

    def __init__(self, store: ResultStore, order: Sequence[str], sizes: Sequence[int],
                 references: Mapping[str, list[str]], labels: Mapping[str, str],
                 score: Callable[[dict, dict], Mapping[Any, float]]):
        self.store, self.order, self.sizes = store, list(order), list(sizes)
        self.references, self.labels, self.score = references, labels, score
        self._cider: dict[str, float] = {}  # _key(cell, sample) -> CIDEr
        self._cells: dict[tuple[str, int], RungCell] = {}  # (cell, rung) -> its RungCell over the whole rung

    def __call__(self, rung: int, cell_ids: Sequence[str]) -> list[RungCell]:
        ids = set(self.order[:self.sizes[rung]])
        wanted = list(dict.fromkeys(cell_ids))
        tables, batches, costs = {}, {}, {}
        for cid in wanted:
            if (cid, rung) in self._cells or not self.store.captions_path(cid).is_file():
                continue  # known, or not consolidated at this rung (it failed): nothing to compare
            table = self.store.read_caption_table(cid)
            table = table[table["sample_id"].isin(ids)].reset_index(drop=True)
            batches[cid] = of_rows(self.store.read_batches(cid), table)
            # each image's share of its batch's energy over the rung's images (not measured: 0)
            tables[cid] = per_image(table, batches[cid], shares=True)
            costs[cid] = self.store.covering_costs(cid, set(tables[cid]["sample_id"])) or {}
        predictions, references = {}, {}
        for cid, table in tables.items():
            ok = table[(table["error"].fillna("") == "")
                       & table["sample_id"].map(lambda s: bool(self.references.get(s)))]
            for sid, caption in zip(ok["sample_id"], ok["caption"], strict=True):
                if _key(cid, sid) not in self._cider:
                    predictions[_key(cid, sid)] = str(caption)
                    references[_key(cid, sid)] = list(self.references[sid])
        if predictions:
            self._cider.update(self.score(predictions, references))
        fresh: dict[str, RungCell] = {}
        for cid, table in tables.items():
            cider = [self._cider.get(_key(cid, sid), math.nan) for sid in table["sample_id"]]
            share = table["energy_per_image"].fillna(0.0) if "energy_per_image" in table else math.nan
            scored = table.assign(cider=cider, energy_per_image=share)
            energy = float(pd.to_numeric(batches[cid]["energy_kwh"], errors="coerce").sum()) \
                if "energy_kwh" in batches[cid] else math.nan
            # how memory was measured is a batch fact of the table (costs.json does not keep it)
            kind = table["peak_memory_kind"].iloc[0] if "peak_memory_kind" in table and len(table) else ""
            fresh[cid] = RungCell(cid, self.labels.get(cid, cid), scored,
                                  {"memory": cell_memory(costs[cid], kind), "energy": energy})
            if set(table["sample_id"]) >= ids:  # a partial one (interrupted) is read again next time
                self._cells[(cid, rung)] = fresh[cid]
        return [fresh.get(cid) or self._cells[(cid, rung)] for cid in wanted
                if cid in fresh or (cid, rung) in self._cells]


def cider_scores(document_frequencies: Callable[[], Any]) -> Callable[[dict, dict], dict]:
    """Per-image CIDEr-D by key, as `sweep.quality.scoring.CaptionScorer` computes it (the same PTB
    tokenization
    and document frequencies) but without METEOR and ROUGE: a rung needs CIDEr only, and one tokenizer
    run for every cell of the rung."""
    from sweep.quality.scoring import cider_d, tokenize

    def score(predictions: dict, references: dict) -> dict:
        keys = list(predictions)
        tok = tokenize({**{("res", k): [predictions[k]] for k in keys},
                        **{("gts", k): list(references[k]) for k in keys}})
        values = cider_d([tok[("res", k)][0] for k in keys], [tok[("gts", k)] for k in keys],
                         document_frequencies())
        return dict(zip(keys, values, strict=True))
    return score
