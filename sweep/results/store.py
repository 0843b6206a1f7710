"""The result store under the sweep's output dir: one folder per cell id, every file written atomically.

cells/<cell_id>/
  cell.json          the resolved cell (written first); `weights` what was loaded (real | toy | random, as
                     results.csv and MLflow say; "" until a host loaded it), `model.weights_requested`
                     the grid's setting (real | dummy), `rendered_prompt` the prompt as the model sees it
                     and its `prompt_sha256` (each caption row carries the hash)
  parts/*.parquet    caption rows, one file per finished batch (append-only: a crash loses one batch)
  batch_parts/*.parquet  the batch row of each part (same name), written before its part
  captions.parquet   all rows of a finished cell (parts consolidated): per-image facts and `batch_id`
  batches.parquet    the finished cell's batches, a row each (written before captions.parquet); readers
                     that want per-image samples join them: `read_captions` (`sweep.results.batches`)
  loads.json         the load report of each model host that served the cell (by actor id), and the
                     effective generation settings: once per load, not per caption row (a cell served
                     by a shared generation: that generation's hosts, settings at its own budget)
  costs.json         the finished cell's cost metrics
  failure.json       why the cell's last attempt failed

A part is only ever a visible `parts/<hex>.parquet`: the hidden `.<name>.*.parquet` beside them are temp
files of a write in progress (or left by a kill mid-write) and are never read. A part that cannot be read
is set aside as `<name>.unreadable` (kept, with a warning) and its samples are simply not done.

A cell stored before the batch table (batch facts on every caption row) is converted in place when first
read (`sweep.results.batches.split_legacy`; its batch table first, then its caption table), so re-runs
read back what older versions computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from actors.contract import CellStart
from sweep.grid.cells import Cell
from sweep.results.batches import is_legacy, per_image, split_legacy

log = logging.getLogger(__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".parquet")
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def at_budget(generation: dict, max_new_tokens: int) -> dict:
    """Effective generate() settings at a smaller budget: min lengths capped at it, as a host caps them."""
    generation = {**generation, "max_new_tokens": max_new_tokens}
    for key in ("min_new_tokens", "min_length"):
        if key in generation:
            generation[key] = min(generation[key], max_new_tokens)
    return generation


#: what cell.json learns from the hosts that load the cell
LOAD_FIELDS = ("weights", "rendered_prompt", "prompt_sha256")


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cell_record(cell: Cell) -> dict:
    """cell.json's content before any host loaded the cell. `weights` means what was loaded, as in
    results.csv and MLflow (the zoo's models say `toy` where the grid asked for `real` weights): the grid's
    setting is `model.weights_requested`, as MLflow's `weights_requested` param."""
    record = json.loads(cell.model_dump_json())
    record["model"]["weights_requested"] = record["model"].pop("weights")
    record.update(dict.fromkeys(LOAD_FIELDS, ""))
    return record


class ResultStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.notes: list[str] = []  # parts set aside as unreadable, in this process

    def cell_dir(self, cell_id: str) -> Path:
        return self.root / "cells" / cell_id

    def captions_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "captions.parquet"

    def config_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "cell.json"

    def costs_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "costs.json"

    def failure_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "failure.json"

    def loads_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "loads.json"

    def parts_dir(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "parts"

    def batches_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "batches.parquet"

    def batch_parts_dir(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "batch_parts"

    def begin_cell(self, cell: Cell) -> None:
        record = cell_record(cell)
        # a resumed cell keeps what its earlier attempt's hosts said (the next hosts say it again)
        record.update({k: v for k, v in self.read_cell(cell.cell_id).items() if k in LOAD_FIELDS})
        atomic_write_bytes(self.config_path(cell.cell_id), json.dumps(record, indent=2).encode())
        self.failure_path(cell.cell_id).unlink(missing_ok=True)

    def read_cell(self, cell_id: str) -> dict:
        """cell.json as written ({} when missing or unreadable)."""
        try:
            return dict(json.loads(self.config_path(cell_id).read_text()))
        except (OSError, ValueError):
            return {}

    def _annotate_cell(self, cell_id: str, fields: dict) -> None:
        record = self.read_cell(cell_id)
        if record and any(record.get(k) != v for k, v in fields.items()):
            record.update(fields)
            atomic_write_bytes(self.config_path(cell_id), json.dumps(record, indent=2).encode())

    def record_loads(self, cell_id: str, starts: list[CellStart], max_new_tokens: int | None = None) -> None:
        """The hosts that begin serving the cell (a resumed cell adds the hosts of its new attempt).
        `max_new_tokens`: the cell is served by another cell's generation (token-budget sharing) whose
        hosts these are; its generation settings are that generation's, at its own budget."""
        loads = self.read_loads(cell_id)
        for start in starts:
            loads["reports"][start.actor_id] = asdict(start.report)
        if starts:
            loads["generation"] = dict(starts[0].generation)
            if max_new_tokens is not None:
                loads["generation"] = at_budget(loads["generation"], max_new_tokens)
        atomic_write_bytes(self.loads_path(cell_id), json.dumps(loads, indent=2, sort_keys=True).encode())
        if starts:
            rendered = starts[0].rendered_prompt
            self._annotate_cell(cell_id, {"weights": starts[0].report.weights, "rendered_prompt": rendered,
                                          "prompt_sha256": prompt_sha256(rendered) if rendered else ""})

    def read_loads(self, cell_id: str) -> dict:
        """{"reports": {actor id: load report}, "generation": effective generate() settings}."""
        try:
            loads = json.loads(self.loads_path(cell_id).read_text())
        except (OSError, ValueError):
            return {"reports": {}, "generation": {}}
        return {"reports": dict(loads.get("reports") or {}),
                "generation": dict(loads.get("generation") or {})}

    def append_part(self, cell_id: str, rows: pd.DataFrame, batch: pd.DataFrame | None = None) -> Path:
        """One batch: its batch row first, then its caption rows (a part is done once visible, and its
        batch is there by then)."""
        name = f"{uuid.uuid4().hex}.parquet"
        if batch is not None:
            atomic_write_parquet(self.batch_parts_dir(cell_id) / name, batch)
        path = self.parts_dir(cell_id) / name
        atomic_write_parquet(path, rows)
        return path

    def part_paths(self, cell_id: str, folder: str = "parts") -> list[Path]:
        """The cell's parts: visible `*.parquet` only, never a hidden temp file of a write (`.<name>.*`)."""
        found = (self.cell_dir(cell_id) / folder).glob("*.parquet")
        return sorted(p for p in found if not p.name.startswith("."))

    def upgrade(self, cell_id: str) -> None:
        """A cell (or parts) stored before the batch table, converted in place (`split_legacy`): each
        batch table written before the caption table it belongs to, both atomically."""
        captions = self.captions_path(cell_id)
        if captions.is_file() and _legacy_file(captions):
            table, batches = split_legacy(pd.read_parquet(captions))
            atomic_write_parquet(self.batches_path(cell_id), batches)
            atomic_write_parquet(captions, table)
        for part in self.part_paths(cell_id):
            if _legacy_file(part):
                table, batches = split_legacy(pd.read_parquet(part))
                atomic_write_parquet(self.batch_parts_dir(cell_id) / part.name, batches)
                atomic_write_parquet(part, table)

    def _read_part(self, path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
        """One part, or None when it cannot be read: then it is renamed `<name>.unreadable` (kept for a
        look, out of the way of every later read) and its samples count as not done."""
        try:
            return pd.read_parquet(path, columns=columns)
        except FileNotFoundError:
            return None  # consolidated or set aside meanwhile
        except Exception as err:
            aside = path.with_name(path.name + ".unreadable")
            try:
                os.replace(path, aside)
            except OSError:
                pass
            note = (f"unreadable part {path} ({type(err).__name__}: {err}) set aside as {aside.name}; "
                    "its samples are recomputed")
            log.warning(note)
            self.notes.append(note)
            return None

    def read_parts(self, cell_id: str, folder: str = "parts") -> pd.DataFrame:
        tables = [t for t in (self._read_part(p) for p in self.part_paths(cell_id, folder)) if t is not None]
        if not tables:
            return pd.DataFrame()
        table = pd.concat(tables, ignore_index=True)
        # an actor restarted mid-batch may have written a batch twice: keep the first copy
        key = "sample_id" if folder == "parts" else "batch_id"
        return table.drop_duplicates(key, keep="first").reset_index(drop=True)

    def consolidated_ids(self, cell_id: str) -> set[str]:
        if not self.captions_path(cell_id).is_file():
            return set()
        return set(pd.read_parquet(self.captions_path(cell_id), columns=["sample_id"])["sample_id"])

    def done_sample_ids(self, cell_id: str) -> set[str]:
        """The consolidated table's samples and the parts' (a cell continued past a rung of successive
        halving has both: its earlier rungs consolidated, the new images in parts)."""
        parts = [self._read_part(p, ["sample_id"]) for p in self.part_paths(cell_id)]
        in_parts = {sid for t in parts if t is not None for sid in t["sample_id"]}
        return self.consolidated_ids(cell_id) | in_parts

    def read_rows(self, cell_id: str) -> pd.DataFrame:
        """Every stored caption row of the cell: its consolidated table, then its parts (first copy kept)."""
        self.upgrade(cell_id)
        tables = [self.read_caption_table(cell_id)] if self.captions_path(cell_id).is_file() else []
        parts = self.read_parts(cell_id)
        if not parts.empty:
            tables.append(parts)
        if not tables:
            return pd.DataFrame()
        table = pd.concat(tables, ignore_index=True)
        return table.drop_duplicates("sample_id", keep="first").reset_index(drop=True)

    def covering_costs(self, cell_id: str, sample_ids: set[str]) -> dict | None:
        """Costs of a consolidated cell holding at least these samples, else None: a rung of successive
        halving the cell already passed (parts of a later rung it was interrupted in stay as they are)."""
        try:
            costs = json.loads(self.costs_path(cell_id).read_text())
        except (OSError, ValueError):
            return None
        if not sample_ids <= self.consolidated_ids(cell_id):
            return None
        return costs

    def read_batches(self, cell_id: str) -> pd.DataFrame:
        """Every stored batch row of the cell: its consolidated batch table, then its batch parts."""
        self.upgrade(cell_id)
        path = self.batches_path(cell_id)
        tables = [pd.read_parquet(path)] if path.is_file() else []
        parts = self.read_parts(cell_id, "batch_parts")
        tables += [parts] if not parts.empty else []
        if not tables:
            return pd.DataFrame()
        return pd.concat(tables, ignore_index=True).drop_duplicates("batch_id").reset_index(drop=True)

    def finish_cell(self, cell_id: str, table: pd.DataFrame, costs: dict,
                    batches: pd.DataFrame | None = None) -> None:
        """The batch table, the consolidated caption table, then its costs, then the parts go: a reader
        never sees a gap. (`batches` None: a caption table of the older layout, converted when read.)"""
        if batches is not None:
            atomic_write_parquet(self.batches_path(cell_id), batches)
        atomic_write_parquet(self.captions_path(cell_id), table)
        atomic_write_bytes(self.costs_path(cell_id), json.dumps(costs, indent=2).encode())
        for part in self.part_paths(cell_id):  # not a temp file: it may be another writer's, in progress
            part.unlink(missing_ok=True)
            (self.batch_parts_dir(cell_id) / part.name).unlink(missing_ok=True)

    def finished_costs(self, cell_id: str, sample_ids: set[str]) -> dict | None:
        """Costs of a finished cell whose table covers exactly these samples, else None."""
        try:
            costs = json.loads(self.costs_path(cell_id).read_text())
        except (OSError, ValueError):
            return None
        if self.done_sample_ids(cell_id) != sample_ids:
            return None
        return costs

    def scores_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "scores.json"

    def write_scores(self, cell_id: str, scores: dict) -> None:
        atomic_write_bytes(self.scores_path(cell_id), json.dumps(scores, indent=2).encode())

    def read_scores(self, cell_id: str) -> dict | None:
        """Scores of the consolidated table, if computed since it was written."""
        try:
            if self.scores_path(cell_id).stat().st_mtime < self.captions_path(cell_id).stat().st_mtime:
                return None
            return json.loads(self.scores_path(cell_id).read_text())
        except (OSError, ValueError):
            return None

    def write_failure(self, cell_id: str, reason: str, detail: str) -> None:
        payload = json.dumps({"reason": reason, "detail": detail}, indent=2).encode()
        atomic_write_bytes(self.failure_path(cell_id), payload)

    def read_failure(self, cell_id: str) -> str | None:
        try:
            return json.loads(self.failure_path(cell_id).read_text())["reason"]
        except (OSError, ValueError, KeyError):
            return None

    def read_caption_table(self, cell_id: str) -> pd.DataFrame:
        """captions.parquet as stored: per-image facts and each image's `batch_id`."""
        self.upgrade(cell_id)
        return pd.read_parquet(self.captions_path(cell_id))

    def read_captions(self, cell_id: str) -> pd.DataFrame:
        """The finished cell's images with their batches' facts (`sweep.results.batches.per_image`): the
        per-image samples the statistics, the rungs and the report take."""
        table = self.read_caption_table(cell_id)
        path = self.batches_path(cell_id)
        return per_image(table, pd.read_parquet(path) if path.is_file() else pd.DataFrame())


def _legacy_file(path: Path) -> bool:
    """A caption table (or part) written before the batch table: no `batch_id` column."""
    import pyarrow.parquet as pq

    try:
        return is_legacy(pq.read_schema(path).names)
    except (OSError, ValueError):
        return False  # gone meanwhile, or unreadable: the readers set it aside
