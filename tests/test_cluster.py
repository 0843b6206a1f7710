"""From one GPU to a 4xL4 Ray cluster: the launcher config, a sweep spread over 4 nodes, `ray job submit`."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import grid_dict, ray_processes

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.store import ResultStore

pytestmark = pytest.mark.heavy  # minutes of CPU in all: started first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_cluster_yaml_validates():
    """cluster.yaml passes the cluster launcher's own JSON-schema validation (no cloud access)."""
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(config)  # raises ValueError/jsonschema.ValidationError when invalid
    workers = config["available_node_types"]["l4_worker"]
    assert workers["min_workers"] == workers["max_workers"] == 4
    assert workers["resources"]["GPU"] == 1 and workers["resources"]["L4"] == 1
    assert workers["node_config"]["machineType"] == "g2-standard-8"
    assert config["available_node_types"]["head"]["resources"].get("GPU", 0) == 0
    assert any("pip install" in c and "-e ." in c for c in config["setup_commands"])
    assert config["file_mounts"]["~/vlm-sweep"] == "."  # the repository, at the same path on every node
    assert "~/.ray/auth_token" in config["file_mounts"]  # one Ray auth token for the laptop and all nodes
    assert ".venv" in config["rsync_exclude"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-port=8265" in head_start and "mlflow/server.sh start" in head_start
    # a broken config is refused by the same check
    broken = {**config, "available_node_types": {**config["available_node_types"], "l4_worker": {
        **workers, "min_workers": "four"}}}
    with pytest.raises(Exception, match="four"):
        validate_config(broken)


def short_tmp(prefix: str) -> Path:
    # Ray's socket paths must stay under ~107 characters: pytest's tmp_path is too long
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a 4-node Ray cluster
def test_sweep_spreads_cells_over_four_l4_nodes(coco_mini, tmp_path, monkeypatch):
    """4 cells of 4 models on a head + 4 single-L4 nodes: each model's host lands on its own L4 node."""
    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    ray_tmp = short_tmp("rcl")
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    # node processes inherit the environment: the stand-in model and its sleep (each load holds its L4
    # while its cell runs and while it idles in the pool, so the next model's load takes another node)
    monkeypatch.setenv("VLM_SWEEP_FAULT_DIR", str(tmp_path / "faults"))
    monkeypatch.setenv("VLM_SWEEP_FAULT_SLEEP", "0.5")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start = time.perf_counter()
    # a free dashboard port: the default 8265 may belong to another Ray on this machine
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "num_gpus": 0, "dashboard_port": free_port()})
    try:
        # what Ray reports on a real g2-standard-8: 1 GPU, "accelerator_type:L4"; plus our "L4" label
        workers = [cluster.add_node(num_cpus=1, num_gpus=1, resources={"L4": 1, "accelerator_type:L4": 1})
                   for _ in range(4)]
        cluster.wait_for_nodes()
        worker_ids = {n.node_id for n in workers}
        # four models: four loads, one per L4 (cells of one model would share one loaded copy)
        models = [{"id": f"slow-model-{i}", "loader": "fault_models:slow"} for i in range(4)]
        data = grid_dict(coco_mini, tmp_path / "out", models=models, max_new_tokens=[4])
        data["dataset"]["limit"] = 8
        data["resources"] = {"batch_size": 4, "accelerator_type": "L4"}
        data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
        grid = parse_grid(data)
        samples = load_coco_samples(grid.dataset)
        cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
        assert len(cells) == 4
        info = run_sweep(grid, cells, samples, address=cluster.address)
        code = info.exit_code
        assert code == 0, info.results[["label", "reason"]]
        print(f"4-cell sweep on a 5-node cluster: {time.perf_counter() - start:.1f} s")
    finally:
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    store = ResultStore(info.output_dir)
    nodes_per_cell = {}
    for cell in cells:
        table = store.read_captions(cell.cell_id)
        assert len(table) == 8
        nodes_per_cell[cell.cell_id] = set(table["node_id"])
    assert all(len(n) == 1 for n in nodes_per_cell.values()), nodes_per_cell  # one replica per cell
    used = set().union(*nodes_per_cell.values())
    assert len(used) == 4 and used <= worker_ids, (used, worker_ids)  # 4 different L4 nodes, never the head

    # all four child runs in one MLflow store, each naming the node it ran on
    tracker = info.tracker
    client = MlflowClient(tracking_uri=tracker.uri)
    runs = client.search_runs([tracker.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_id}'")
    assert len(runs) == 4
    assert {r.data.params["node_ids"] for r in runs} == used
    assert {r.data.tags["cell_id"] for r in runs} == set(nodes_per_cell)


def stop_own_ray(temp_dir: Path, pgid: int) -> None:
    """Stop only the Ray this test started. `ray stop` would stop every Ray of this user on the machine
    (other sessions' too), and `ray stop` has no option to pick one. `ray start` ran in a new session, and
    every process it starts (GCS, raylet, dashboard and its modules, agents, workers, the job driver) stays
    in that process group: signal the group, and, belt and braces, whatever names our --temp-dir."""
    procs = ray_processes(str(temp_dir))
    procs += [c for p in list(procs) for c in _children(p)]
    _signal_group(pgid, signal.SIGTERM)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    _signal_group(pgid, signal.SIGKILL)  # gcs_server can ignore SIGTERM for a while
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow  # a Ray cluster and ray job submit
def test_ray_job_submit_runs_a_sweep_on_a_started_cluster(coco_mini, tmp_path):
    """`ray start --head` + `ray job submit --working-dir . -- python -m sweep.run grid.yaml`."""
    from mlflow.tracking import MlflowClient

    temp_dir = short_tmp("rjs")
    port, dash = free_port(), free_port()
    out = (tmp_path / "out").resolve()
    uri = f"sqlite:///{out / 'mlflow.db'}"
    data = grid_dict(coco_mini, out, models=[{"id": "count-model", "loader": "fault_models:counting"}],
                     max_new_tokens=[4, 8], tracking={"uri": uri, "experiment": "job-sweep"})
    data["dataset"]["limit"] = 4
    data["resources"] = {"batch_size": 4}
    data["energy"] = {"enabled": False}
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(yaml.safe_dump(data))

    # The cluster starts WITHOUT the test's PYTHONPATH or fault dir: the job's runtime env brings them.
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VLM_SWEEP_FAULT_DIR", "RAY_ADDRESS", "RAY_TMPDIR"}}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    start_cmd = [
        str(BIN / "ray"), "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
        "--num-cpus=2", "--num-gpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
    ]
    t0 = time.perf_counter()
    starter = subprocess.Popen(start_cmd, env=env, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgid = starter.pid  # start_new_session: the group id of everything this Ray starts
    try:
        started = starter.communicate(timeout=120)[0]
        assert starter.returncode == 0, started
        t_start = time.perf_counter() - t0
        job_env = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dash}"}
        runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT / "tests"),
                                    "VLM_SWEEP_FAULT_DIR": str(tmp_path / "faults")}}
        submit = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--working-dir", ".", "--submission-id", "sweep-job-1",
             "--runtime-env-json", json.dumps(runtime_env), "--",
             "python", "-m", "sweep.run", str(grid_path)],
            env=job_env, cwd=ROOT, capture_output=True, text=True, timeout=480,
        )
        logs = submit.stdout + submit.stderr
        (tmp_path / "job.log").write_text(logs)
        from ray.job_submission import JobStatus, JobSubmissionClient

        status = JobSubmissionClient(f"http://127.0.0.1:{dash}").get_job_status("sweep-job-1")
        assert status == JobStatus.SUCCEEDED, logs[-4000:]
        assert "sweep 'test': 2 cells x 4 images on Ray cluster at" in logs, logs[-4000:]
        # the upload honoured .gitignore: the job ran from a copy of the repository without .venv
        assert "Uploading package gcs://" in logs and "'.venv' is now ignored" in logs, logs[-2000:]
        t_job = time.perf_counter() - t0 - t_start
        print(f"ray start {t_start:.1f} s, job submit -> SUCCEEDED {t_job:.1f} s")
    finally:
        stop_own_ray(temp_dir, pgid)
        left = ray_processes(str(temp_dir))
        deadline = time.time() + 10  # killed processes are reaped by init
        while _signal_group(pgid, 0) and time.time() < deadline:
            time.sleep(0.2)
        group_left = _signal_group(pgid, 0)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, [p.pid for p in left]
    assert not group_left, "processes of our Ray's process group are left"

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("job-sweep")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.role = 'cell'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["max_new_tokens"] for r in runs} == {"4", "8"}
    assert all(r.data.params["loader"] == "fault_models:counting" for r in runs)
    assert (tmp_path / "faults" / "calls.log").is_file()  # the actors saw the runtime env's fault dir
