"""Turns a finished trial into a scored, logged cell outcome, as soon as it finishes."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sweep.data.sources import Sample
from sweep.execute.measure import cost_kinds
from sweep.execute.phases import PhaseTimer
from sweep.execute.progress import SweepProgress
from sweep.grid.cells import Cell
from sweep.publish.tracking import SweepTracker, cell_params
from sweep.quality.scoring import (
    DF_REFERENCE_SET,
    DF_SCORED_SUBSET,
    PER_IMAGE_COLUMNS,
    CaptionScorer,
    DocumentFrequencies,
    file_sha256,
    mean_caption_length,
    reference_set_frequencies,
)
from sweep.results.disk import storage_failure
from sweep.results.store import ResultStore, atomic_write_parquet, prompt_sha256
from sweep.results.tables import CORPUS_QUALITY, RESULT_METRICS

log = logging.getLogger(__name__)

# scores.json keeps how the cell was scored beside its scores: read back only when it still matches (the
# document frequencies, the reference set file, and the references of the scored samples)
SCORING_STAMP = "scoring"


def references_fingerprint(references: dict[str, list[str]]) -> str:
    """sha256 over the sorted (sample id, references): changes when any sample's references change."""
    h = hashlib.sha256()
    for sample_id in sorted(references):
        h.update(json.dumps([sample_id, list(references[sample_id])]).encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "ok" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    run_id: str | None = None
    reused: bool = False  # read back from the result store instead of computed in this invocation
    span: tuple[float, float] | None = None  # when the cell ran (epoch seconds)

    def row(self) -> dict[str, Any]:
        """The cell's results row (`sweep.results.tables.RESULTS_TABLE`)."""
        return {
            "cell_id": self.cell.cell_id,
            "label": self.cell.label,
            "model": self.cell.model.display_name,
            "precision": self.cell.precision,
            "max_new_tokens": self.cell.max_new_tokens,
            "num_beams": self.cell.num_beams,
            "backend": self.params.get("backend", ""),
            "weights": self.params.get("weights", ""),
            "status": self.status,
            "reused": self.reused,
            "reason": self.reason,
            "peak_memory_kind": self.params.get("peak_memory_kind", ""),
            "shared_generation": self.params.get("shared_generation", ""),
            "energy_kind": self.params.get("energy_kind", ""),
            "latency_kind": self.params.get("latency_kind", ""),
            "cache_policy": self.params.get("cache_policy", ""),
            "cider_document_frequencies": self.params.get("cider_document_frequencies", ""),
            **dict.fromkeys(RESULT_METRICS, math.nan),
            **self.metrics,
        }


class SweepRecorder:
    """Scores, stores and logs finished cells.

    `document_frequencies` (grid `scoring.document_frequencies`): "reference_set" takes CIDEr's document
    frequencies from every reference of `reference_captions` (the dataset's COCO captions file, cached
    under `<output_dir>/df-cache`); "scored_subset" from the scored samples' references (pycocoevalcap's
    classic behaviour). Without a captions file (video datasets) reference_set falls back to
    scored_subset, with a note. Which one was used is each cell's `cider_document_frequencies` param.

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
        self.scorer = scorer
        self.tracker = tracker
        self.progress = progress
        self.timer = timer or PhaseTimer()
        self.outcomes: dict[str, CellOutcome] = {}
        self.notes: list[str] = []
        if document_frequencies not in (DF_REFERENCE_SET, DF_SCORED_SUBSET):
            raise ValueError(f"document_frequencies must be {DF_REFERENCE_SET!r} or {DF_SCORED_SUBSET!r}, "
                             f"got {document_frequencies!r}")
        self.reference_captions = Path(reference_captions) if reference_captions is not None else None
        self.df_mode = document_frequencies
        if document_frequencies == DF_REFERENCE_SET and self.reference_captions is None:
            self.df_mode = DF_SCORED_SUBSET
            self.notes.append("CIDEr document frequencies come from the scored samples' references "
                              "(scored_subset): the dataset has no captions file to take the whole reference "
                              "set from, so CIDEr depends on which samples are scored")
        self._df: DocumentFrequencies | None = None
        self._stamp: dict[str, str] | None = None
        # Scoring and MLflow logging of a finished cell run on one thread beside Tune's loop, so the
        # next trial starts while this one is scored. One thread: the scorer's JVM and the MLflow client
        # are used by one caller at a time, in the order cells finished.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-recorder")
        # successive halving: cell id -> the Domination that stopped it (filled by the scheduler)
        self.pruned: dict[str, Any] = {}
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

    def document_frequencies(self) -> DocumentFrequencies | None:
        """CIDEr's document frequencies for every cell of the sweep (None: from the scored references).
        Computed (or read from df-cache) at the first cell scored, so a re-run that reads every cell's
        scores back never tokenizes."""
        if self.df_mode != DF_REFERENCE_SET or self.reference_captions is None:
            return None
        if self._df is None:
            self._df = reference_set_frequencies(self.reference_captions, self.store.root / "df-cache")
            self.notes.append("CIDEr document frequencies from the whole reference set: "
                              f"{self._df.describe()}")
        return self._df

    def scoring_stamp(self) -> dict[str, str]:
        """How this sweep scores a cell; stored scores made another way are recomputed."""
        if self._stamp is None:
            captions = self.reference_captions
            key = file_sha256(captions) if self.df_mode == DF_REFERENCE_SET and captions is not None else ""
            self._stamp = {"cider_document_frequencies": self.df_mode, "reference_set_sha256": key,
                           "references_sha256": references_fingerprint(self.references)}
        return self._stamp

    def score(self, table: pd.DataFrame, label: str = "") -> tuple[pd.DataFrame, dict[str, float]]:
        """Scores a finished cell: (its caption table with the per-image columns PER_IMAGE_COLUMNS, NaN on
        rows not scored, i.e. errors and samples without references; the cell's scores). The scorer's
        notes (e.g. predictions empty after tokenization) are kept naming the cell, `label`."""
        table = table.drop(columns=[c for c in PER_IMAGE_COLUMNS if c in table])
        ok = table[table["error"] == ""]
        # only samples with human references can be scored (video scenes often have none)
        ok = ok[ok["sample_id"].map(lambda sid: bool(self.references.get(sid)))]
        if ok.empty:
            for column in PER_IMAGE_COLUMNS:
                table[column] = math.nan
            return table, dict.fromkeys(CORPUS_QUALITY, math.nan)
        predictions = dict(zip(ok["sample_id"], ok["caption"], strict=True))
        with self.timer.phase("scoring"):
            result = self.scorer.score_images(predictions, {sid: self.references[sid] for sid in predictions},
                                              self.document_frequencies())
        about_cell = set(getattr(self.scorer, "call_notes", ()))
        for note in getattr(self.scorer, "notes", []):
            note = f"{label}: {note}" if label and note in about_cell else note
            if note not in self.notes:
                self.notes.append(note)
        for column in PER_IMAGE_COLUMNS:
            table[column] = table["sample_id"].map(result.per_image[column]).astype(float)
        scores = dict(result.corpus)
        scores["mean_caption_words"] = mean_caption_length(ok["caption"])
        scores["n_scored"] = float(len(ok))
        return table, scores

    def with_row_context(self, table: pd.DataFrame, cell: Cell) -> tuple[pd.DataFrame, bool]:
        """The caption table with what a user needs to check a row on its own: `references` (the
        captions it is scored against) and `prompt_sha256` (of the prompt as the model saw it, stored
        once in cell.json as `rendered_prompt`; of the grid's prompt when the host could not render it).
        `generated_tokens` is already there. (table, whether a column changed)."""
        record = self.store.read_cell(cell.cell_id)
        digest = record.get("prompt_sha256") or prompt_sha256(cell.prompt)
        references = [list(self.references.get(sid, ())) for sid in table["sample_id"]]
        same = ("references" in table and "prompt_sha256" in table
                and (table["prompt_sha256"] == digest).all()
                and [list(r) for r in table["references"]] == references)
        if same:
            return table, False
        table = table.copy()
        table["references"] = references
        table["prompt_sha256"] = digest
        return table, True

    def _stored_scores(self, cell_id: str, table: pd.DataFrame) -> dict[str, float] | None:
        """The stored scores of a cell, if scored since its table was written, the way this sweep scores,
        and with the per-image columns in its table."""
        stored = self.store.read_scores(cell_id)
        if stored is None or stored.pop(SCORING_STAMP, None) != self.scoring_stamp():
            return None
        if any(column not in table for column in PER_IMAGE_COLUMNS):
            return None
        return stored

    def record_pruned(self, cell_id: str, domination: Any) -> CellOutcome:
        """A cell successive halving stopped at a rung (`sweep.search.halving.Domination`): scored and logged
        over the images it captioned, status `pruned`, why in `reason` and in MLflow."""
        costs = self.store.covering_costs(cell_id, set()) or {}
        return self.record(cell_id, costs, pruned=domination)

    def record(self, cell_id: str, costs: dict[str, float], from_store: bool = False,
               pruned: Any = None) -> CellOutcome:
        cell = self.cells[cell_id]
        table = self.store.read_captions(cell_id)
        loads = self.store.read_loads(cell_id)
        report = next(iter(loads["reports"].values()), {})
        extra: dict[str, Any] = cost_kinds(table)  # shared_generation, energy/latency/peak memory kinds
        extra["multi_image"] = report.get("family_info", {}).get("multi_image", "")
        if "node_id" in table:  # where the cell ran: one id per node that held one of its actors
            extra["node_ids"] = ",".join(sorted(set(table["node_id"]) - {""}))
        extra["cider_document_frequencies"] = self.df_mode
        params = cell_params(cell, report, loads["generation"], extra)
        scores = self._stored_scores(cell_id, table) if from_store else None
        rescored = scores is None
        table, annotated = self.with_row_context(table, cell)
        if scores is None:
            table, scores = self.score(table, cell.label)
        if rescored or annotated:
            # the table first: read_scores trusts scores.json only when it is newer than the table
            atomic_write_parquet(self.store.captions_path(cell_id), table)
            self.store.write_scores(cell_id, {**scores, SCORING_STAMP: self.scoring_stamp()})
        metrics = {**{k: v for k, v in costs.items() if isinstance(v, int | float)}, **scores}
        outcome = CellOutcome(cell, "ok", metrics, params, reused=from_store)
        if pruned is not None:  # partial metrics over the rung's images, kept with their intervals
            outcome.status, outcome.reason = "pruned", pruned.describe()
            metrics.update(pruned_rung=float(pruned.rung + 1), images_seen=float(len(table)))
            params.update(pruned="true", pruned_by=pruned.by, pruned_reason=pruned.describe()[:500])
        outcome.span = cell_span(table, costs)
        artifacts = [self.store.captions_path(cell_id), self.store.config_path(cell_id)]
        if from_store and self.tracker is not None:
            outcome.run_id = self._existing_run(cell_id)
            if outcome.run_id is not None and rescored:
                self._relog(outcome, artifacts)
        if outcome.run_id is None:
            self._log(outcome, artifacts)
        self.outcomes[cell_id] = outcome
        return outcome

    def record_failure(self, cell_id: str, reason: str) -> CellOutcome:
        cell = self.cells[cell_id]
        params = cell_params(cell, {}, {}, {"shared_generation": self.lead_of.get(cell_id, "")})
        outcome = CellOutcome(cell, "failed", {}, params, reason=reason)
        self._log(outcome, [])
        self.outcomes[cell_id] = outcome
        return outcome

    def _existing_run(self, cell_id: str) -> str | None:
        try:
            with self.timer.phase("mlflow"):
                return self.tracker.find_cell_run(cell_id)
        except Exception as err:
            self.notes.append(f"MLflow lookup of cell {cell_id} failed: {err}")
            return None

    def _relog(self, outcome: CellOutcome, artifacts: list) -> None:
        """A stored cell scored again (its references or the scoring changed, the captions did not): the new
        scores go onto its existing child run, as the metric's latest value (MLflow shows the latest), with
        its re-scored captions table; the run keeps its id, params and FINISHED status. A score that is now
        NaN is not logged (MLflow takes no NaN) and keeps its old value there; results.csv has the NaN."""
        try:
            with self.timer.phase("mlflow"):
                tags = {"rescored": "references or scoring changed; scores recomputed from stored captions",
                        **{f"scoring_{k}": v for k, v in self.scoring_stamp().items()}}
                self.tracker.log_cell_extra(outcome.run_id, outcome.metrics, tags)
                for path in artifacts:
                    self.tracker.client.log_artifact(outcome.run_id, str(path))
        except Exception as err:
            log.error("MLflow re-logging of cell %s failed: %s", outcome.cell.cell_id, err)
            self.notes.append(f"MLflow re-logging of the new scores of cell {outcome.cell.cell_id} failed: "
                              f"{err}")

    def _log(self, outcome: CellOutcome, artifacts: list) -> None:
        if self.tracker is None:
            return
        try:
            with self.timer.phase("mlflow"):
                outcome.run_id = self.tracker.log_cell(
                    outcome.cell.cell_id, outcome.cell.label, outcome.params, outcome.metrics, artifacts,
                    failed_reason=outcome.reason or None if outcome.status == "failed" else None,
                    span=outcome.span,
                )
        except Exception as err:  # the store keeps the results; MLflow can be re-logged later
            log.error("MLflow logging of cell %s failed: %s", outcome.cell.cell_id, err)
            self.notes.append(f"MLflow logging of cell {outcome.cell.cell_id} failed: {err}")


def cell_span(table: Any, costs: dict) -> tuple[float, float] | None:
    """(start, end) epoch seconds of the cell: its wall time, ending with its last batch."""
    if "batch_end_ts" not in table or table.empty:
        return None
    end = float(table["batch_end_ts"].max())
    return end - float(costs.get("cell_wall_seconds", 0.0) or 0.0), end


def cells_beside(spans: dict[str, tuple[float, float] | None],
                 generation_of: dict[str, str] | None = None) -> dict[str, float]:
    """For each cell, how many other generations ran while it ran (their spans overlap its span): on
    shared cores or GPUs, what its latency and images/s were measured beside. `generation_of`: cell id ->
    the cell whose generation served it (token-budget sharing): cells of one generation are one run, not
    neighbours. NaN for a cell without a span (failed before its first batch)."""
    generation_of = generation_of or {}
    runs: dict[str, tuple[float, float]] = {}
    for cell_id, span in spans.items():
        if span is not None:
            runs.setdefault(generation_of.get(cell_id) or cell_id, span)
    out = {}
    for cell_id, span in spans.items():
        if span is None:
            out[cell_id] = math.nan
            continue
        own = generation_of.get(cell_id) or cell_id
        out[cell_id] = float(sum(1 for key, (start, end) in runs.items()
                                 if key != own and start < span[1] and span[0] < end))
    return out


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
