"""A cell pruned by successive halving is a finished result: `pruned.json` in its cell folder keeps why
(the domination, the rung, the images it saw) and the search settings it was pruned under, so that a
re-run of the same grid reads it back (no trial, no Ray start when nothing else is left, no new MLflow
run) instead of running it again with nothing new to caption. Other search settings (another seed,
rungs, objectives, or `search.strategy: full`) run it again from where it stopped."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from sweep.results.store import ResultStore, atomic_write_bytes

PRUNED_FILE = "pruned.json"


@dataclass(frozen=True)
class StoredPrune:
    """What the recorder needs of a `sweep.search.halving.Domination`, read back from the store."""

    by: str
    rung: int
    n_images: int
    reason: str
    search: str  # search_stamp of the settings it was pruned under

    def describe(self) -> str:
        return self.reason


def search_stamp(search: Any) -> str:
    """sha256 of the search settings that decide which cells a rung prunes."""
    data = search.model_dump(mode="json") if hasattr(search, "model_dump") else dict(search)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def write_pruned(store: ResultStore, cell_id: str, domination: Any, stamp: str) -> None:
    prune = StoredPrune(str(domination.by), int(domination.rung), int(domination.n_images),
                        domination.describe(), stamp)
    atomic_write_bytes(store.cell_dir(cell_id) / PRUNED_FILE, json.dumps(asdict(prune), indent=2).encode())


def read_pruned(store: ResultStore, cell_id: str, stamp: str) -> StoredPrune | None:
    """The cell's prune, if it was pruned under these search settings and its rung's table is stored."""
    try:
        prune = StoredPrune(**json.loads((store.cell_dir(cell_id) / PRUNED_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if prune.search != stamp or store.covering_costs(cell_id, set()) is None:
        return None
    return prune


def stored_prunes(search: Any, store: ResultStore, cells: list[Any]) -> dict[str, StoredPrune]:
    """Cell id -> its stored prune, for the cells a re-run of a `pareto_halving` grid would otherwise run
    again; {} under any other strategy (`full` completes pruned cells from where they stopped)."""
    if search.strategy != "pareto_halving":
        return {}
    stamp = search_stamp(search)
    prunes = {c.cell_id: read_pruned(store, c.cell_id, stamp) for c in cells if not c.do_sample}
    return {cell_id: prune for cell_id, prune in prunes.items() if prune is not None}
