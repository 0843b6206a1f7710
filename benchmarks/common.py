"""What the benchmark sections share: paths and environment, the run's settings, machine facts, coco-mini
images, the engine grid and one timed engine run (read from the engine's own phase timings)."""

from __future__ import annotations

import importlib.metadata as md
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"
PROMPT = "Describe this image in one sentence."
COCO_IMAGES = 79  # images of coco-mini: what a sweep without --limit captions
#: The engine phases the benchmarks read (`SweepResult.phases`); a run that lacks one fails loudly.
PHASES = ("ray_start", "trials", "scoring", "mlflow", "report")

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Ray workers inherit the environment: the repo must be importable there too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


@dataclass
class Context:
    """One benchmark invocation's settings, and what sections hand on to later ones."""

    coco: Path
    work: Path  # temporary folder for engine output dirs, deleted at the end
    quick: bool
    repeats: int  # batching and GPU sections
    engine_repeats: int  # engine, re-run and scaling sections
    limit: int | None  # images per sweep
    failures: list[str] = field(default_factory=list)  # failed engine cells (label: reason)
    first_runs: list[Any] = field(default_factory=list)  # engine section's runs, which the re-run reads
    #: output dir -> (grid, run): the sweeps `run_engine_once` ran, which a later section may read
    runs: dict[Path, tuple[Any, EngineRun]] = field(default_factory=dict)


@dataclass
class EngineRun:
    wall: float
    phases: dict[str, float]
    results: Any  # pandas DataFrame, one row per cell


QUICKSTART_GRID = REPO / "search_spaces" / "quickstart_trained.yaml"


def quickstart_data(quick: bool = False) -> dict[str, Any]:
    """The quickstart grid as a dict, its repository-relative paths made absolute (a benchmark runs from
    anywhere); --quick: the small model at fp32 only."""
    data = yaml.safe_load(QUICKSTART_GRID.read_text())
    for key in ("captions", "images"):
        data["dataset"][key] = str(REPO / data["dataset"][key])
    for model in data["models"]:
        model["id"] = str(REPO / model["id"])
    if quick:
        data["models"], data["precisions"] = data["models"][:1], ["fp32"]
    return data


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def log(msg: str) -> None:
    print(msg, flush=True)


def coco_samples(coco: Path, limit: int | None = None) -> list[Any]:
    """coco-mini's samples as a sweep with this limit sees them (the first images, 224 px)."""
    from sweep.data.sources import load_coco_samples
    from sweep.grid.config import DatasetConfig

    return load_coco_samples(
        DatasetConfig(
            captions=coco / "captions_val2017.json",
            images=coco / "val2017",
            limit=limit,
            subset="first",
            image_max_side=224,
        )
    )


def decode_images(samples: list[Any], max_side: int) -> list[Any]:
    """PIL images, decoded and resized exactly as the engine's decode stage does."""
    from PIL import Image

    from sweep.execute.stages import DecodeImage

    decode = DecodeImage(max_side)
    return [Image.fromarray(decode({"sample_id": s.sample_id, "path": s.path})["image"]) for s in samples]


def load_images(coco: Path, n: int, max_side: int) -> list[Any]:
    """The first n coco-mini images (by image id), as the engine decodes them."""
    return decode_images(coco_samples(coco)[:n], max_side)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    versions = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "bitsandbytes", "accelerate", "ray", "mlflow", "pycocoevalcap",
                "pandas", "pillow", "vllm"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    try:
        commit, dirty = _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu or "none",
        "gpu_count": torch.cuda.device_count(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_1_5_15min": list(os.getloadavg()),
        "weights_random": True,
        "weights_note": "tiny:* models are random-weight test models (CPU sections); the GPU section uses "
        "dummy (random) weights at real size: speed/memory only, no quality",
    }


def machine_slug(info: dict[str, Any]) -> str:
    cpu = re.sub(r"[^a-z0-9]+", "-", info["cpu_model"].lower()).strip("-")[:40] or "cpu"
    gpu = (
        re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")[:30] if info["gpu"] != "none" else "nogpu"
    )
    return f"{cpu}-{info['cpu_cores']}c-{gpu}"


def make_grid(
    coco: Path,
    out: Path,
    models: list[str],
    precisions: list[str],
    tokens: list[int],
    limit: int | None,
    **resources: Any,
) -> Any:
    from sweep.grid.config import GridConfig

    return GridConfig.model_validate(
        {
            "name": "bench",
            "dataset": {
                "captions": str(coco / "captions_val2017.json"),
                "images": str(coco / "val2017"),
                "limit": limit,
                "subset": "first",
                "image_max_side": 224,
            },
            "models": [{"id": m} for m in models],
            "precisions": precisions,
            "max_new_tokens": tokens,
            "prompts": [PROMPT],
            "generation": {"num_beams": [1]},
            "backend": "hf",
            "resources": {"gpus_per_actor": 1, "replicas": 1, "batch_size": 8, **resources},
            "tracking": {"experiment": "bench"},
            "energy": {"country_iso_code": "USA"},
            "output_dir": str(out),
        }
    )


#: logical GPUs of the one Ray a --quick run shares: one, so that a sweep runs its cells one at a time and
#: every cell of a load reuses one model host (with two, a second trial of the same model starts a second
#: host: ~10 CPU-s of process start, torch import and load, for 8 images); the scaling section's two
#: replicas take half a GPU each
QUICK_RAY_GPUS = 1


def start_shared_ray() -> str:
    """--quick: one embedded Ray for every section instead of one per sweep (a sweep uses the Ray it finds
    running in its process and leaves it running). What it changes is in the result: the sections' Ray
    start reads about 0 s, and cells that a full run would time one at a time may run side by side."""
    import ray

    from sweep.execute.ray_cluster import _loopback_only

    _loopback_only(True)  # on loopback alone, as the embedded Ray a sweep starts
    ray.init(num_gpus=QUICK_RAY_GPUS, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    return (f"one embedded Ray with {QUICK_RAY_GPUS} logical GPU shared by every section (--quick): "
            "Ray start seconds read ~0, cells run one at a time")


def same_sweep(a: Any, b: Any) -> bool:
    """Two grids that run the same cells the same way: equal but for their output dirs and the embedded
    Ray's `local_gpus` (a Ray already running, as in --quick, is used as it is)."""
    def key(grid: Any) -> dict[str, Any]:
        data = grid.model_dump(mode="json", exclude={"output_dir"})
        data["resources"].pop("local_gpus", None)
        return data

    return key(a) == key(b)


def run_engine_once(ctx: Context, grid: Any) -> EngineRun:
    """`run_engine` into a fresh `grid.output_dir`; --quick: once per output dir in this invocation, a
    section that asks again for that dir (the halving section's full run is the token-budget section's
    shared run) gets the run already made, its store left in place. The grids must run the same sweep
    (checked)."""
    out = Path(grid.output_dir)
    if ctx.quick and out in ctx.runs:  # a full run runs every grid asked for, as before
        made, run = ctx.runs[out]
        if not same_sweep(made, grid):
            raise ValueError(f"two different grids asked for one run in {out}")
        log(f"  the run in {out.name} made by an earlier section: read, not run again")
        return run
    shutil.rmtree(out, ignore_errors=True)
    run = run_engine(ctx, grid)
    ctx.runs[out] = (grid, run)
    return run


def run_engine(ctx: Context, grid: Any) -> EngineRun:
    """One `run_sweep` in this process, as a user runs it: its wall time and its own phase timings.
    A failed cell is reported (ctx.failures), not fatal: the benchmark measures what ran."""
    from sweep.data.sources import dataset_fingerprint, load_coco_samples
    from sweep.engine import run_sweep
    from sweep.grid.cells import expand_cells

    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    start = time.perf_counter()
    result = run_sweep(grid, cells, samples)
    wall = time.perf_counter() - start
    missing = [p for p in PHASES if p not in result.phases]
    if missing:
        raise KeyError(f"the engine no longer reports phases {missing} (it reports {sorted(result.phases)})")
    results = result.results
    if result.exit_code != 0:
        failed = results[results["status"] != "ok"]
        ctx.failures.extend(f"{r['label']}: {r['reason']}" for _, r in failed.iterrows())
        log(f"  WARNING: run_sweep exited {result.exit_code}: {len(failed)} failed cells: "
            f"{ctx.failures[-len(failed):]}")
    return EngineRun(wall, dict(result.phases), results)
