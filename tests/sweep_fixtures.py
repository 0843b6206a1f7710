"""Test support for sweeps that share one Ray: the fault models' folder every Ray worker knows, and a Ray of
a test's own that several sweeps of that test use.

The stand-in models of tests/fault_models.py talk to the test through files under $VLM_SWEEP_FAULT_DIR,
read inside the Ray workers. A Ray's workers inherit the environment its `ray.init` ran with, so a test
that sets the variable per test (monkeypatch) needs a Ray started after that: one per sweep. Here the
folder is fixed for the whole session, set when this module is imported (at collection, before any test
starts a Ray: the shared Ray of tests/conftest.py included), and each test gets it emptied (`fault_dir`):
such tests can run on the shared Ray (`shared_ray`), one Ray start for all of them. A module takes the
fixture with `from sweep_fixtures import fault_dir_fixture  # noqa: F401` and asks for `fault_dir`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FAULT_DIR = Path(os.environ.setdefault("VLM_SWEEP_FAULT_DIR", tempfile.mkdtemp(prefix="vlm-faults-")))

_checked_rays: set[str] = set()  # the Rays whose workers were seen to know FAULT_DIR


def _workers_know_the_fault_dir() -> None:
    """A clear failure, not a KeyError inside a model host, when the running Ray was started without it."""
    import ray

    if not ray.is_initialized():
        return  # the sweep starts its own Ray, from this process's environment
    ray_id = ray.get_runtime_context().get_session_name()
    if ray_id in _checked_rays:
        return
    seen = ray.get(ray.remote(num_cpus=0)(lambda: os.environ.get("VLM_SWEEP_FAULT_DIR")).remote())
    assert seen == str(FAULT_DIR), (f"the running Ray's workers see VLM_SWEEP_FAULT_DIR={seen!r}, not "
                                    f"{FAULT_DIR}: it started before tests/sweep_fixtures.py was imported")
    _checked_rays.add(ray_id)


@pytest.fixture(name="fault_dir")
def fault_dir_fixture() -> Iterator[Path]:
    """The fault models' folder, emptied for this test: calls.log, loads.log and markers are this test's."""
    assert os.environ.get("VLM_SWEEP_FAULT_DIR") == str(FAULT_DIR), "VLM_SWEEP_FAULT_DIR was changed"
    shutil.rmtree(FAULT_DIR, ignore_errors=True)
    FAULT_DIR.mkdir(parents=True)
    _workers_know_the_fault_dir()
    yield FAULT_DIR


@contextmanager
def own_ray(gpus: int, **env: str) -> Iterator[None]:
    """A Ray for the sweeps of one test, started as the embedded Ray of a sweep is (loopback only, `gpus`
    logical GPUs) after `env` is set for its workers; stopped, and `env` given back, at the end. The
    sweeps inside use it and leave it running (sweep.execute.ray_cluster.init_ray): one start, not one per
    sweep. Not for a test that asserts on a sweep's own Ray start."""
    import ray

    from sweep.execute.ray_cluster import _loopback_only

    assert not ray.is_initialized(), "a Ray is already running in this process"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _loopback_only(True)
    try:
        ray.init(num_gpus=gpus, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        yield
    finally:
        ray.shutdown()
        _loopback_only(False)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
