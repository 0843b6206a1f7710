import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# Ray workers inherit the environment: make tests/fault_models.py importable in actors.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_TESTS, os.environ.get("PYTHONPATH")]))

COCO_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"
COCO_VAL2017_CAPTIONS = (Path(__file__).resolve().parents[1].parent / "shared" / "data"
                         / "coco-val2017-captions" / "captions_val2017.json")


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    if not (COCO_MINI / "captions_val2017.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"coco-mini is missing at {COCO_MINI}; CI must have ../shared beside the checkout")
        pytest.skip(f"coco-mini not found at {COCO_MINI} (../shared is absent)")
    return COCO_MINI


@pytest.fixture(scope="session")
def coco_val2017_captions() -> Path:
    """The full COCO val2017 captions file (5,000 images, 25,014 references)."""
    if not COCO_VAL2017_CAPTIONS.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"COCO val2017 captions are missing at {COCO_VAL2017_CAPTIONS}; CI must have "
                        "../shared beside the checkout")
        pytest.skip(f"COCO val2017 captions not found at {COCO_VAL2017_CAPTIONS} (../shared is absent)")
    return COCO_VAL2017_CAPTIONS


@pytest.fixture(scope="session", autouse=True)
def tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models are built once per test session, in a folder Ray workers also see (env inherited)."""
    cache = Path(os.environ.get("VLM_SWEEP_TEST_CACHE") or tmp_path_factory.mktemp("vlm-cache"))
    os.environ["VLM_SWEEP_CACHE"] = str(cache)
    return cache


def ray_processes(marker: str) -> list:
    """Processes of the Ray started with --temp-dir=<marker> (or RAY_TMPDIR=<marker>): every one of them
    names its session dir. Stopping these, not `ray stop`, stops one Ray: `ray stop` stops every Ray of this
    user on the machine, other sessions' and other checkouts' included."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def grid_dict(coco: Path, out: Path, **overrides) -> dict:
    grid = {
        "name": "test",
        "dataset": {
            "captions": str(coco / "captions_val2017.json"),
            "images": str(coco / "val2017"),
            "image_max_side": 128,
        },
        "models": [{"id": "tiny:llava"}],
        "precisions": ["fp32"],
        "max_new_tokens": [4],
        "output_dir": str(out),
        "energy": {"country_iso_code": "FRA"},
    }
    grid.update(overrides)
    return grid


# One Ray for the tests marked `shared_ray`: a sweep uses the Ray it finds running in its process and leaves
# it running (sweep.execute.ray_cluster.init_ray), so consecutive sweeps of such tests pay one Ray start.
# Only tests whose grids would start exactly this Ray (`resources.local_gpus: 2`, nothing per test in the
# workers' environment, no assertion on Ray's own start or stop) are marked. Every other test gets the Ray
# of its own sweep, as a user does: the shared one is stopped before it (its module fixtures included).
SHARED_RAY_GPUS = 2
_shared_ray: dict[str, bool] = {"on": False}


def _use_shared_ray(want: bool) -> None:
    if want and not _shared_ray["on"]:
        import ray

        from sweep.execute.ray_cluster import _loopback_only

        if not ray.is_initialized():
            _loopback_only(True)  # on loopback alone, as the embedded Ray a sweep starts
            ray.init(num_gpus=SHARED_RAY_GPUS, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
            _shared_ray["on"] = True
    elif not want and _shared_ray["on"]:
        import ray

        from sweep.execute.ray_cluster import _loopback_only

        ray.shutdown()
        _loopback_only(False)  # Ray's own settings back (a later Cluster must not start in loopback mode)
        _shared_ray["on"] = False


@pytest.fixture(scope="module", autouse=True)
def _ray_of_the_module(request: pytest.FixtureRequest):
    """Before a module's own fixtures: the shared Ray if the module is marked, else none running."""
    _use_shared_ray(request.node.get_closest_marker("shared_ray") is not None)
    yield


@pytest.fixture(autouse=True)
def _ray_of_the_test(request: pytest.FixtureRequest):
    _use_shared_ray(request.node.get_closest_marker("shared_ray") is not None)
    yield


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Modules in the order that keeps the suite short, each module's tests together and in their order:
    first the `heavy` modules (minutes each), then the modules with `shared_ray` tests (one after another
    they keep the shared Ray running: a module in between that is not marked stops it), then the other
    modules with `slow` tests, then the rest. Under the README's command (`-n 2 --dist loadfile
    --no-loadscope-reorder`) the two workers take whole modules in this order (xdist's default reorders
    them by test count, which put the one-test quick benchmark last): the long ones start first and the
    short ones fill the end, so both workers finish together."""
    def rank(item: pytest.Item) -> int:
        markers = {m.name for it in by_module[getattr(item, "module", None)] for m in it.iter_markers()}
        return 0 if "heavy" in markers else 1 if "shared_ray" in markers else 2 if "slow" in markers else 3

    by_module: dict[object, list[pytest.Item]] = {}
    for item in items:
        by_module.setdefault(getattr(item, "module", None), []).append(item)
    first_seen = {module: i for i, module in enumerate(by_module)}
    items.sort(key=lambda it: (rank(it), first_seen[getattr(it, "module", None)]))


def pytest_sessionfinish(session: pytest.Session) -> None:
    _use_shared_ray(False)
