"""Logging a cell's outcome to MLflow as its child run: a new run, or new scores onto the run a stored
cell already has. A failure is a note, never a lost cell (the store keeps everything; a re-run logs it)."""

from __future__ import annotations

import logging

from sweep.execute.phases import PhaseTimer
from sweep.logs import brief
from sweep.publish.tracking import SweepTracker
from sweep.results.outcome import CellOutcome

log = logging.getLogger(__name__)


class CellLogger:
    """Child runs on `tracker` (None: nothing logged), timed under `timer`'s mlflow phase; what failed goes
    to `notes`, the recorder's."""

    def __init__(self, tracker: SweepTracker | None, timer: PhaseTimer, notes: list[str]):
        self.tracker = tracker
        self.timer = timer
        self.notes = notes

    def existing_run(self, cell_id: str) -> str | None:
        try:
            with self.timer.phase("mlflow"):
                return self.tracker.find_cell_run(cell_id)
        except Exception as err:
            log.info("MLflow lookup of cell %s failed", cell_id, exc_info=True)  # the whole error: sweep.log
            self.notes.append(f"MLflow lookup of cell {cell_id} failed: {brief(err)}")
            return None

    def relog(self, outcome: CellOutcome, artifacts: list, stamp: dict[str, str]) -> None:
        """A stored cell scored again (its references or the scoring changed, the captions did not): the new
        scores go onto its existing child run, as the metric's latest value (MLflow shows the latest), with
        its re-scored captions table; the run keeps its id, params and FINISHED status. A score that is now
        NaN is not logged (MLflow takes no NaN) and keeps its old value there; results.csv has the NaN."""
        try:
            with self.timer.phase("mlflow"):
                tags = {"rescored": "references or scoring changed; scores recomputed from stored captions",
                        **{f"scoring_{k}": v for k, v in stamp.items()}}
                self.tracker.log_cell_extra(outcome.run_id, outcome.metrics, tags)
                for path in artifacts:
                    self.tracker.client.log_artifact(outcome.run_id, str(path))
        except Exception as err:
            log.info("MLflow re-logging of cell %s failed", outcome.cell.cell_id, exc_info=True)
            self.notes.append(f"MLflow re-logging of the new scores of cell {outcome.cell.cell_id} failed: "
                              f"{brief(err)}")

    def log(self, outcome: CellOutcome, artifacts: list) -> None:
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
            log.info("MLflow logging of cell %s failed", outcome.cell.cell_id, exc_info=True)
            self.notes.append(f"MLflow logging of cell {outcome.cell.cell_id} failed: {brief(err)}")

