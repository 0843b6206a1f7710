"""Ray Tune's side of Pareto-aware successive halving: a `TrialScheduler` deciding on the rung reports
of the trials (`sweep.execute.trials.cell_trainable` reports `{"rung": i, ...}` once a cell's first n_i images
are stored).

Asynchronous, as ASHA and MO-ASHA: a trial that reports rung i is compared at once with every cell that
has reached rung i (trials that reported it or finished, and cells finished before this sweep); dominated,
its trial is stopped (Tune's STOP: the result is Tune's), else it goes on without waiting. No trial
pauses, so none is restarted and no model is loaded twice: the trials run in the sweep's order, as many
at once as the GPUs allow, exactly as without halving. What asynchrony costs: a trial is only compared
with the cells that reached its rung before it, so the first generations of a sweep run further than a
synchronous rung would let them (the order of the trials matters: `sweep.execute.trials.order_for_reuse`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.search.halving import Domination, RungCell, decide_rung, trials_to_stop

log = logging.getLogger(__name__)

# Tune keeps its scheduler in the experiment state; what reads the store and scores lives here, in the
# driver, by key (as sweep.execute.callbacks does with its recorder).
_EVALUATORS: dict[int, Callable[[int, Sequence[str]], list[RungCell]]] = {}


class HalvingState:
    """What the scheduler decided, read by the recorder: trial cell id -> its Domination (and each
    dominated cell a stopped trial served), and per rung how many generations reached it and stopped."""

    def __init__(self) -> None:
        self.stopped: dict[str, Domination] = {}
        self.reached: dict[int, int] = {}  # rung index -> generations that reported it
        self.stops: dict[int, int] = {}  # rung index -> generations stopped there

    def lines(self, rungs: Sequence[int]) -> list[str]:
        """One line per decided rung, e.g. `rung 1 (10 images): 3 of 12 generations stopped`."""
        return [f"rung {i + 1} ({rungs[i]} images): {self.stops.get(i, 0)} of {self.reached[i]} "
                f"generations stopped" for i in sorted(self.reached)]


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
        self.reached: dict[str, int] = {}  # trial cell id -> the highest rung its stored images cover

    @property
    def state(self) -> HalvingState:
        return _STATES[self._key]

    def _members(self, cell_id: str) -> tuple[str, ...]:
        return self.groups.get(cell_id, (cell_id,))

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if "rung" not in result:
            return TrialScheduler.CONTINUE
        rung, cell_id = int(result["rung"]), trial.config["cell_id"]
        self.reached[cell_id] = max(rung, self.reached.get(cell_id, -1))
        if rung >= len(self.rungs) - 1:
            return TrialScheduler.CONTINUE  # the whole dataset: nothing left to decide
        stop = self.decide(rung, cell_id)
        return TrialScheduler.STOP if stop is not None else TrialScheduler.CONTINUE

    def decide(self, rung: int, cell_id: str) -> Domination | None:
        """Compare the trial's cells at the rung with every cell that reached it; record a stop."""
        members = self._members(cell_id)
        others = [m for other, reached in self.reached.items() if other != cell_id and reached >= rung
                  for m in self._members(other)]
        state = self.state
        state.reached[rung] = state.reached.get(rung, 0) + 1
        if not others and not self.comparators:
            return None  # nothing reached this rung before it: it goes on
        cells = _EVALUATORS[self._key](rung, [*members, *others, *self.comparators])
        decisions = decide_rung(cells, self.objectives, self.confidence, rung, targets=members)
        stop = trials_to_stop({cell_id: members}, decisions).get(cell_id)
        if stop is None:
            return None
        state.stops[rung] = state.stops.get(rung, 0) + 1
        state.stopped[cell_id] = stop
        for member in members:
            if decisions.get(member) is not None:
                state.stopped[member] = decisions[member]
        log.info("successive halving: %s stopped at rung %d: %s", cell_id, rung + 1, stop.describe())
        return stop

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        cell_id = trial.config["cell_id"]
        if cell_id not in self.state.stopped and (result or {}).get("rung") == len(self.rungs) - 1:
            self.reached[cell_id] = len(self.rungs) - 1  # finished: its images cover every rung

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        # a failed cell is on no front: it must not stop another one
        self.reached.pop(trial.config["cell_id"], None)

    def debug_string(self) -> str:
        return f"Pareto-aware successive halving (asynchronous) over rungs {self.rungs}"
