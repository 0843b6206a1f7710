"""The sweep engine: plan (`sweep.plan`: what the store holds, what cannot fit) → execute (`sweep.execute`:
Ray Tune trials, scoring, MLflow) → publish (`sweep.publish`: results.csv, fronts, plots, report, the
summary). `run_sweep` chains them and returns its own phase timings (`sweep.execute.phases`)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.data.sources import Sample
from sweep.execute.phases import PhaseTimer
from sweep.execute.ray_cluster import init_ray, shutdown_ray
from sweep.execute.run_plan import Execution, execute_plan
from sweep.grid.cells import Cell
from sweep.grid.config import GridConfig
from sweep.logs import LogSession
from sweep.plan.sweep_plan import SweepPlan, plan_sweep
from sweep.publish.publish import publish_results
from sweep.results.disk import EXIT_STORAGE
from sweep.results.lock import holds_sweep_lock

# the engine's stages, importable from here (the tests and benchmarks drive them one by one)
__all__ = ["Execution", "SweepPlan", "SweepResult", "execute_plan", "init_ray", "plan_sweep",
           "publish_results", "run_sweep", "shutdown_ray"]

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


@dataclass
class SweepResult:
    exit_code: int  # 0 every cell ok, 1 some cells failed
    results: Any  # pandas DataFrame, one row per cell (results.csv)
    output_dir: Path
    tracker: Any  # SweepTracker, or None when MLflow was unreachable
    phases: dict[str, float]  # seconds per phase (sweep.execute.phases.PHASES); they may overlap


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
            samples, where = _video_samples(grid, cells, address, verbose, timer, stop)
        plan = plan_sweep(grid, cells, samples, fresh)
        try:
            execution = execute_plan(plan, timer, address, verbose, where, stop)
        finally:
            shutdown_ray()
        code, results = publish_results(plan, execution, timer, log_path)
        code = _stopped_code(code, execution, stop)
    except BaseException as err:  # the parent run must not stay RUNNING: KILLED (signal) or FAILED
        tracker = stop.tracker
        if tracker is not None and tracker.status is None:
            killed = stop.signum or isinstance(err, KeyboardInterrupt)
            with contextlib.suppress(Exception):
                tracker.finish(ok=False, status="KILLED" if killed else "FAILED")
        raise
    finally:
        stop.restore()
    return SweepResult(code, results, plan.output_dir, execution.tracker, timer.snapshot())


def _video_samples(grid: GridConfig, cells: list[Cell], address: str | None, verbose: bool, timer: PhaseTimer,
                   stop: Any) -> tuple[list[Sample], str]:
    """Video scenes, detected on Ray (once per video file, cached) before the plan can be made; where."""
    from sweep.data.video import load_video_samples

    with timer.phase("ray_start"):
        where = init_ray(grid, cells, address, verbose)
    stop.install()
    out = grid.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return load_video_samples(grid.dataset, out / "scene-cache"), where


def _stopped_code(code: int, execution: Execution, stop: Any) -> int:
    """The exit code of a sweep a signal or a full disk stopped (its parent run set KILLED / FAILED)."""
    tracker = execution.tracker
    if stop.signum:
        code = stop.exit_code
        if tracker is not None:
            tracker.finish(ok=False, status="KILLED")
        print(f"stopped by {stop.name}: exit {code}", flush=True)
    elif execution.halted:
        code = EXIT_STORAGE
        if tracker is not None and tracker.status is None:
            with contextlib.suppress(Exception):  # its database may sit on the same full disk
                tracker.finish(ok=False, status="FAILED")
        print(f"stopped: {execution.halted}: exit {code}", flush=True)
    return code
