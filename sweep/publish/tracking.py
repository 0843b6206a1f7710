"""MLflow: one parent run per sweep invocation, one child run per cell, flat param and metric names."""

from __future__ import annotations

import math
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def default_tracking_uri(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def cell_params(cell: Any, load_report: dict, generation: dict, extra: dict[str, Any]) -> dict[str, str]:
    """Flat params so MLflow's compare and parallel-coordinates views work without tweaking.
    `generation`: the effective generate() settings the hosts used (family defaults under the cell's)."""
    # cell_id is a tag, not a param: a unique value per run would be the first axis MLflow's parallel
    # coordinates picks, and a row in every "diff only" table.
    params = {
        "model": cell.model.display_name,
        "model_id": cell.model.id,
        "trust_remote_code": cell.model.trust_remote_code,
        "family": load_report.get("family", ""),
        "precision": cell.precision,
        "max_new_tokens": cell.max_new_tokens,
        "prompt": cell.prompt,
        "num_beams": generation.get("num_beams", cell.num_beams or 1),
        "min_new_tokens": generation.get("min_new_tokens", cell.min_new_tokens or 0),
        "do_sample": cell.do_sample,
        "backend": load_report.get("backend", ""),
        "backend_reason": load_report.get("backend_reason", ""),
        "batch_size": cell.batch_size,
        "replicas": cell.replicas,
        "gpus_per_actor": cell.gpus_per_actor,
        "device": load_report.get("device", ""),
        "weights": load_report.get("weights", ""),
        "dataset_fingerprint": cell.dataset_fingerprint,
        "weights_requested": cell.model.weights,
    }
    for module, prec in load_report.get("module_precisions", {}).items():
        params[f"precision_{module}"] = prec
    for lib, version in load_report.get("library_versions", {}).items():
        params[f"version_{lib}"] = version
    if cell.model.revision:
        params["revision"] = cell.model.revision
    if cell.model.loader:
        params["loader"] = cell.model.loader
    engine_args = load_report.get("family_info", {}).get("vllm_engine_args")
    if engine_args:  # the vLLM engine arguments the cell's engine was built with
        params["vllm_engine_args"] = engine_args
    params.update(extra)
    return {k: str(v)[:6000] for k, v in params.items()}


class SweepTracker:
    def __init__(self, uri: str, experiment: str, artifact_root: Path, sweep_name: str,
                 parent_params: dict[str, Any]):
        from mlflow.tracking import MlflowClient

        from sweep.publish.sqlite_store import start_from_migrated_copy

        start_from_migrated_copy(uri)  # a new sqlite store: copied, not migrated (~1.3 CPU-s)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_root.resolve().as_uri()
            exp_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        self.sweep_name = sweep_name
        self.closed_stale = self.close_stale_runs()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.parent = self.client.create_run(
            exp_id, run_name=f"{sweep_name}-{stamp}",
            tags={"sweep": sweep_name, "role": "sweep", "driver_pid": str(os.getpid()),
                  "driver_host": socket.gethostname()},
        )
        self.parent_id = self.parent.info.run_id
        self.status: str | None = None  # the parent run's final status, once finished
        self._log(self.parent_id, params=parent_params)

    def close_stale_runs(self) -> list[str]:
        """Set KILLED the parent runs of this sweep left RUNNING by a driver that is gone (SIGKILL, a
        crash, a full disk): recorded on this host with a pid that no longer runs. Runs of other hosts,
        and runs without driver tags, cannot be told dead from here and are left alone."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.sweep = '{self.sweep_name}' and tags.role = 'sweep' "
                          "and attributes.status = 'RUNNING'",
        )
        closed = []
        host = socket.gethostname()
        for run in runs:
            tags = run.data.tags
            pid = tags.get("driver_pid", "")
            if tags.get("driver_host") != host or not pid.isdigit() or _pid_alive(int(pid)):
                continue
            self.client.set_tag(run.info.run_id, "stopped", "driver gone; closed by the next run")
            self.client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
        return closed

    def _log(self, run_id: str, params: dict | None = None, metrics: dict | None = None,
             tags: dict | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(datetime.now(timezone.utc).timestamp() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()
                     if v is not None and math.isfinite(float(v))],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def find_cell_run(self, cell_id: str) -> str | None:
        """A finished child run of this cell from an earlier invocation, if MLflow has one."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.cell_id = '{cell_id}' and attributes.status = 'FINISHED'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def log_cell(self, cell_id: str, run_name: str, params: dict, metrics: dict, artifacts: list[Path],
                 failed_reason: str | None = None, span: tuple[float, float] | None = None) -> str:
        """One child run; `span` (start, end) in epoch seconds is when the cell ran, so the UI's
        Duration is the cell's, not the logging's."""
        tags = {"mlflow.parentRunId": self.parent_id, "role": "cell", "cell_id": cell_id}
        start_ms, end_ms = (int(span[0] * 1000), int(span[1] * 1000)) if span else (None, None)
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags, start_time=start_ms)
        run_id = run.info.run_id
        tags = {}
        if failed_reason:
            kind = "oom" if failed_reason.startswith("oom") else "error"
            tags = {"failure_reason": kind, "failure_message": failed_reason[:5000]}
        self._log(run_id, params=params, metrics=metrics, tags=tags)
        for path in artifacts:
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, status="FAILED" if failed_reason else "FINISHED", end_time=end_ms)
        return run_id

    def log_parent(self, metrics: dict | None = None, artifacts: list[Path] | None = None,
                   tags: dict | None = None) -> None:
        self._log(self.parent_id, metrics=metrics, tags=tags)
        for path in artifacts or []:
            self.client.log_artifact(self.parent_id, str(path))

    def finish(self, ok: bool, status: str | None = None) -> None:
        """FINISHED (ok) or FAILED; `status` overrides (KILLED: stopped by a signal)."""
        status = status or ("FINISHED" if ok else "FAILED")
        self.client.set_terminated(self.parent_id, status=status)
        self.status = status

    def log_cell_extra(self, run_id: str, metrics: dict | None = None, tags: dict | None = None) -> None:
        """Metrics and tags known only once every cell is in (intervals, fronts with ties, the degenerate
        output flag), added to a cell's existing child run. Non-finite metrics are left out."""
        self._log(run_id, metrics=metrics, tags=tags)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
