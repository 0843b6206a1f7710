"""The sweep's Ray Tune callbacks, apart from the modules they serve so that those import without Ray
Tune (a re-run whose every cell is stored never starts Tune): `CellCallback` hands finished trials to
the recorder (`sweep.results.recorder`), `StopCallback` ends `fit` after a signal
(`sweep.execute.stopping`)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from sweep.execute.stopping import _STOPS, StopSignals, SweepHalted, SweepInterrupted
from sweep.logs import brief
from sweep.results.recorder import _RECORDERS, CellOutcome, SweepRecorder, log, trial_error_text


class CellCallback(Callback):
    """Hands each finished or failed trial to its recorder, in the driver process."""

    def __init__(self, recorder: SweepRecorder):
        _RECORDERS[id(recorder)] = recorder
        self.key = id(recorder)

    @staticmethod
    def _group(recorder: SweepRecorder, cell_id: str) -> tuple[str, ...]:
        """The trial's cell and the cells its generation serves."""
        return (cell_id, *recorder.derived.get(cell_id, ()))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        recorder = _RECORDERS[self.key]
        if recorder.progress:
            for cell_id in self._group(recorder, trial.config["cell_id"]):
                recorder.progress.cell_started(cell_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        recorder = _RECORDERS[self.key]
        if "failure" in result:  # the trial's last word before it raises (see trials.cell_trainable)
            recorder.trial_failures[trial.config["cell_id"]] = str(result["failure"])
            recorder.storage_failed(str(result["failure"]))
        if recorder.progress and "samples_done" in result:
            for cell_id in self._group(recorder, trial.config["cell_id"]):
                recorder.progress.cell_samples(cell_id, int(result["samples_done"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        recorder = _RECORDERS[self.key]
        lead, last = trial.config["cell_id"], dict(trial.last_result or {})
        for cell_id in self._group(recorder, lead):  # the lead first, then each cell it served
            recorder.submit(self._complete, recorder, cell_id, last if cell_id == lead else {})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        recorder = _RECORDERS[self.key]
        lead = trial.config["cell_id"]
        reason = (recorder.store.read_failure(lead) or recorder.trial_failures.get(lead)
                  or trial_error_text(trial))
        recorder.storage_failed(reason)
        for cell_id in self._group(recorder, lead):  # a failed shared generation fails what it served
            recorder.submit(self._fail, recorder, cell_id, reason)

    @staticmethod
    def _complete(recorder: SweepRecorder, cell_id: str, last_result: dict) -> None:
        domination = recorder.pruned.get(cell_id)
        try:
            if domination is not None:  # stopped at a rung by successive halving
                outcome = recorder.record_pruned(cell_id, domination)
            else:
                outcome = CellCallback._record_finished(recorder, cell_id, last_result)
        except Exception as err:
            if not recorder.storage_failed(err):  # the traceback to sweep.log; the terminal: the cell's line
                log.info("recording cell %s failed", cell_id, exc_info=True)
            outcome = recorder.record_failure(cell_id, f"recording failed: {brief(err, 300)}")
        if recorder.progress and outcome.status == "pruned":  # its images, not the whole dataset's
            recorder.progress.cell_pruned(cell_id, int(outcome.metrics.get("images_seen", 0)))
        elif recorder.progress:
            recorder.progress.cell_finished(cell_id, outcome.status != "failed",
                                            outcome.metrics.get("n_errors", 0.0))

    @staticmethod
    def _record_finished(recorder: SweepRecorder, cell_id: str, last_result: dict) -> CellOutcome:
        # the store's costs, not Tune's result: that one adds Tune's own keys (pid, timestamp, ...)
        costs = recorder.store.finished_costs(cell_id, set(recorder.references))
        if costs is None and not last_result:
            raise RuntimeError(f"the generation of cell {recorder.lead_of.get(cell_id, '?')} finished "
                               "without finishing this cell in the store")
        return recorder.record(cell_id, costs if costs is not None else last_result)

    @staticmethod
    def _fail(recorder: SweepRecorder, cell_id: str, reason: str) -> None:
        recorder.record_failure(cell_id, reason)
        if recorder.progress:
            recorder.progress.cell_finished(cell_id, False)


class StopCallback(Callback):
    def __init__(self, stop: StopSignals):
        _STOPS[id(stop)] = stop
        self.key = id(stop)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        stop = _STOPS.get(self.key)
        if stop is not None and stop.signum:
            raise SweepInterrupted(stop.signum)
        if stop is not None and stop.halted:
            raise SweepHalted(stop.halted)
