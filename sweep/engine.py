"""The sweep engine: plan (what the store holds, what cannot fit) → execute (Ray Tune trials, scoring,
MLflow) → publish (results.csv, fronts, plots, report, the summary). Each phase is its own function;
`run_sweep` chains them and returns its own phase timings (`sweep.execute.phases`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sweep.data.load import reference_captions_file
from sweep.data.sources import Sample
from sweep.execute.phases import PhaseTimer
from sweep.grid.cells import Cell
from sweep.grid.config import GridConfig
from sweep.logs import LogSession, route_library_logs
from sweep.plan.budgets import Sharing, plan_sharing
from sweep.plan.dry_run import vllm_missing_note
from sweep.results.disk import EXIT_STORAGE, storage_failure
from sweep.results.lock import holds_sweep_lock
from sweep.results.store import ResultStore, atomic_write_bytes

for _key, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # an unreachable tracking server must not stall the sweep for minutes of retries
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}.items():
    os.environ.setdefault(_key, _value)

log = logging.getLogger(__name__)


@dataclass
class SweepPlan:
    """What an invocation will do, decided from the grid, the samples and the result store alone."""

    grid: GridConfig
    cells: list[Cell]
    samples: list[Sample]
    store: ResultStore
    finished: dict[str, dict] = field(default_factory=dict)  # cell id -> stored costs (read back)
    refused: dict[str, str] = field(default_factory=dict)  # cell id -> why it cannot fit the GPU
    todo: list[Cell] = field(default_factory=list)  # cells to run on Ray
    archived: Path | None = None  # --fresh: where earlier results went
    # token-budget sharing among the cells to run: which are served by another's generation, and why not
    sharing: Sharing = field(default_factory=Sharing)

    @property
    def output_dir(self) -> Path:
        return self.store.root


@dataclass
class Execution:
    """What running a plan produced: one outcome per cell (ok or failed), and notes for the user."""

    outcomes: dict[str, Any]
    notes: list[str]
    tracker: Any
    tracking_uri: str
    halted: str | None = None  # why the sweep stopped without a signal (a disk that filled mid-run)


@dataclass
class SweepResult:
    exit_code: int  # 0 every cell ok, 1 some cells failed
    results: Any  # pandas DataFrame, one row per cell (results.csv)
    output_dir: Path
    tracker: Any  # SweepTracker, or None when MLflow was unreachable
    phases: dict[str, float]  # seconds per phase (sweep.execute.phases.PHASES); they may overlap


_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_saved_cluster_setting: list = []  # (environment value, ray_constants.ENABLE_RAY_CLUSTER) before loopback


def _loopback_only(on: bool) -> None:
    """An embedded Ray on loopback alone. Ray 2.60 turns `_node_ip_address="127.0.0.1"` back into the
    machine's external address unless `ray_constants.ENABLE_RAY_CLUSTER` is false (its single-node mode,
    the default on macOS and Windows); with a loopback node IP the GCS, raylet, workers, dashboard and
    runtime-env agents and the metrics servers listen on 127.0.0.1 only. The environment variable carries
    it to Ray's processes, the constant to this one (read when ray is imported); joining a cluster
    restores both."""
    from ray._private import ray_constants

    if on:
        if not _saved_cluster_setting:
            before = (os.environ.get(_RAY_CLUSTER_ENV), ray_constants.ENABLE_RAY_CLUSTER)
            _saved_cluster_setting.append(before)
        os.environ[_RAY_CLUSTER_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    elif _saved_cluster_setting:
        value, ray_constants.ENABLE_RAY_CLUSTER = _saved_cluster_setting.pop()
        if value is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = value


def init_ray(grid: GridConfig, cells: list[Cell], address: str | None, verbose: bool) -> str:
    """Join the cluster named by --address/$RAY_ADDRESS, else start an embedded Ray."""
    import ray

    route_library_logs()  # Ray's INFO lines ("Started a local Ray instance", Tune's) into sweep.log
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _loopback_only(False)
        ray.init(address=address, log_to_driver=verbose)
        return f"Ray cluster at {address}"
    _loopback_only(True)
    # authentication is off only here, where every Ray process listens on loopback alone
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    kwargs: dict = {"include_dashboard": False, "log_to_driver": verbose, "_node_ip_address": "127.0.0.1",
                    "dashboard_host": "127.0.0.1"}
    choice = ""
    if torch.cuda.device_count() == 0:
        kwargs["num_gpus"], choice = cpu_logical_gpus(grid.resources.local_gpus, cells)
        log.info("no CUDA device: %s", choice)
    ray.init(**kwargs)
    gpus = ray.cluster_resources().get("GPU", 0)
    if "num_gpus" in kwargs:
        plural = "s" * (gpus != 1)
        return f"embedded Ray with {gpus:g} logical GPU{plural} (no CUDA device: models run on CPU, {choice})"
    return f"embedded Ray with {gpus:g} GPUs"


def cpu_logical_gpus(local_gpus: int | None, cells: list[Cell]) -> tuple[int, str]:
    """Logical GPUs of an embedded Ray on a machine without CUDA, and the choice in words.

    The cells' models run on the CPU cores, where two cells side by side slow each other down while both
    are timed (on 2 cores: batch latency p50 2-3x, images/s of one cell 13.7-95.1 across identical runs).
    So by default just the GPUs one cell needs (one cell at a time: its latency is its own); a grid's
    `resources.local_gpus` runs more at once; every cell records in `cells_beside` how many ran with it."""
    need = max(1, math.ceil(max(c.gpus_per_actor * c.replicas for c in cells)))
    if local_gpus is None:
        return need, ("one cell at a time, so no two cells share the cores they are timed on; "
                      "resources.local_gpus runs more at once")
    at_once = max(1, int(local_gpus // need))
    if at_once == 1:
        return local_gpus, "one cell at a time (resources.local_gpus)"
    return local_gpus, (f"up to {at_once} cells at once on the same CPU cores (resources.local_gpus): their "
                        "latencies include each other's load; cells_beside says how many ran together")


def shutdown_ray() -> None:
    """Stop this process's Ray and give back Ray's own settings: a later `ray.init` or
    `ray.cluster_utils.Cluster` in the same process (a notebook, a test session) must not start its nodes in
    the embedded Ray's single-node loopback mode (several nodes then never come up)."""
    if "ray" not in sys.modules:  # this process never started Ray (every cell stored): nothing to give back
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _loopback_only(False)


def archive_cells(store: ResultStore, cells: list[Cell]) -> Path | None:
    """--fresh: move this grid's cells out of the way, keeping them."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = store.root / "cells-archive" / stamp
    moved = False
    for cell in cells:
        src = store.cell_dir(cell.cell_id)
        if src.exists():
            target.mkdir(parents=True, exist_ok=True)
            src.rename(target / cell.cell_id)
            moved = True
    return target if moved else None


def reusable(cell: Cell, store: ResultStore, wanted: set[str]) -> dict | None:
    """Costs of a cell the store already finished; sampled generation is never silently reused."""
    if cell.do_sample:
        return None
    return store.finished_costs(cell.cell_id, wanted)


def plan_sweep(grid: GridConfig, cells: list[Cell], samples: list[Sample], fresh: bool = False) -> SweepPlan:
    """Sort the cells into read back (finished in the store), refused (estimated not to fit the GPU)
    and to run, and group the cells to run that one generation serves (`sweep.plan.budgets`: only among
    them, so a finished cell is read back and a new budget generates on its own). Writes the samples'
    references for `sweep.publish.report`; starts nothing."""
    from sweep.plan.dry_run import memory_refusals, target_gpu_bytes

    out = grid.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = SweepPlan(grid, cells, samples, ResultStore(out))
    if fresh:
        plan.archived = archive_cells(plan.store, cells)
    (out / "samples.json").write_text(json.dumps({
        "references": {s.sample_id: list(s.references) for s in samples},
        "image_ids": {s.sample_id: s.image_id for s in samples},
    }))
    wanted = {s.sample_id for s in samples}
    stored = {c.cell_id: reusable(c, plan.store, wanted) for c in cells}
    plan.finished = {cell_id: costs for cell_id, costs in stored.items() if costs is not None}
    todo = [c for c in cells if c.cell_id not in plan.finished]
    if todo:  # the GPU's size may need torch (seconds of import): not when every cell is stored
        gpu_bytes = target_gpu_bytes(grid.resources.accelerator_type, grid.resources.gpu_memory_gb)
        plan.refused = memory_refusals(todo, gpu_bytes, grid.dataset.image_max_side)
    plan.todo = [c for c in todo if c.cell_id not in plan.refused]
    plan.sharing = plan_sharing(plan.todo, grid.generation.share_token_budgets)
    return plan


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
    seeded order, the rungs' image counts, and the Tune scheduler that decides at each rung (its stopped
    cells go to the recorder, which records them as pruned)."""
    from sweep.search.halving import image_order, rung_sizes
    from sweep.search.rungs import RungEvaluator, cider_scores
    from sweep.search.scheduler import HalvingState, ParetoHalvingScheduler

    search = plan.grid.search
    by_id = {s.sample_id: s for s in plan.samples}
    order = image_order(list(by_id), search.seed)
    sizes = rung_sizes(len(order), search.rungs, search.first_rung, search.factor)
    groups = {c.cell_id: (c.cell_id, *(d.cell_id for d in plan.sharing.groups[c.cell_id].derived))
              if c.cell_id in plan.sharing.groups else (c.cell_id,) for c in trial_cells}
    evaluate = RungEvaluator(plan.store, order, sizes, recorder.references, distinct_labels(plan.cells),
                             cider_scores(recorder.document_frequencies))
    state = HalvingState()
    state.stopped = recorder.pruned  # one dict: the scheduler's stops are the recorder's pruned cells
    # cells finished earlier dominate at every rung too (their stored images include every rung's)
    scheduler = ParetoHalvingScheduler(sizes, groups, evaluate, search.objectives, search.confidence, state,
                                       comparators=list(plan.finished))
    return [by_id[i] for i in order], sizes, scheduler


def execute_plan(plan: SweepPlan, timer: PhaseTimer, address: str | None = None, verbose: bool = False,
                 where: str | None = None, stop: Any = None) -> Execution:
    """Record the stored and refused cells, run the rest as Ray Tune trials (each scored and logged as
    it finishes), and give every cell an outcome, also when the sweep is interrupted. `stop`
    (`sweep.execute.stopping.StopSignals`): a first SIGINT/SIGTERM ends the trials; the cells without an
    outcome
    are then recorded as interrupted (their finished batches stay in the store: a re-run resumes them)."""
    from sweep.execute.progress import SweepProgress
    from sweep.execute.stopping import SweepHalted, SweepInterrupted
    from sweep.quality.scoring import CaptionScorer
    from sweep.results.recorder import SweepRecorder

    grid, cells, samples = plan.grid, plan.cells, plan.samples
    if where is None:
        if plan.todo:
            with timer.phase("ray_start"):
                where = init_ray(grid, plan.todo, address, verbose)
        else:
            where = "no Ray (all cells are stored)"
    if stop is not None:
        stop.install()  # again: ray.init installs a SIGTERM handler of its own that aborts the driver
    if plan.archived:
        print(f"--fresh: earlier results of these cells moved to {plan.archived}")
    print(f"sweep '{grid.name}': {len(cells)} cells x {len(samples)} images on {where}", flush=True)
    vllm_note = vllm_missing_note(plan.todo)
    if vllm_note:
        print(f"note: {vllm_note}", flush=True)
    if plan.finished:
        print(f"{len(plan.finished)} cells already finished in {plan.output_dir / 'cells'}: read back, "
              "not recomputed", flush=True)
    tracker, uri, tracker_note = open_tracker(plan, timer)
    if stop is not None:
        stop.tracker = tracker
    if tracker is not None and tracker.closed_stale:
        print(f"MLflow: {len(tracker.closed_stale)} earlier run(s) of this sweep left RUNNING by a driver "
              "that is gone set KILLED", flush=True)
    if tracker_note:
        print(f"WARNING: {tracker_note}", flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    with CaptionScorer() as scorer:
        progress = SweepProgress(len(cells), len(samples))
        groups = plan.sharing.groups
        served = {lead: tuple(c.cell_id for c in g.derived) for lead, g in groups.items()}
        recorder = SweepRecorder(cells, samples, plan.store, scorer, tracker, progress, timer,
                                 document_frequencies=grid.scoring.document_frequencies,
                                 reference_captions=reference_captions_file(grid.dataset, plan.output_dir),
                                 derived=served)
        if stop is not None:
            recorder.on_storage_failure = stop.halt
        for cell_id, costs in plan.finished.items():
            outcome = recorder.record(cell_id, costs, from_store=True)
            progress.cell_reused(cell_id, outcome.metrics.get("n_errors", 0.0))
        for cell_id, reason in plan.refused.items():  # would not fit the GPU: refused before loading
            recorder.record_failure(cell_id, reason)
            progress.cell_finished(cell_id, ok=False)
        interrupted_by = halted = None
        try:
            if plan.todo and not (stop and stop.signum):
                # Ray Tune, Ray Data and the pipeline only when a cell runs (a stored grid answers without)
                from sweep.execute.callbacks import CellCallback, StopCallback
                from sweep.execute.pipeline import PipelineSettings
                from sweep.execute.trials import run_trials

                trial_cells = plan.sharing.trial_cells(plan.todo)
                run_samples, rungs, scheduler = samples, None, None
                if grid.search.strategy == "pareto_halving":
                    run_samples, rungs, scheduler = halving_setup(plan, trial_cells, recorder)
                with timer.phase("trials"):
                    hosts = run_trials(trial_cells, run_samples, PipelineSettings.from_grid(grid), plan.store,
                                       plan.output_dir / "tune", f"{grid.name}-{stamp}",
                                       [CellCallback(recorder), *([StopCallback(stop)] if stop else [])],
                                       derived={lead: g.derived for lead, g in groups.items()},
                                       rungs=rungs, scheduler=scheduler)
                if scheduler is not None:
                    recorder.notes += [f"successive halving: {line}" for line in scheduler.state.lines(rungs)]
                recorder.notes.append(f"{hosts['loads']} model loads for {len(plan.todo)} cells (a loaded "
                                      "model serves every cell of its model and precision)")
                if plan.sharing.lead_of:
                    recorder.notes.append(
                        f"{len(plan.sharing.lead_of)} cells were cut from the generation of a larger budget "
                        f"({len(trial_cells)} generations for {len(plan.todo)} cells; token-budget sharing, "
                        "off with generation.share_token_budgets: false)")
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
            interrupted_by = interrupted_by or (stop.name if stop else None)
            halted = halted or (stop.halted if stop else None)
            running = set(progress.running)
            wanted = {s.sample_id for s in samples}
            for cell in cells:
                if cell.cell_id not in recorder.outcomes and interrupted_by:
                    # finished in the store just before the signal, before Tune reported it: a result
                    _record_if_finished(recorder, progress, cell, plan.store, wanted)
                if cell.cell_id not in recorder.outcomes:
                    if interrupted_by or halted:
                        why = f"interrupted by {interrupted_by}" if interrupted_by else f"stopped: {halted}"
                        when = "" if cell.cell_id in running else " before this cell started"
                        recorder.record_failure(cell.cell_id, f"{why}{when}")
                        progress.cell_finished(cell.cell_id, ok=False)
                    else:
                        recorder.record_failure(cell.cell_id, "no result: the sweep stopped before this cell")
            progress.close()
        if interrupted_by:
            recorder.notes.append(f"stopped by {interrupted_by}: the cells interrupted keep their finished "
                                  "batches in the store; re-run the same grid to resume them")
        elif halted:
            recorder.notes.append(f"stopped: {halted}; every batch and cell written before it is kept in the "
                                  "store: free space and re-run the same grid to resume")
    notes = [*recorder.notes, *filter(None, [tracker_note])]
    return Execution(recorder.outcomes, notes, tracker, uri, halted)


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
        log.exception("recording cell %s after the stop failed", cell.cell_id)
        recorder.outcomes.pop(cell.cell_id, None)
        return
    progress.cell_finished(cell.cell_id, True, outcome.metrics.get("n_errors", 0.0))


def publish_results(plan: SweepPlan, execution: Execution, timer: PhaseTimer,
                    log_path: Path | None = None) -> tuple[int, Any]:
    """results.csv, pareto_front.csv, the plots, report.html, the MLflow parent run and the summary
    (naming `log_path`, the sweep's log file)."""
    import pandas as pd

    from sweep.publish.report import (
        add_statistics,
        candidates,
        cost_axes,
        degenerate_notes,
        error_row_lines,
        format_table,
        front_pool,
        load_tables,
        mark_fronts,
        plot_fronts,
        tie_summary,
        write_html_report,
    )
    from sweep.publish.ties import terminal_ties, tied_with
    from sweep.quality.pick import gpu_picks, pick_tags, recommendation_sections
    from sweep.results.recorder import cells_beside
    from sweep.results.store import atomic_write_bytes

    out, cells, tracker = plan.output_dir, plan.cells, execution.tracker
    results = pd.DataFrame([execution.outcomes[c.cell_id].row() for c in cells])
    outcomes = [execution.outcomes[c.cell_id] for c in cells]
    beside = cells_beside({o.cell.cell_id: o.span for o in outcomes},
                          {o.cell.cell_id: o.params.get("shared_generation", "") for o in outcomes})
    results["cells_beside"] = [beside[c.cell_id] for c in cells]
    # intervals, paired differences and the degenerate-output guard, from each ok cell's per-image table
    with timer.phase("scoring"):
        results, comparisons = add_statistics(results, load_tables(out, results))
        results = mark_fronts(results, comparisons)
        ties = tie_summary(results, comparisons)
        tied = tied_with(results, comparisons)  # every pair, in results.csv; the terminal may group them
        results["tied_with"] = ["; ".join(tied.get(cid, [])) for cid in results["cell_id"]]
        pool, memory_column = candidates(results)
        picks = gpu_picks(pool, comparisons, memory_column)
    recommendation = recommendation_sections(picks)
    _, random_note = front_pool(results)
    warnings = degenerate_notes(results)
    title, report_notes = f"Sweep report: {plan.grid.name}", [*filter(None, [random_note]), *warnings]
    plots: list[Path] = []
    report = out / "report.html"
    unwritten = None  # a full or read-only disk: the table is still printed, the store keeps the cells
    try:
        atomic_write_bytes(out / "results.csv", results.to_csv(index=False).encode())
        front = results[results["pareto"] != ""]
        atomic_write_bytes(out / "pareto_front.csv", front.to_csv(index=False).encode())
        with timer.phase("report"):
            # the plots and the report are drawn from the results alone: the same results (a re-run of a
            # stored grid) keep the files already drawn, a second of matplotlib saved
            stamp = report_stamp(results, title, report_notes,
                                 [*ties, *(line for _, lines in recommendation for line in lines)])
            plots = [out / f"pareto_cider_vs_{axis}.png" for axis in cost_axes(results)]
            if not (_read_text(out / REPORT_STAMP) == stamp and all(p.is_file() for p in [*plots, report])):
                plots = plot_fronts(results, out)
                report = write_html_report(out, title, results, plots,
                                           {s.sample_id: list(s.references) for s in plan.samples},
                                           report_notes, ties=ties, recommendation=recommendation)
                atomic_write_bytes(out / REPORT_STAMP, stamp.encode())
    except OSError as err:
        unwritten = f"{err.filename or out}: {err.strerror or err}"
    n_failed = int((results["status"] == "failed").sum())  # a pruned cell is a result, not a failure
    n_pruned = int((results["status"] == "pruned").sum())
    notes = list(execution.notes)
    if unwritten:
        notes.append(f"could not write the sweep's results ({unwritten}); the per-cell results are in "
                     f"{out / 'cells'}: free space and re-run (nothing is recomputed) to write them")
    if tracker is not None and not unwritten:
        with timer.phase("mlflow"):
            notes += _log_cell_extras(tracker, execution.outcomes, results, out / EXTRAS_LOGGED)
        try:
            with timer.phase("mlflow"):
                tracker.log_parent(
                    metrics={"n_cells_ok": len(cells) - n_failed - n_pruned, "n_cells_failed": n_failed,
                             "n_cells_pruned": n_pruned},
                    artifacts=[*plots, out / "results.csv", out / "pareto_front.csv", report],
                    tags=pick_tags(picks),
                )
                tracker.finish(ok=n_failed == 0)
        except Exception as err:
            notes.append(f"MLflow logging of the sweep run failed: {err}; re-run to log")

    print()
    print(format_table(results))
    print()
    for line in terminal_ties(ties, results, tied):
        print(line)
    choice = picks["any"].best
    if choice is not None:  # the whole answer, and for 16/24/80 GB, opens report.html
        tied_labels = ", ".join(t.label for t in picks["any"].ties)
        print(f"choice (no constraint): {choice['label']}" + (f"; tied with it: {tied_labels}" if tied_labels
              else "") + f"  (under constraints: python -m sweep.pick {out} --max-memory-gb X ...)")
    if random_note:
        print(f"NOTE: {random_note}.")
    for warning in warnings:
        print(f"WARNING: {warning}")
    for note in notes:
        print(f"note: {note}")
    for line in error_row_lines(out, results):  # cells with images they could not caption: the first why
        print(line)
    if unwritten:
        print(f"NOT WRITTEN: results.csv, plots and report in {out} ({unwritten})")
    else:
        print(f"results:   {out / 'results.csv'}  (per-cell caption tables under {out / 'cells'})")
        print(f"plots:     {', '.join(p.name for p in plots)} in {out}")
        print(f"report:    {report}  (rebuild: python -m sweep.publish.report {out})")
    uri = execution.tracking_uri
    parent = tracker.parent_id if tracker else "not logged"
    print(f"MLflow:    {uri}  (experiment '{plan.grid.tracking.experiment}', parent run {parent})")
    if uri.startswith("sqlite:"):
        print(f"           mlflow ui --backend-store-uri {uri}")
    if log_path is not None:
        print(f"log:       {log_path}  (Ray, Tune, MLflow and tokenizer lines; --verbose shows them here)")
    if n_pruned:
        print(f"{n_pruned} of {len(cells)} cells pruned by successive halving (re-run with "
              "search.strategy: full to complete them from where they stopped):")
        for _, row in results[results["status"] == "pruned"].iterrows():
            print(f"  {row['label']}: {row['reason']}")
    if n_failed:
        print(f"{n_failed} of {len(cells)} cells failed:")
        for _, row in results[results["status"] == "failed"].iterrows():
            print(f"  {row['label']}: {row['reason']}")
    return (EXIT_STORAGE if unwritten else 1 if n_failed else 0), results


REPORT_STAMP = ".report.sha256"  # what the plots and report.html in the output dir were drawn from


def report_stamp(results: Any, title: str, notes: list[str], ties: list[str]) -> str:
    """sha256 of what the plots and the report show: the results (but `reused`, which says only whether
    this invocation computed a cell), the title, the notes and the tie lines."""
    shown = results.drop(columns=[c for c in ("reused",) if c in results])
    h = hashlib.sha256(shown.to_csv(index=False).encode())
    h.update(json.dumps([title, notes, ties]).encode())
    return h.hexdigest()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


EXTRAS_LOGGED = ".mlflow-extras.json"  # {tracking uri: {run id: sha256 of the extras logged onto it}}


def _log_cell_extras(tracker: Any, outcomes: dict[str, Any], results: Any,
                     logged_path: Path | None = None) -> list[str]:
    """The intervals, `pareto`/`pareto_tied`, `degenerate_output` and `cells_beside` of each ok cell onto
    its child run; notes for the cells whose logging failed. `logged_path` remembers what each run got:
    a run that already holds these very values (a re-run of a stored grid) is not written again."""
    from sweep.quality.statistics import CI_METRICS, ci_columns

    columns = [c for m in CI_METRICS for c in ci_columns(m)] + ["degenerate_output", "cells_beside"]
    notes = []
    logged: dict = {}
    if logged_path is not None:
        try:
            logged = json.loads(logged_path.read_text())
        except (OSError, ValueError):
            logged = {}
    done = logged.setdefault(str(getattr(tracker, "uri", "")), {})
    for _, row in results[results["status"].isin(["ok", "pruned"])].iterrows():
        run_id = outcomes[row["cell_id"]].run_id
        if run_id is None:
            continue
        metrics = {c: float(row[c]) for c in columns if c in row}  # the tracker leaves out NaN
        tags = {"pareto": row["pareto"], "pareto_tied": row["pareto_tied"]}
        if row["status"] == "pruned":  # the rung, images seen and why are params; the status a tag
            tags.update(status="pruned", pruned_reason=str(row["reason"])[:5000])
        digest = hashlib.sha256(json.dumps([metrics, tags], sort_keys=True).encode()).hexdigest()
        if done.get(run_id) == digest:
            continue
        try:
            tracker.log_cell_extra(run_id, metrics, tags)
            done[run_id] = digest
        except Exception as err:  # the files have it all; MLflow can be re-logged later
            notes.append(f"MLflow logging of the intervals of cell {row['cell_id']} failed: {err}")
    if logged_path is not None:
        atomic_write_bytes(logged_path, json.dumps(logged, indent=1).encode())
    return notes


@holds_sweep_lock  # the whole invocation owns output_dir/.sweep.lock: a second sweep there exits 2
def run_sweep(grid: GridConfig, cells: list[Cell], samples: list[Sample] | None, address: str | None = None,
              verbose: bool = False, fresh: bool = False) -> SweepResult:
    """Plan, execute and publish one sweep invocation. `samples` None: video, whose scenes are detected
    on Ray (once per video file, cached) before the plan can be made."""
    # the libraries' INFO lines (Ray, Tune, MLflow, the PTB tokenizer) go to sweep.log, not the terminal
    with LogSession(grid.output_dir.resolve(), verbose) as logs:
        return _run_logged(grid, cells, samples, address, verbose, fresh, logs.path)


def _run_logged(grid: GridConfig, cells: list[Cell], samples: list[Sample] | None, address: str | None,
                verbose: bool, fresh: bool, log_path: Path) -> SweepResult:
    """`run_sweep` inside its log session (`log_path`, named in the summary)."""

    from sweep.execute.stopping import StopSignals

    timer = PhaseTimer()
    where = None
    # SIGINT/SIGTERM: a clean stop (exit 130/143, what finished written), a second one a fast stop
    stop = StopSignals().install()
    try:
        if samples is None:
            from sweep.data.video import load_video_samples

            with timer.phase("ray_start"):
                where = init_ray(grid, cells, address, verbose)
            stop.install()
            out = grid.output_dir.resolve()
            out.mkdir(parents=True, exist_ok=True)
            samples = load_video_samples(grid.dataset, out / "scene-cache")
        plan = plan_sweep(grid, cells, samples, fresh)
        try:
            execution = execute_plan(plan, timer, address, verbose, where, stop)
        finally:
            shutdown_ray()
        code, results = publish_results(plan, execution, timer, log_path)
        if stop.signum:
            code = stop.exit_code
            if execution.tracker is not None:
                execution.tracker.finish(ok=False, status="KILLED")
            print(f"stopped by {stop.name}: exit {code}", flush=True)
        elif execution.halted:
            code = EXIT_STORAGE
            if execution.tracker is not None and execution.tracker.status is None:
                with contextlib.suppress(Exception):  # its database may sit on the same full disk
                    execution.tracker.finish(ok=False, status="FAILED")
            print(f"stopped: {execution.halted}: exit {code}", flush=True)
    except BaseException as err:  # the parent run must not stay RUNNING: KILLED (signal) or FAILED
        tracker = stop.tracker
        if tracker is not None and tracker.status is None:
            killed = stop.signum or isinstance(err, KeyboardInterrupt)
            try:
                tracker.finish(ok=False, status="KILLED" if killed else "FAILED")
            except Exception:
                pass
        raise
    finally:
        stop.restore()
    return SweepResult(code, results, plan.output_dir, execution.tracker, timer.snapshot())
