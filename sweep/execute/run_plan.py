"""Executing a `SweepPlan`: record the cells read back and refused, run the rest as Ray Tune trials (each
scored and logged as it finishes), and give every cell an outcome, also when the sweep is interrupted."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sweep.data.load import reference_captions_file
from sweep.data.sources import Sample
from sweep.execute.phases import PhaseTimer
from sweep.execute.ray_cluster import init_ray
from sweep.grid.cells import Cell
from sweep.logs import route_library_logs
from sweep.plan.budgets import vllm_missing_note
from sweep.plan.sweep_plan import SweepPlan, reusable
from sweep.results.disk import storage_failure
from sweep.results.store import ResultStore

log = logging.getLogger(__name__)


@dataclass
class Execution:
    """What running a plan produced: one outcome per cell (ok or failed), and notes for the user."""

    outcomes: dict[str, Any]
    notes: list[str]
    tracker: Any
    tracking_uri: str
    halted: str | None = None  # why the sweep stopped without a signal (a disk that filled mid-run)


def open_tracker(plan: SweepPlan, timer: PhaseTimer) -> tuple[Any, str, str | None]:
    """(tracker or None, tracking URI, note when MLflow is unreachable: results still go to the store)."""
    import mlflow  # noqa: F401  (its log handlers exist from here: routed before the tables are made)
    from sweep.publish.tracking import SweepTracker, default_tracking_uri

    route_library_logs()
    grid = plan.grid
    uri = grid.tracking.uri or default_tracking_uri(plan.output_dir)
    try:
        with timer.phase("mlflow"):
            tracker = SweepTracker(
                uri, grid.tracking.experiment, plan.output_dir / "mlartifacts", grid.name,
                {"grid": grid.model_dump_json(), "n_cells": len(plan.cells), "n_samples": len(plan.samples)},
            )
        return tracker, uri, None
    except Exception as err:  # the next run logs what MLflow lacks
        return None, uri, f"MLflow at {uri} unreachable ({type(err).__name__}): nothing logged; re-run to log"


def distinct_labels(cells: list[Cell]) -> dict[str, str]:
    """Cell id -> label, the prompt added where labels repeat (a label names model, precision and budget
    only), so that a stop reason names its dominating cell unambiguously."""
    labels = {c.cell_id: c.label for c in cells}
    repeated = {x for x in labels.values() if list(labels.values()).count(x) > 1}
    return {c.cell_id: f"{c.label} (prompt {c.prompt[:30]!r})" if c.label in repeated else c.label
            for c in cells}


def halving_setup(plan: SweepPlan, trial_cells: list[Cell],
                  recorder: Any) -> tuple[list[Sample], list[int], Any]:
    """Pareto-aware successive halving (`search.strategy: pareto_halving`): the samples in the shared
    seeded order, the plan's rungs (image counts), and the Tune scheduler that decides at each rung (its
    stopped cells go to the recorder, which records them as pruned)."""
    from sweep.plan.cell_facts import estimated_weight_bytes
    from sweep.results.pruned import search_stamp
    from sweep.search.halving import MemoryEstimate, image_order
    from sweep.search.rungs import RungEvaluator, cider_scores
    from sweep.search.scheduler import HalvingState, ParetoHalvingScheduler

    search = plan.grid.search
    by_id = {s.sample_id: s for s in plan.samples}
    order = image_order(list(by_id), search.seed)
    sizes = plan.rungs
    groups = {c.cell_id: (c.cell_id, *(d.cell_id for d in plan.sharing.groups[c.cell_id].derived))
              if c.cell_id in plan.sharing.groups else (c.cell_id,) for c in trial_cells}
    evaluate = RungEvaluator(plan.store, order, sizes, recorder.references, distinct_labels(plan.cells),
                             cider_scores(recorder.document_frequencies))
    state = HalvingState()
    state.stopped = recorder.pruned  # one dict: the scheduler's stops are the recorder's pruned cells
    recorder.search_stamp = search_stamp(search)  # what a pruned cell is stored under (read back later)
    estimates = {c.cell_id: MemoryEstimate(c.precision, estimated_weight_bytes(c)) for c in trial_cells}
    # cells finished earlier dominate at every rung too (their stored images include every rung's)
    scheduler = ParetoHalvingScheduler(sizes, groups, evaluate, search.objectives, search.confidence, state,
                                       comparators=list(plan.finished),
                                       hold_first_rung=search.synchronous_first_rung and len(sizes) > 1,
                                       estimates=estimates)
    return [by_id[i] for i in order], sizes, scheduler


def execute_plan(plan: SweepPlan, timer: PhaseTimer, address: str | None = None, verbose: bool = False,
                 where: str | None = None, stop: Any = None) -> Execution:
    """Record the stored and refused cells, run the rest as Ray Tune trials, and give every cell an
    outcome. `stop` (`sweep.execute.stopping.StopSignals`): a first SIGINT/SIGTERM ends the trials; the
    cells without an outcome are then recorded as interrupted (their finished batches stay in the store: a
    re-run resumes them)."""
    from sweep.execute.progress import SweepProgress
    from sweep.execute.stopping import SweepHalted, SweepInterrupted
    from sweep.quality.scoring import CaptionScorer
    from sweep.results.set_aside import warn_set_aside

    started = time.time()
    where = _start(plan, timer, address, verbose, where, stop)
    tracker, uri, tracker_note = open_tracker(plan, timer)
    _announce_tracker(tracker, tracker_note, stop)
    with CaptionScorer() as scorer:
        progress = SweepProgress(len(plan.cells), len(plan.samples))
        recorder = _recorder(plan, scorer, tracker, progress, timer, stop)
        interrupted_by = halted = None
        try:
            if plan.todo and not (stop and stop.signum):
                _run_trials(plan, recorder, timer, stop)
        except SweepInterrupted as err:
            interrupted_by = err.name
        except SweepHalted as err:
            halted = err.reason
        except Exception as err:  # Tune's own writes (its error files, its state) on a disk that filled
            reason = storage_failure(err)
            if reason is None and not (stop and stop.halted):
                raise
            halted = f"the output disk is full or read-only ({reason})" if reason else stop.halted
        finally:
            recorder.drain()
            warn_set_aside(plan.store, plan.cells, started)  # parts set aside by the trials' processes
            interrupted_by = interrupted_by or (stop.name if stop else None)
            halted = halted or (stop.halted if stop else None)
            _close_outcomes(plan, recorder, progress, interrupted_by, halted)
            progress.close()
        recorder.notes += _stop_notes(interrupted_by, halted)
    notes = [*recorder.notes, *filter(None, [tracker_note])]
    return Execution(recorder.outcomes, notes, tracker, uri, halted)


def _start(plan: SweepPlan, timer: PhaseTimer, address: str | None, verbose: bool, where: str | None,
           stop: Any) -> str:
    """Ray when a cell runs (`where` it runs), the signal handlers again, the first lines of the sweep."""
    if where is None:
        if plan.todo:
            with timer.phase("ray_start"):
                where = init_ray(plan.grid, plan.todo, address, verbose)
        else:
            where = "no Ray (all cells are stored)"
    if stop is not None:
        stop.install()  # again: ray.init installs a SIGTERM handler of its own that aborts the driver
    if plan.archived:
        print(f"--fresh: earlier results of these cells moved to {plan.archived}")
    print(f"sweep '{plan.grid.name}': {len(plan.cells)} cells x {len(plan.samples)} images on {where}",
          flush=True)
    vllm_note = vllm_missing_note(plan.todo)  # once: on a CUDA machine without vLLM, how to get it
    if vllm_note:
        print(f"note: {vllm_note}", flush=True)
    if plan.finished:
        print(f"{len(plan.finished)} cells already finished in {plan.output_dir / 'cells'}: read back, "
              "not recomputed", flush=True)
    if plan.pruned:
        print(f"{len(plan.pruned)} cells pruned by successive halving before: read back as pruned, not run "
              "again (search.strategy: full completes them)", flush=True)
    return where


def _announce_tracker(tracker: Any, tracker_note: str | None, stop: Any) -> None:
    if stop is not None:
        stop.tracker = tracker
    if tracker is not None and tracker.closed_stale:
        print(f"MLflow: {len(tracker.closed_stale)} earlier run(s) of this sweep left RUNNING by a driver "
              "that is gone set KILLED", flush=True)
    if tracker_note:
        print(f"WARNING: {tracker_note}", flush=True)


def _recorder(plan: SweepPlan, scorer: Any, tracker: Any, progress: Any, timer: PhaseTimer,
              stop: Any) -> Any:
    """The sweep's recorder, with the cells the plan reads back and refuses already recorded."""
    from sweep.results.recorder import SweepRecorder

    served = {lead: tuple(c.cell_id for c in g.derived) for lead, g in plan.sharing.groups.items()}
    recorder = SweepRecorder(plan.cells, plan.samples, plan.store, scorer, tracker, progress, timer,
                             document_frequencies=plan.grid.scoring.document_frequencies,
                             reference_captions=reference_captions_file(plan.grid.dataset, plan.output_dir),
                             derived=served)
    if stop is not None:
        recorder.on_storage_failure = stop.halt
    for cell_id, costs in plan.finished.items():
        outcome = recorder.record(cell_id, costs, from_store=True)
        progress.cell_reused(cell_id, outcome.metrics.get("n_errors", 0.0))
    for cell_id, prune in plan.pruned.items():  # pruned by successive halving before: a result
        outcome = recorder.record(cell_id, plan.store.covering_costs(cell_id, set()) or {},
                                  from_store=True, pruned=prune)
        progress.cell_pruned(cell_id, int(outcome.metrics.get("images_seen", 0)), reused=True)
    for cell_id, reason in plan.refused.items():  # would not fit the GPU: refused before loading
        recorder.record_failure(cell_id, reason)
        progress.cell_finished(cell_id, ok=False)
    return recorder


def _run_trials(plan: SweepPlan, recorder: Any, timer: PhaseTimer, stop: Any) -> None:
    """The plan's cells to run as Tune trials (Ray Tune, Ray Data and the pipeline are imported only
    here: a stored grid answers without them)."""
    from sweep.execute.callbacks import CellCallback, StopCallback
    from sweep.execute.pipeline import PipelineSettings
    from sweep.execute.trials import run_trials

    grid = plan.grid
    trial_cells = plan.sharing.trial_cells(plan.todo)
    run_samples, rungs, scheduler = plan.samples, None, None
    if grid.search.strategy == "pareto_halving":
        run_samples, rungs, scheduler = halving_setup(plan, trial_cells, recorder)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    callbacks = [CellCallback(recorder), *([StopCallback(stop)] if stop else [])]
    with timer.phase("trials"):
        hosts = run_trials(trial_cells, run_samples, PipelineSettings.from_grid(grid), plan.store,
                           plan.output_dir / "tune", f"{grid.name}-{stamp}", callbacks,
                           derived={lead: g.derived for lead, g in plan.sharing.groups.items()},
                           rungs=rungs, scheduler=scheduler)
    if scheduler is not None:
        recorder.notes += [f"successive halving: {line}" for line in scheduler.state.lines(rungs)]
    recorder.notes.append(f"{hosts['loads']} model loads for {len(plan.todo)} cells (a loaded "
                          "model serves every cell of its model and precision) in "
                          f"{hosts.get('processes', hosts['loads'])} host processes")
    if plan.sharing.lead_of:
        recorder.notes.append(
            f"{len(plan.sharing.lead_of)} cells were cut from the generation of a larger budget "
            f"({len(trial_cells)} generations for {len(plan.todo)} cells; token-budget sharing, "
            "off with generation.share_token_budgets: false)")


def _close_outcomes(plan: SweepPlan, recorder: Any, progress: Any, interrupted_by: str | None,
                    halted: str | None) -> None:
    """An outcome for every cell without one: interrupted, stopped, or never reached."""
    running = set(progress.running)
    wanted = {s.sample_id for s in plan.samples}
    for cell in plan.cells:
        if cell.cell_id not in recorder.outcomes and interrupted_by:
            # finished in the store just before the signal, before Tune reported it: a result
            _record_if_finished(recorder, progress, cell, plan.store, wanted)
        if cell.cell_id in recorder.outcomes:
            continue
        if interrupted_by or halted:
            why = f"interrupted by {interrupted_by}" if interrupted_by else f"stopped: {halted}"
            when = "" if cell.cell_id in running else " before this cell started"
            recorder.record_failure(cell.cell_id, f"{why}{when}")
            progress.cell_finished(cell.cell_id, ok=False)
        else:
            recorder.record_failure(cell.cell_id, "no result: the sweep stopped before this cell")


def _stop_notes(interrupted_by: str | None, halted: str | None) -> list[str]:
    if interrupted_by:
        return [f"stopped by {interrupted_by}: the cells interrupted keep their finished "
                "batches in the store; re-run the same grid to resume them"]
    if halted:
        return [f"stopped: {halted}; every batch and cell written before it is kept in the "
                "store: free space and re-run the same grid to resume"]
    return []


def _record_if_finished(recorder: Any, progress: Any, cell: Cell, store: ResultStore,
                        wanted: set[str]) -> None:
    """A cell the store holds finished although no trial reported it (a signal came in between): record it
    as the result it is, not as interrupted."""
    costs = reusable(cell, store, wanted)
    if costs is None:
        return
    try:
        outcome = recorder.record(cell.cell_id, costs)
    except Exception:  # not recordable now (scoring failed): left to the interrupted cells, resumed later
        log.info("recording cell %s after the stop failed", cell.cell_id, exc_info=True)  # sweep.log only
        recorder.outcomes.pop(cell.cell_id, None)
        return
    progress.cell_finished(cell.cell_id, True, outcome.metrics.get("n_errors", 0.0))
