"""A sweep uses the Ray its process already runs and leaves it running; a Ray it started, it stops.

(The quick benchmark and the `shared_ray` tests share one Ray between sweeps this way: one start, not one
per sweep.)"""
from types import SimpleNamespace

import pytest

from sweep.execute import ray_cluster as engine

GRID = SimpleNamespace(resources=SimpleNamespace(local_gpus=None))
CELLS = [SimpleNamespace(gpus_per_actor=1, replicas=1)]


@pytest.fixture
def fake_ray(monkeypatch):
    import ray

    state = {"initialized": False, "inits": [], "shutdowns": 0}

    def init(**kwargs):
        state["inits"].append(kwargs)
        state["initialized"] = True

    def shutdown():
        state["shutdowns"] += 1
        state["initialized"] = False

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setattr(ray, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"GPU": 2.0})
    monkeypatch.setattr(engine, "_started_ray", [])
    monkeypatch.setattr(engine, "_saved_cluster_setting", [])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return state


def test_a_running_ray_is_used_and_left_running(fake_ray):
    fake_ray["initialized"] = True  # started by the caller: a notebook, the benchmark, a test session
    where = engine.init_ray(GRID, CELLS, None, False)
    assert fake_ray["inits"] == []
    assert where == "the Ray already running in this process (2 GPUs, left running)"
    engine.shutdown_ray()
    assert fake_ray["shutdowns"] == 0 and fake_ray["initialized"]
    engine.shutdown_ray()  # a sweep whose every cell was stored never called init_ray: still left alone
    assert fake_ray["shutdowns"] == 0


def test_a_ray_the_sweep_started_is_stopped_at_its_end(fake_ray):
    where = engine.init_ray(GRID, CELLS, None, False)
    assert len(fake_ray["inits"]) == 1 and where.startswith("embedded Ray with 2 logical GPUs")
    engine.shutdown_ray()
    assert fake_ray["shutdowns"] == 1 and not fake_ray["initialized"]
    engine.init_ray(GRID, CELLS, "10.0.0.1:6379", False)  # a cluster it joined: disconnected at its end
    engine.shutdown_ray()
    assert fake_ray["shutdowns"] == 2
