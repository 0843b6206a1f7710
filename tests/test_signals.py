"""SIGINT/SIGTERM stop a sweep cleanly (cells in flight recorded as interrupted, results written, exit
130/143), and an MLflow parent run left RUNNING by a driver that is gone is closed by the next run."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import grid_dict

from sweep.publish.tracking import SweepTracker

pytestmark = pytest.mark.heavy  # minutes of CPU in all: started first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_running_parent_run_is_closed_as_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    art = tmp_path / "art"
    first = SweepTracker(uri, "exp", art, "s", {})
    client = first.client
    stale = first.parent_id  # as if its driver were SIGKILLed: RUNNING, with a pid that is gone
    client.set_tag(stale, "driver_pid", str(_dead_pid()))
    other_host = client.create_run(first.experiment_id, tags={
        "sweep": "s", "role": "sweep", "driver_pid": "1", "driver_host": socket.gethostname() + "-x"})
    other_sweep = client.create_run(first.experiment_id, tags={
        "sweep": "t", "role": "sweep", "driver_pid": str(_dead_pid()), "driver_host": socket.gethostname()})
    second = SweepTracker(uri, "exp", art, "s", {})
    assert second.closed_stale == [stale]
    run = client.get_run(stale)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert client.get_run(other_host.info.run_id).info.status == "RUNNING"  # cannot tell from here
    assert client.get_run(other_sweep.info.run_id).info.status == "RUNNING"  # another sweep's
    assert client.get_run(second.parent_id).info.status == "RUNNING"
    tags = client.get_run(second.parent_id).data.tags
    assert tags["driver_pid"] == str(os.getpid()) and tags["driver_host"] == socket.gethostname()
    # a live driver's run is never closed
    third = SweepTracker(uri, "exp", art, "s", {})
    assert third.closed_stale == []


def _start(coco: Path, tmp_path: Path, limit: int = 8) -> tuple[subprocess.Popen, Path]:
    """A slow sweep of 4 cells (2 at once) in its own process group; returns (process, output dir)."""
    out = tmp_path / "out"
    data = grid_dict(coco, out, models=[{"id": "slow-model", "loader": "fault_models:slow"}],
                     max_new_tokens=[2, 4, 6, 8])
    data["dataset"]["limit"] = limit
    data["resources"] = {"local_gpus": 2, "batch_size": 4}
    data["generation"] = {"share_token_budgets": False}
    data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "VLM_SWEEP_FAULT_DIR": str(tmp_path / "faults"), "VLM_SWEEP_FAULT_SLEEP": "1.5",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "sweep.run", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, out


def _wait_for_a_finished_cell(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list((out / "cells").glob("*/costs.json")):
            return
        time.sleep(0.2)
    raise AssertionError(f"no cell finished (exit {proc.poll()})")


def _interrupt(coco: Path, tmp_path: Path, signals: list[int]) -> tuple[int, str, str, Path]:
    proc, out = _start(coco, tmp_path)
    try:
        _wait_for_a_finished_cell(proc, out)
        for i, sig in enumerate(signals):
            if i:
                time.sleep(1.0)
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    return proc.returncode, stdout, stderr, out


def _parent_status(out: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(client.search_experiments()[0].name)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.role = 'sweep'")
    assert len(runs) == 1
    return runs[0].info.status


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_is_a_clean_stop(coco_mini, tmp_path, sig, code):
    returncode, stdout, stderr, out = _interrupt(coco_mini, tmp_path, [sig])
    assert returncode == code, (stdout[-3000:], stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    results = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(results) == 4
    ok = results[results["status"] == "ok"]
    assert len(ok) >= 1
    name = signal.Signals(sig).name
    stopped = results[results["status"] != "ok"]
    assert len(stopped) >= 1
    assert all(r.startswith(f"interrupted by {name}") for r in stopped["reason"]), stopped["reason"].tolist()
    assert (out / "report.html").is_file()
    assert _parent_status(out) == "KILLED"
    assert f"{len(ok)} cells ok, {len(stopped)} failed of 4" in stdout


@pytest.mark.slow
def test_second_sigint_is_a_fast_consistent_stop(coco_mini, tmp_path):
    returncode, stdout, stderr, out = _interrupt(coco_mini, tmp_path, [signal.SIGINT, signal.SIGINT])
    assert returncode == 130, (stdout[-3000:], stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "SIGINT again: stopping now" in stderr
    # every finished cell is whole in the store (consolidated atomically): a re-run reads it back
    for costs in (out / "cells").glob("*/costs.json"):
        assert (costs.parent / "captions.parquet").is_file()
    assert _parent_status(out) == "KILLED"
