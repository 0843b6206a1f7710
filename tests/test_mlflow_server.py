"""mlflow/server.sh: a shared tracking server that a sweep logs to over HTTP, stopped without leftovers."""

import os
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import grid_dict
from sweep_fixtures import fault_dir_fixture  # noqa: F401  (the fault_dir fixture)

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid

pytestmark = [pytest.mark.slow, pytest.mark.shared_ray]  # a tracking server and a sweep on Ray

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "mlflow" / "server.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server(cmd: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), cmd], env=env, capture_output=True, text=True, timeout=150)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sweep_logs_to_the_tracking_server_over_http(coco_mini, tmp_path, fault_dir):
    from mlflow.tracking import MlflowClient

    assert not (ROOT / "mlflow" / "__init__.py").exists()  # it would shadow the real mlflow package
    port = free_port()
    state = tmp_path / "server"
    env = {**os.environ, "MLFLOW_PORT": str(port), "MLFLOW_STATE_DIR": str(state)}
    env.pop("MLFLOW_HOST", None)
    t0 = time.perf_counter()
    started = server("start", env)
    assert started.returncode == 0, started.stdout + started.stderr
    t_start = time.perf_counter() - t0
    pgid = int((state / "server.pid").read_text())
    try:
        assert f"http://127.0.0.1:{port}" in started.stdout
        assert os.getpgid(pgid) == pgid  # the server leads its own process group
        listening = {c.laddr for p in psutil.Process(pgid).children(recursive=True) + [psutil.Process(pgid)]
                     for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        on_port = [addr for addr in listening if addr.port == port]
        assert on_port and all(addr.ip == "127.0.0.1" for addr in on_port), listening  # not 0.0.0.0
        assert server("status", env).returncode == 0
        assert "already running" in server("start", env).stdout  # idempotent

        uri = f"http://127.0.0.1:{port}"
        model = {"id": "count", "loader": "fault_models:counting"}
        data = grid_dict(coco_mini, tmp_path / "out", models=[model], max_new_tokens=[4, 8],
                         tracking={"uri": uri, "experiment": "server-sweep"})
        data["dataset"]["limit"] = 4
        data["resources"] = {"local_gpus": 2, "batch_size": 4}
        data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
        grid = parse_grid(data)
        samples = load_coco_samples(grid.dataset)
        cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
        t1 = time.perf_counter()
        info = run_sweep(grid, cells, samples)
        code = info.exit_code
        t_sweep = time.perf_counter() - t1
        assert code == 0, info.results[["label", "reason"]]
        assert info.tracker is not None and info.tracker.uri == uri

        client = MlflowClient(tracking_uri=uri)  # read back over HTTP
        exp = client.get_experiment_by_name("server-sweep")
        parent = client.get_run(info.tracker.parent_id)
        assert parent.info.status == "FINISHED" and parent.data.metrics["n_cells_ok"] == 2
        runs = client.search_runs([exp.experiment_id], filter_string="tags.role = 'cell'")
        assert len(runs) == 2
        assert {r.data.params["max_new_tokens"] for r in runs} == {"4", "8"}
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)
        assert all("cider" in r.data.metrics for r in runs)
        names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
        assert {"captions.parquet", "cell.json"} <= names
        assert (state / "mlflow.db").is_file()  # the server's own sqlite store holds them
    finally:
        t2 = time.perf_counter()
        stopped = server("stop", env)
        t_stop = time.perf_counter() - t2
    assert stopped.returncode == 0 and f"stopped: process group {pgid}" in stopped.stdout, stopped.stdout
    assert not group_alive(pgid)
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if any(str(state) in a for a in (p.info["cmdline"] or []))]
    assert not left, left
    assert not (state / "server.pid").exists()
    status = server("status", env)
    assert status.returncode == 3 and "not running" in status.stdout
    print(f"server start {t_start:.1f} s, sweep {t_sweep:.1f} s, stop {t_stop:.1f} s")
