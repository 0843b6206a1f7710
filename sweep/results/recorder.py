"""Turns a finished trial into a scored, logged cell outcome, as soon as it finishes: `SweepRecorder`
puts together the scoring of a cell (`sweep.results.cell_scoring`), its MLflow child run
(`sweep.results.cell_logging`) and its outcome (`sweep.results.outcome`)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from sweep.data.sources import Sample
from sweep.execute.measure import cost_kinds
from sweep.execute.phases import PhaseTimer
from sweep.execute.progress import SweepProgress
from sweep.grid.cells import Cell
from sweep.publish.tracking import SweepTracker, cell_params
from sweep.quality.scoring import DF_REFERENCE_SET, CaptionScorer, DocumentFrequencies
from sweep.results.cell_logging import CellLogger
from sweep.results.cell_scoring import SCORING_STAMP, CellScoring, references_fingerprint
from sweep.results.disk import storage_failure
from sweep.results.outcome import CellOutcome, cell_span, cells_beside
from sweep.results.pruned import write_pruned
from sweep.results.store import ResultStore, atomic_write_parquet
from sweep.results.tables import RESULT_METRICS

# the outcome's names, importable from here too (their homes: outcome, cell_scoring)
__all__ = ["RESULT_METRICS", "SCORING_STAMP", "CellOutcome", "SweepRecorder", "cell_span",
           "cells_beside", "references_fingerprint", "trial_error_text"]

log = logging.getLogger(__name__)


class SweepRecorder:
    """Scores, stores and logs finished cells.

    `document_frequencies`, `reference_captions`: how CIDEr's document frequencies are taken
    (`sweep.results.cell_scoring.CellScoring`); which one was used is each cell's
    `cider_document_frequencies` param.

    `derived`: lead cell id -> the cells its generation also serves (token-budget sharing); they are
    recorded when the lead's trial completes and fail with its reason when it fails.
    """

    def __init__(self, cells: list[Cell], samples: list[Sample], store: ResultStore,
                 scorer: CaptionScorer, tracker: SweepTracker | None, progress: SweepProgress | None = None,
                 timer: PhaseTimer | None = None, *, document_frequencies: str = DF_REFERENCE_SET,
                 reference_captions: Path | None = None, derived: dict[str, tuple[str, ...]] | None = None):
        self.cells = {c.cell_id: c for c in cells}
        self.derived = {lead: tuple(ids) for lead, ids in (derived or {}).items()}
        self.lead_of = {cell_id: lead for lead, ids in self.derived.items() for cell_id in ids}
        self.references = {s.sample_id: list(s.references) for s in samples}
        self.store = store
        self.tracker = tracker
        self.progress = progress
        self.timer = timer or PhaseTimer()
        self.outcomes: dict[str, CellOutcome] = {}
        self.notes: list[str] = []  # one list: the scoring's and the logging's notes land here too
        self.scorer = scorer
        self.scoring = CellScoring(self.references, store, scorer, self.timer, self.notes,
                                   document_frequencies, reference_captions)
        self.logger = CellLogger(tracker, self.timer, self.notes)
        # Scoring and MLflow logging of a finished cell run on one thread beside Tune's loop, so the
        # next trial starts while this one is scored. One thread: the scorer's JVM and the MLflow client
        # are used by one caller at a time, in the order cells finished.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-recorder")
        # successive halving: cell id -> the Domination that stopped it (filled by the scheduler)
        self.pruned: dict[str, Any] = {}
        self.search_stamp = ""  # sweep.results.pruned.search_stamp of the grid's search settings
        self._pending: list[Future] = []
        # called with the reason when a cell failed on a full or read-only disk (the engine stops the sweep)
        self.on_storage_failure: Any = None
        self.trial_failures: dict[str, str] = {}  # lead cell id -> the reason its trial reported

    def storage_failed(self, error: BaseException | str) -> bool:
        """True (and the engine told) when `error` is a full / read-only disk."""
        reason = storage_failure(error)
        if reason is not None and self.on_storage_failure is not None:
            self.on_storage_failure(f"the output disk is full or read-only ({reason})")
        return reason is not None

    def submit(self, fn: Any, *args: Any) -> None:
        self._pending.append(self._worker.submit(fn, *args))

    def drain(self) -> None:
        """Wait until every submitted cell is recorded."""
        for future in self._pending:
            future.result()
        self._pending.clear()

    @property
    def df_mode(self) -> str:
        """Where CIDEr's document frequencies come from in this sweep (reference_set or scored_subset)."""
        return self.scoring.df_mode

    def document_frequencies(self) -> DocumentFrequencies | None:
        """CIDEr's document frequencies for every cell of the sweep (None: from the scored references)."""
        return self.scoring.document_frequencies()

    def score(self, table: pd.DataFrame, label: str = "") -> tuple[pd.DataFrame, dict[str, float]]:
        """A finished cell's caption table with the per-image columns, and its scores
        (`CellScoring.score`)."""
        return self.scoring.score(table, label)

    def record_pruned(self, cell_id: str, domination: Any) -> CellOutcome:
        """A cell successive halving stopped at a rung (`sweep.search.halving.Domination`): scored and logged
        over the images it captioned, status `pruned`, why in `reason` and in MLflow."""
        costs = self.store.covering_costs(cell_id, set()) or {}
        # kept in the store: a re-run reads the pruned cell back instead of running it again
        write_pruned(self.store, cell_id, domination, self.search_stamp)
        return self.record(cell_id, costs, pruned=domination)

    def record(self, cell_id: str, costs: dict[str, float], from_store: bool = False,
               pruned: Any = None) -> CellOutcome:
        """A finished cell (or one successive halving `pruned`): scored (its stored scores read back when
        they were made the way this sweep scores), its table and scores written, logged to MLflow."""
        cell = self.cells[cell_id]
        table = self.store.read_caption_table(cell_id)  # scored and written back as stored
        images = self.store.read_captions(cell_id)  # with their batches' facts: how it was measured
        params = self._params(cell, images)
        scores = self.scoring.stored_scores(cell_id, table) if from_store else None
        rescored = scores is None
        table, annotated = self.scoring.with_row_context(table, cell)
        if scores is None:
            table, scores = self.score(table, cell.label)
        if rescored or annotated:
            # the table first: read_scores trusts scores.json only when it is newer than the table
            atomic_write_parquet(self.store.captions_path(cell_id), table)
            self.store.write_scores(cell_id, {**scores, SCORING_STAMP: self.scoring.scoring_stamp()})
        metrics = {**{k: v for k, v in costs.items() if isinstance(v, int | float)}, **scores}
        outcome = CellOutcome(cell, "ok", metrics, params, reused=from_store)
        if pruned is not None:  # partial metrics over the rung's images, kept with their intervals
            outcome.status, outcome.reason = "pruned", pruned.describe()
            metrics.update(pruned_rung=float(pruned.rung + 1), images_seen=float(len(table)))
            params.update(pruned="true", pruned_by=pruned.by, pruned_reason=pruned.describe()[:500])
        outcome.span = cell_span(images, costs)
        self._log_outcome(outcome, from_store, rescored)
        self.outcomes[cell_id] = outcome
        return outcome

    def _params(self, cell: Cell, table: pd.DataFrame) -> dict[str, str]:
        """The cell's MLflow params: its settings, what its host reported, how it was measured and scored."""
        loads = self.store.read_loads(cell.cell_id)
        report = next(iter(loads["reports"].values()), {})
        extra: dict[str, Any] = cost_kinds(table)  # shared_generation, energy/latency/peak memory kinds
        extra["multi_image"] = report.get("family_info", {}).get("multi_image", "")
        if "node_id" in table:  # where the cell ran: one id per node that held one of its actors
            extra["node_ids"] = ",".join(sorted(set(table["node_id"]) - {""}))
        extra["cider_document_frequencies"] = self.df_mode
        return cell_params(cell, report, loads["generation"], extra)

    def _log_outcome(self, outcome: CellOutcome, from_store: bool, rescored: bool) -> None:
        """A stored cell keeps its child run (new scores onto it when rescored); any other gets a new one."""
        cell_id = outcome.cell.cell_id
        artifacts = [self.store.captions_path(cell_id), self.store.config_path(cell_id)]
        if self.store.batches_path(cell_id).is_file():  # the images' batches (latency, host, energy)
            artifacts.insert(1, self.store.batches_path(cell_id))
        if from_store and self.tracker is not None:
            outcome.run_id = self.logger.existing_run(cell_id)
            if outcome.run_id is not None and rescored:
                self.logger.relog(outcome, artifacts, self.scoring.scoring_stamp())
        if outcome.run_id is None:
            self.logger.log(outcome, artifacts)

    def record_failure(self, cell_id: str, reason: str) -> CellOutcome:
        cell = self.cells[cell_id]
        params = cell_params(cell, {}, {}, {"shared_generation": self.lead_of.get(cell_id, "")})
        outcome = CellOutcome(cell, "failed", {}, params, reason=reason)
        self.logger.log(outcome, [])
        self.outcomes[cell_id] = outcome
        return outcome


# Tune pickles its run config (callbacks included) into the experiment folder; the recorder holds a
# JVM, locks and an MLflow client, so the callback refers to it by key and it stays in this process.
_RECORDERS: dict[int, SweepRecorder] = {}


def trial_error_text(trial: Any) -> str:
    """The root cause of a failed trial, short enough for an MLflow tag."""
    text = ""
    try:
        err = trial.get_error()
        text = str(err) if err is not None else ""
    except Exception:
        path = getattr(trial, "error_file", None)
        if path:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                pass
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "trial failed"
    return last[:500]

