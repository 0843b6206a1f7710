"""Ray Tune's side of Pareto-aware successive halving: a `TrialScheduler` deciding on the rung reports
of the trials (`sweep.execute.trials.cell_trainable` reports `{"rung": i, ...}` once a cell's first n_i images
are stored).

Asynchronous, as ASHA and MO-ASHA: a trial that reports rung i is compared at once with every cell that
has reached rung i (trials that reported it or finished, and cells finished before this sweep); dominated,
its trial is stopped (Tune's STOP: the result is Tune's), else it goes on without waiting. No trial
pauses, so none is restarted and no model is loaded twice: the trials run in the sweep's order, as many
at once as the GPUs allow, exactly as without halving. What asynchrony costs: a trial is only compared
with the cells that reached its rung before it, so the first generations of a sweep run further than a
synchronous rung would let them (the order of the trials matters: `sweep.execute.trials.order_for_reuse`).

`hold_first_rung` (the grid's `search.synchronous_first_rung`) removes that cost where it is largest: a
trial that reaches the first rung before every generation has is paused there (Tune's PAUSE; its images
stay in the store). Once every generation has its first rung, the paused trials resume best first (the
highest CIDEr at the first rung first, `best_first`), so the likely dominators run on while the others
wait; a resumed trial answers its first rung from the store at once and is decided against every
generation's first rung. The price: each held trial starts once more (its model is loaded again only
where the GPUs could not keep it), and Tune's grid generator must not count the paused trials against
`max_concurrent_trials` (`HeldAwareGenerator`). With memory among the objectives only a generation of at
most a trial's memory can stop it, and the trials run in ascending estimated weights: a trial is held
only while a generation still to come may have that little memory (`may_be_dominated_later`), so in
that order most trials go straight on, decided at the first rung against every cell that could stop
them there, and are never loaded twice."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from sweep.search.halving import (
    Domination,
    MemoryEstimate,
    RungCell,
    decide_rung,
    may_be_dominated_later,
    trials_to_stop,
)

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
        self.held: set[str] = set()  # Tune trial ids paused at the first rung now
        self.resumed: list[str] = []  # trial cell ids in the order they resumed after the first rung

    def lines(self, rungs: Sequence[int]) -> list[str]:
        """One line per decided rung, e.g. `rung 1 (10 images): 3 of 12 generations stopped`."""
        return [f"rung {i + 1} ({rungs[i]} images): {self.stops.get(i, 0)} of {self.reached[i]} "
                f"generations stopped" for i in sorted(self.reached)]


_STATES: dict[int, HalvingState] = {}


class ParetoHalvingScheduler(FIFOScheduler):
    """`rungs`: image counts (the last one the whole dataset). `groups`: trial cell id -> the cells its
    generation serves (itself first). `evaluate(rung_index, cell_ids)`: the RungCells of those cells over
    the rung's images. `comparators`: cells finished before (read back from the store, not trials) that
    the trials are compared with at every rung, on the same first images. `estimates`: trial cell id ->
    its MemoryEstimate; with them (and memory an objective) a trial is held at the first rung only while
    a generation still to come may dominate it (`may_be_dominated_later`), not until every one came."""

    def __init__(self, rungs: Sequence[int], groups: dict[str, Sequence[str]],
                 evaluate: Callable[[int, Sequence[str]], list[RungCell]], objectives: Sequence[str],
                 confidence: float, state: HalvingState | None = None, comparators: Sequence[str] = (),
                 hold_first_rung: bool = False, estimates: dict[str, MemoryEstimate] | None = None):
        super().__init__()
        self.estimates = dict(estimates or {})
        self.hold_first_rung = hold_first_rung
        self.slots = 1  # trials at once (trial_generator sets the sweep's)
        self.rungs = list(rungs)
        self.groups = {k: tuple(v) for k, v in groups.items()}
        self.objectives = tuple(objectives)
        self.confidence = confidence
        self.comparators = tuple(comparators)
        self._key = id(self)
        _EVALUATORS[self._key] = evaluate
        _STATES[self._key] = state or HalvingState()
        self.reached: dict[str, int] = {}  # trial cell id -> the highest rung its stored images cover
        self.failed: set[str] = set()
        self.paused: dict[str, float] = {}  # trial cell id -> its best CIDEr at the first rung (held)
        self._counted: set[tuple[str, int]] = set()
        self._memory: dict[str, float] = {}  # trial cell id -> its memory measured at the first rung

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
        resumed = self.paused.pop(cell_id, None) is not None  # held, restarted: its rung from the store
        self.state.held.discard(trial.trial_id)
        stop = self.decide(rung, cell_id)
        if stop is not None:
            return TrialScheduler.STOP
        if (self.hold_first_rung and rung == 0 and not resumed and not self.first_rung_complete()
                and self.may_be_dominated_later(cell_id)):
            self.paused[cell_id] = self._best_cider(cell_id)
            self.state.held.add(trial.trial_id)
            return TrialScheduler.PAUSE  # until every generation has its first rung
        return TrialScheduler.CONTINUE

    def first_rung_complete(self) -> bool:
        """Every generation reached the first rung (or failed): the held trials may go on."""
        return all(cid in self.reached or cid in self.failed for cid in self.groups)

    def may_be_dominated_later(self, cell_id: str) -> bool:
        """Could a generation that has not reached the first rung yet dominate the trial's cells there?
        Without estimates, or without memory among the objectives, any may."""
        if "memory" not in self.objectives or not self.estimates:
            return True
        waiting = [c for c in self.groups if c not in self.reached and c not in self.failed]
        if any(c not in self.estimates for c in waiting):
            return True
        measured = [(self.estimates[c], self.first_rung_memory(c)) for c in self.reached
                    if c in self.estimates]
        return may_be_dominated_later(self.first_rung_memory(cell_id), [self.estimates[c] for c in waiting],
                                      measured)

    def first_rung_memory(self, cell_id: str) -> float:
        """The memory of the trial's generation (its cells share one load), as the decisions compare it."""
        if cell_id not in self._memory:
            cells = _EVALUATORS[self._key](0, self._members(cell_id))
            values = [float(c.costs.get("memory", math.nan)) for c in cells]
            self._memory[cell_id] = min(values) if values and not any(map(math.isnan, values)) else math.nan
        return self._memory[cell_id]

    def _best_cider(self, cell_id: str) -> float:
        """The best mean CIDEr at the first rung among the cells the trial's generation serves."""
        cells = _EVALUATORS[self._key](0, self._members(cell_id))
        means = [float(c.cider_by_image.mean()) for c in cells if len(c.cider_by_image)]
        return max(means, default=float("-inf"))

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        pending = next((t for t in trials if t.status == Trial.PENDING), None)
        if pending is not None or not self.hold_first_rung:
            return pending or super().choose_trial_to_run(tune_controller)
        if not self.first_rung_complete():
            return None  # the held trials wait for the last first rung
        paused = [t for t in trials if t.status == Trial.PAUSED]
        running = sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials)
        if not paused or running >= self.slots:
            return None  # as many at once as the GPUs allow: Tune's own limit counts new trials only
        chosen = best_first([t.config["cell_id"] for t in paused], self.paused)[0]
        trial = next(t for t in paused if t.config["cell_id"] == chosen)
        if chosen not in self.state.resumed:
            self.state.resumed.append(chosen)
        return trial

    def trial_generator(self, max_concurrent: int) -> BasicVariantGenerator:
        """Tune's grid generator for these trials, its concurrency limit not counting the held ones."""
        self.slots = max_concurrent  # resumed held trials count against it too (choose_trial_to_run)
        return HeldAwareGenerator(self._key, max_concurrent)

    def decide(self, rung: int, cell_id: str) -> Domination | None:
        """Compare the trial's cells at the rung with every cell that reached it; record a stop."""
        members = self._members(cell_id)
        others = [m for other, reached in self.reached.items() if other != cell_id and reached >= rung
                  for m in self._members(other)]
        state = self.state
        if (cell_id, rung) not in self._counted:  # a held trial reports its first rung twice
            self._counted.add((cell_id, rung))
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
        self.failed.add(trial.config["cell_id"])
        self.paused.pop(trial.config["cell_id"], None)
        self.state.held.discard(trial.trial_id)

    def debug_string(self) -> str:
        how = "a synchronous first rung, then asynchronous" if self.hold_first_rung else "asynchronous"
        return f"Pareto-aware successive halving ({how}) over rungs {self.rungs}"


def best_first(cell_ids: Sequence[str], cider: dict[str, float]) -> list[str]:
    """The held trials in the order they resume: the highest CIDEr at the first rung first (the likely
    dominators, so the rest are compared with them at the later rungs); ties keep the given order."""
    return sorted(cell_ids, key=lambda c: -cider.get(c, float("-inf")))


class HeldAwareGenerator(BasicVariantGenerator):
    """Tune's grid generator whose `max_concurrent` counts the running trials only: a trial paused at the
    first rung stays "live" to Tune until it completes, and would otherwise keep the next generation
    from ever starting (with one slot, the sweep would wait forever)."""

    def __init__(self, key: int, max_concurrent: int):
        super().__init__(max_concurrent=max_concurrent)
        self._key = key

    def next_trial(self) -> Trial | None:
        live = self._live_trials
        self._live_trials = live - _STATES[self._key].held
        try:
            return super().next_trial()
        finally:
            self._live_trials = live | self._live_trials
