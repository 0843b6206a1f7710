"""Issue 19, items 3, 11, 13: one sweep per output dir (a lock a dead holder does not keep), an output
dir that cannot be written is refused before anything starts (exit 2), and an embedded Ray listens on
loopback only."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import sweep.results.lock
from sweep.execute import ray_cluster as engine
from sweep.results.lock import LOCK_NAME, OutputDirError, SweepLockedError, check_output_dir, sweep_lock
from sweep.run import main

REPO = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from sweep.results.lock import sweep_lock
    with sweep_lock(Path(sys.argv[1]), "holder"):
        print("locked", flush=True)
        if sys.argv[2] == "die":
            os.kill(os.getpid(), signal.SIGKILL)  # no release: the OS must drop the lock
        sys.stdin.read()  # held until the test closes stdin
""")


def _grid(tmp_path: Path, out: Path) -> Path:
    grid = {
        "name": "lock_test",
        "dataset": {"captions": str(REPO / "zoo/shapes-data/test/captions.json"),
                    "images": str(REPO / "zoo/shapes-data/test/images"), "image_max_side": 64, "limit": 2},
        "models": [{"id": str(REPO / "zoo/shapes-llava-small"), "family": "llava"}],
        "precisions": ["fp32"],
        "max_new_tokens": [4],
        "output_dir": str(out),
        "energy": {"country_iso_code": "FRA"},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep.run", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def _holder(out: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), mode], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_sweep_on_the_same_output_dir_is_refused_naming_the_running_one(tmp_path):
    out = tmp_path / "out"
    with sweep_lock(out, "first") as lock:
        held = json.loads(lock.read_text())
        assert held["name"] == "first" and held["pid"] == os.getpid() and held["host"] and held["command"]
        message = (rf"output_dir {out} is in use by sweep 'first' \(pid {os.getpid()} on host .+ since .+\); "
                   "wait for it or use another output_dir")
        with pytest.raises(SweepLockedError, match=message):
            with sweep_lock(out, "second"):
                pass
    with sweep_lock(out, "third"):  # released at the end of the first
        pass

    holder = _holder(out, "hold")
    try:
        grid = _grid(tmp_path, out)
        refused = _cli(str(grid))
        assert refused.returncode == 2, refused.stderr
        assert f"is in use by sweep 'holder' (pid {holder.pid} on host" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (out / "cells").exists() and not (out / "samples.json").exists()  # nothing started
        dry = _cli(str(grid), "--dry-run")  # a dry run takes no lock
        assert dry.returncode == 0, dry.stdout + dry.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_the_lock_of_a_dead_holder_is_free(tmp_path):
    out = tmp_path / "out"
    holder = _holder(out, "die")
    assert holder.wait(timeout=30) == -9
    assert (out / LOCK_NAME).exists()
    with sweep_lock(out, "after"):
        pass


def test_an_output_dir_that_is_a_file_exits_2_before_starting(tmp_path):
    out = tmp_path / "results"
    out.write_text("not a folder")
    grid = _grid(tmp_path, out)
    for args in ([str(grid)], [str(grid), "--dry-run"]):
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert f"output_dir {out}: is a file" in proc.stderr
        assert "Traceback" not in proc.stderr
    inside = tmp_path / "results" / "sub"
    with pytest.raises(OutputDirError, match=f"output_dir {inside}: {out} is a file"):
        check_output_dir(inside)
    with pytest.raises(OutputDirError, match=f"output_dir {inside}: {out} is a file"):
        check_output_dir(inside, create=False)


def test_a_read_only_or_full_output_dir_exits_2_naming_the_path_and_the_reason(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    grid = _grid(tmp_path, out)
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):  # root writes anyway: the probe's refusal, simulated
            def refuse(path, *args, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

            monkeypatch.setattr(sweep.results.lock, "open", refuse, raising=False)
        for args in ([str(grid)], [str(grid), "--dry-run"]):
            assert main(args) == 2
            assert f"output_dir {out}: not writable (Permission denied)" in capsys.readouterr().err
        assert not list(out.iterdir())  # no probe left behind
    finally:
        out.chmod(0o700)

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(sweep.results.lock, "open", full, raising=False)
    with pytest.raises(OutputDirError, match=f"output_dir {out}: not writable \\(No space left on device\\)"):
        check_output_dir(out)


def test_authentication_is_disabled_only_for_the_loopback_embedded_ray(monkeypatch):
    import ray
    from ray._private import ray_constants

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append((kwargs, os.environ.get("RAY_AUTH_MODE"))))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"GPU": 2})
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)
    monkeypatch.setattr(engine, "_saved_cluster_setting", [])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    grid = SimpleNamespace(resources=SimpleNamespace(local_gpus=1))
    cells = [SimpleNamespace(gpus_per_actor=1, replicas=1)]

    engine.init_ray(grid, cells, "10.0.0.1:6379", False)
    kwargs, auth = calls.pop()
    assert kwargs["address"] == "10.0.0.1:6379" and auth is None  # a cluster keeps its own authentication

    engine.init_ray(grid, cells, None, False)
    kwargs, auth = calls.pop()
    assert kwargs["_node_ip_address"] == "127.0.0.1" and auth == "disabled"
    assert ray_constants.ENABLE_RAY_CLUSTER is False
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"

    monkeypatch.delenv("RAY_AUTH_MODE")
    engine.init_ray(grid, cells, "10.0.0.1:6379", False)  # joining a cluster afterwards: Ray's defaults back
    assert calls.pop()[1] is None
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ

    # the sweep's end gives Ray's settings back too: a later ray.cluster_utils.Cluster in the same process
    # (test_cluster after an embedded sweep) would otherwise start its nodes in single-node mode and hang
    cluster_default = ray_constants.ENABLE_RAY_CLUSTER
    engine.init_ray(grid, cells, None, False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    engine.shutdown_ray()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
    assert ray_constants.ENABLE_RAY_CLUSTER is cluster_default


PROBE = textwrap.dedent("""
    import json, os, sys, time
    from types import SimpleNamespace as NS
    import psutil, ray
    from sweep.engine import init_ray
    init_ray(NS(resources=NS(local_gpus=1)), [NS(gpus_per_actor=1, replicas=1)], None, False)

    @ray.remote
    def pid():
        return os.getpid()

    worker = ray.get(pid.remote())
    time.sleep(3)  # the agents' servers come up after the node
    session = ray._private.worker._global_node.get_session_dir_path()
    me = psutil.Process()
    pids = {me.pid, worker} | {c.pid for c in me.children(recursive=True)}
    for p in psutil.process_iter(["pid", "cmdline"]):
        if session in " ".join(p.info["cmdline"] or []):
            pids.add(p.pid)
    listening = []
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            try:
                name = psutil.Process(c.pid).name()
            except psutil.Error:
                name = "?"
            listening.append([c.laddr.ip, c.laddr.port, c.pid, name])
    print(json.dumps({"listening": listening, "worker": worker, "pids": sorted(pids)}))
    ray.shutdown()
""")


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


@pytest.mark.slow
def test_an_embedded_ray_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {name for _, _, _, name in report["listening"]}
    # the core processes and the agents were seen listening (the test looks at the right processes)
    assert {"gcs_server", "raylet"} <= names, report
    assert any("RuntimeEnvAgent" in n for n in names) and any("DashboardAgent" in n for n in names), report
    exposed = [entry for entry in report["listening"] if not _is_loopback(entry[0])]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
