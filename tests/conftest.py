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
