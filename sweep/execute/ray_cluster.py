"""Ray for one sweep: join a cluster or start an embedded Ray (loopback only, logical GPUs on a machine
without CUDA), and give Ray's own settings back at the end."""

from __future__ import annotations

import logging
import math
import os
import sys

from sweep.grid.cells import Cell
from sweep.grid.config import GridConfig
from sweep.logs import route_library_logs

log = logging.getLogger(__name__)

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


#: set while this process's Ray was started by `init_ray` (so `shutdown_ray` stops only a Ray it started)
_started_ray: list[bool] = []


def init_ray(grid: GridConfig, cells: list[Cell], address: str | None, verbose: bool) -> str:
    """Join the cluster named by --address/$RAY_ADDRESS, else start an embedded Ray; a Ray this process
    already runs (started by a notebook, a benchmark or a test session) is used as it is and left running."""
    import ray

    route_library_logs()  # Ray's INFO lines ("Started a local Ray instance", Tune's) into sweep.log
    address = address or os.environ.get("RAY_ADDRESS")
    if not address and ray.is_initialized():
        gpus = ray.cluster_resources().get("GPU", 0)
        return f"the Ray already running in this process ({gpus:g} GPU{'s' * (gpus != 1)}, left running)"
    if address:
        _loopback_only(False)
        ray.init(address=address, log_to_driver=verbose)
        _started_ray.append(True)
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
    _started_ray.append(True)
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

    if _started_ray and ray.is_initialized():  # a Ray the sweep found running is its owner's to stop
        ray.shutdown()
    _started_ray.clear()
    _loopback_only(False)
