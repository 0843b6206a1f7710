"""Ray Tune's side of Pareto-aware successive halving: a `TrialScheduler` deciding on the rung reports
of the trials (`sweep.trials.cell_trainable` reports `{"rung": i, ...}` when a cell's first n_i images
are stored). Synchronous, as Tune's HyperBandScheduler: a trial that reaches a rung PAUSEs (its slot,
and its model host, go to the next trial) until every live trial reached that rung; then the cells are
compared (`sweep.halving.decide_rung`), the dominated trials are stopped and the others resume. A
function trainable resumed after a PAUSE starts again from its first rung: the result store holds its
images, so the earlier rungs cost a read and are answered CONTINUE at once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.halving import Domination, RungCell, decide_rung, trials_to_stop

log = logging.getLogger(__name__)

# Tune keeps its scheduler in the experiment state; what reads the store and scores lives here, in the
# driver, by key (as sweep.recorder's callback does with its recorder).
_EVALUATORS: dict[int, Callable[[int, Sequence[str]], list[RungCell]]] = {}


class HalvingState:
    """What the scheduler decided, read by the recorder: trial cell id -> its Domination, and the
    decisions log (one line per rung)."""

    def __init__(self) -> None:
        self.stopped: dict[str, Domination] = {}
        self.log: list[str] = []


_STATES: dict[int, HalvingState] = {}


class ParetoHalvingScheduler(FIFOScheduler):
    """`rungs`: image counts (the last one the whole dataset). `groups`: trial cell id -> the cells its
    generation serves (itself first). `evaluate(rung_index, cell_ids)`: the RungCells of those cells over
    the rung's images. `comparators`: cells finished before (read back from the store, not trials) that
    the trials are compared with at every rung, on the same first images."""

    def __init__(self, rungs: Sequence[int], groups: dict[str, Sequence[str]],
                 evaluate: Callable[[int, Sequence[str]], list[RungCell]], objectives: Sequence[str],
                 confidence: float, state: HalvingState | None = None, comparators: Sequence[str] = ()):
        super().__init__()
        self.rungs = list(rungs)
        self.groups = {k: tuple(v) for k, v in groups.items()}
        self.objectives = tuple(objectives)
        self.confidence = confidence
        self.comparators = tuple(comparators)
        self._key = id(self)
        _EVALUATORS[self._key] = evaluate
        _STATES[self._key] = state or HalvingState()
        self.reached: dict[str, int] = {}  # trial id -> highest rung reported in this attempt
        self.decided = -1  # every rung up to this one is decided
        self.released: set[str] = set()  # paused trial ids allowed to resume
        self.live: dict[str, Trial] = {}

    @property
    def state(self) -> HalvingState:
        return _STATES[self._key]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.live[trial.trial_id] = trial

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if "rung" not in result:
            return TrialScheduler.CONTINUE
        rung = int(result["rung"])
        self.released.discard(trial.trial_id)
        if rung <= self.decided or rung >= len(self.rungs) - 1:
            return TrialScheduler.CONTINUE  # decided before a PAUSE (replayed from the store), or the end
        self.reached[trial.trial_id] = rung
        return self._process(tune_controller, current=trial)

    def _process(self, tune_controller: Any, current: Trial | None = None) -> str:
        """Decide the next rung once every live trial reached it; the action for `current`."""
        rung = self.decided + 1
        if rung >= len(self.rungs) - 1 or not self.live:
            return TrialScheduler.CONTINUE
        if any(self.reached.get(t, -1) < rung for t in self.live):
            return TrialScheduler.PAUSE  # wait (paused, its slot free) until the others reach the rung
        trials = list(self.live.values())
        cell_ids = [t.config["cell_id"] for t in trials]
        members = [m for cid in cell_ids for m in self.groups.get(cid, (cid,))] + list(self.comparators)
        cells = _EVALUATORS[self._key](rung, members)
        decisions = decide_rung(cells, self.objectives, self.confidence, rung)
        stop = trials_to_stop({cid: self.groups.get(cid, (cid,)) for cid in cell_ids}, decisions)
        self.decided = rung
        state = self.state
        state.log.append(f"rung {rung + 1} ({self.rungs[rung]} images): {len(stop)} of {len(trials)} "
                         f"generations stopped")
        action = TrialScheduler.CONTINUE
        for trial in trials:
            cid = trial.config["cell_id"]
            if cid in stop:
                state.stopped[cid] = stop[cid]
                for member in self.groups.get(cid, (cid,)):
                    if decisions.get(member) is not None:
                        state.stopped[member] = decisions[member]
                if trial is current:
                    action = TrialScheduler.STOP
                elif trial.status == Trial.PAUSED:
                    tune_controller.stop_trial(trial)
            elif trial is not current:
                self.released.add(trial.trial_id)
        return action

    def _forget(self, tune_controller: Any, trial: Trial) -> None:
        self.live.pop(trial.trial_id, None)
        self.reached.pop(trial.trial_id, None)
        self.released.discard(trial.trial_id)
        # the trial that ended may have been the last one the others waited for
        if self.live and all(t.status == Trial.PAUSED for t in self.live.values()):
            self._process(tune_controller)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._forget(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._forget(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                return trial
        # every other rung in reverse order: the trials that captioned last still have their models
        # loaded (the host pool stops the least recently used first), so they go first
        trials = tune_controller.get_trials()
        for trial in (reversed(trials) if self.decided % 2 == 0 else trials):
            if trial.status == Trial.PAUSED and trial.trial_id in self.released:
                return trial
        return None

    def debug_string(self) -> str:
        return f"Pareto-aware successive halving over rungs {self.rungs} (decided up to {self.decided + 1})"
