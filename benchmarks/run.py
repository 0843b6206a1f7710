"""Benchmarks of the sweep engine: batching, engine overhead, re-run, replica sharding, GPU throughput.

    python benchmarks/run.py [--quick] [--repeats N] [--sections batching,engine,rerun,scaling,gpu]

Prints every number (medians over repeats) and writes benchmarks/results/<date>-<machine>.json and .md
(or under --out-dir). See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"
PROMPT = "Describe this image in one sentence."
SECTIONS = ("batching", "engine", "rerun", "scaling", "gpu")
FAILURES: list[str] = []  # failed engine cells (label: reason), reported in the result

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


# ---------------------------------------------------------------------------------------------- helpers


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def log(msg: str) -> None:
    print(msg, flush=True)


def load_images(coco: Path, n: int, max_side: int) -> list[Any]:
    """The first n coco-mini images, decoded and resized exactly as the engine's decode stage does."""
    from PIL import Image

    from sweep.config import DatasetConfig
    from sweep.data import load_coco_samples
    from sweep.stages import DecodeImage

    samples = load_coco_samples(
        DatasetConfig(captions=coco / "captions_val2017.json", images=coco / "val2017")
    )
    decode = DecodeImage(max_side)
    out = []
    for s in samples[:n]:
        row = decode({"sample_id": s.sample_id, "path": s.path})
        out.append(Image.fromarray(row["image"]))
    return out


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
    for pkg in (
        "torch",
        "transformers",
        "bitsandbytes",
        "accelerate",
        "ray",
        "mlflow",
        "pycocoevalcap",
        "pandas",
        "pillow",
        "vllm",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
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


# --------------------------------------------------------------------------------------- 1. batching


def per_image_loop(path: str, images: list[Any], max_new_tokens: int) -> Callable[[], float]:
    """A user's notebook: load once with plain transformers, then caption one image at a time."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)

    def run() -> float:
        start = time.perf_counter()
        for img in images:
            inputs = processor(text=text, images=img, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False
                )
            processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return time.perf_counter() - start

    return run


def engine_batches(
    captioner: Any, images: list[Any], batch_size: int, max_new_tokens: int
) -> Callable[[], float]:
    from actors.base import CaptionRequest

    kwargs = {
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
    }

    def run() -> float:
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            results = captioner.generate(
                [CaptionRequest(str(i + j), [img], PROMPT) for j, img in enumerate(chunk)], kwargs
            )
            assert all(r.generated_tokens == max_new_tokens for r in results), "lengths differ"
        return time.perf_counter() - start

    return run


def bench_batching(
    coco: Path, n_images: int, repeats: int, batch_sizes: list[int], max_new_tokens: int
) -> dict[str, Any]:
    from actors.backends import make_captioner
    from actors.resolve import resolve_model

    images = load_images(coco, n_images, 224)
    path, _ = resolve_model("tiny:llava")
    loop = per_image_loop(path, images[:2], max_new_tokens)
    loop()  # warm-up
    loop = per_image_loop(path, images, max_new_tokens)
    captioner = make_captioner("tiny:llava", None, None, False, "fp32", "hf")
    runners = {bs: engine_batches(captioner, images, bs, max_new_tokens) for bs in batch_sizes}
    runners[batch_sizes[-1]]()  # warm-up
    times: dict[str, list[float]] = {"loop": []} | {str(bs): [] for bs in batch_sizes}
    for r in range(repeats):  # interleaved, so a noisy neighbour hits every variant alike
        times["loop"].append(loop())
        for bs in batch_sizes:
            times[str(bs)].append(runners[bs]())
        log(
            f"  batching repeat {r + 1}/{repeats}: "
            + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
        )
    loop_ips = n_images / median(times["loop"])
    rows = []
    for bs in batch_sizes:
        ips = n_images / median(times[str(bs)])
        # per-repeat ratios (side by side), then their median
        ratios = [lt / bt for lt, bt in zip(times["loop"], times[str(bs)], strict=True)]
        rows.append(
            {
                "batch_size": bs,
                "seconds_median": median(times[str(bs)]),
                "images_per_sec": ips,
                "tokens_per_sec": ips * max_new_tokens,
                "ratio_vs_loop": median(ratios),
            }
        )
    del captioner
    gc.collect()
    return {
        "model": "tiny:llava",
        "precision": "fp32",
        "n_images": n_images,
        "image_max_side": 224,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "repeats": repeats,
        "loop_seconds_median": median(times["loop"]),
        "loop_images_per_sec": loop_ips,
        "batches": rows,
        "raw_seconds": times,
        "target": "batch 8 >= 3x the per-image loop",
        "target_met": next(r["ratio_vs_loop"] for r in rows if r["batch_size"] == 8) >= 3
        if 8 in batch_sizes
        else None,
    }


# ------------------------------------------------------------------------------ 2-4. engine sections


class Timers:
    """Wall time of engine functions called in this (driver) process, by monkeypatching them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, key: str) -> None:
        original = getattr(owner, attr)
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.seconds[key] = timers.seconds.get(key, 0.0) + time.perf_counter() - start
                timers.calls[key] = timers.calls.get(key, 0) + 1

        self._undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


@contextmanager
def engine_timers():
    import sweep.report
    import sweep.run
    import sweep.trials
    from sweep.recorder import SweepRecorder
    from sweep.tracking import SweepTracker

    timers = Timers()
    timers.wrap(sweep.run, "init_ray", "ray_start")
    timers.wrap(sweep.trials, "run_trials", "trials")
    timers.wrap(SweepRecorder, "score", "scoring")
    for attr in ("__init__", "log_cell", "log_parent", "finish", "find_cell_run"):
        timers.wrap(SweepTracker, attr, "mlflow")
    timers.wrap(sweep.report, "plot_fronts", "report")
    timers.wrap(sweep.report, "write_html_report", "report")
    try:
        yield timers
    finally:
        timers.restore()


def make_grid(
    coco: Path,
    out: Path,
    models: list[str],
    precisions: list[str],
    tokens: list[int],
    limit: int | None,
    **resources: Any,
) -> Any:
    from sweep.config import GridConfig

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


def timed_sweep(grid: Any) -> tuple[float, dict[str, float], Any]:
    from sweep.cells import expand_cells
    from sweep.data import dataset_fingerprint, load_coco_samples
    from sweep.run import run_sweep

    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    with engine_timers() as timers:
        start = time.perf_counter()
        code, info = run_sweep(grid, cells, samples)
        wall = time.perf_counter() - start
    results = info["results"]
    if code != 0:  # a failed cell is reported, not fatal: the benchmark measures what ran
        failed = results[results["status"] != "ok"]
        FAILURES.extend(f"{r['label']}: {r['reason']}" for _, r in failed.iterrows())
        log(f"  WARNING: run_sweep exited {code}: {len(failed)} failed cells: {FAILURES[-len(failed) :]}")
    return wall, dict(timers.seconds), results


def engine_split(wall: float, timers: dict[str, float], results: Any) -> dict[str, Any]:
    results = results[results["status"] == "ok"]
    n_ok = results["n_samples"] - results["n_errors"]
    # a cell whose model an earlier cell loaded reports that load: count each load once
    fresh = results[results["model_reused"] == 0] if "model_reused" in results else results
    load = float((fresh["load_seconds"] * fresh["n_actors"]).sum())
    generation = float((n_ok / results["images_per_sec"]).sum())
    cell_wall = float(results["cell_wall_seconds"].sum())
    trials = timers.get("trials", 0.0)
    return {
        "wall_seconds": wall,
        "ray_start_seconds": timers.get("ray_start", 0.0),
        "trials_seconds": trials,
        "model_load_seconds_sum": load,
        "model_loads": int(len(fresh)),
        "cells": int(len(results)),
        "generation_seconds_sum": generation,
        "cell_wall_seconds_sum": cell_wall,
        "pipeline_overhead_seconds_sum": cell_wall - generation,
        "scoring_seconds": timers.get("scoring", 0.0),
        "mlflow_seconds": timers.get("mlflow", 0.0),
        "report_plots_seconds": timers.get("report", 0.0),
        # MLflow parent run, results.csv, the table: what the driver does outside Ray start, trials, report
        "driver_other_seconds": wall - timers.get("ray_start", 0.0) - trials - timers.get("report", 0.0),
    }


def sequential_baseline(
    coco: Path, models: list[str], precisions: list[str], tokens: list[int], limit: int | None
) -> tuple[float, dict[str, float]]:
    """The same cells by hand: load, caption batched at 8, score with CaptionScorer, unload."""
    from PIL import Image

    from actors.backends import make_captioner
    from actors.base import CaptionRequest
    from actors.stage import effective_generation
    from sweep.config import DatasetConfig
    from sweep.data import load_coco_samples
    from sweep.scoring import CaptionScorer
    from sweep.stages import DecodeImage

    split = {"decode": 0.0, "load": 0.0, "generation": 0.0, "scoring": 0.0}
    start = time.perf_counter()
    t = time.perf_counter()
    samples = load_coco_samples(
        DatasetConfig(
            captions=coco / "captions_val2017.json",
            images=coco / "val2017",
            limit=limit,
            subset="first",
            image_max_side=224,
        )
    )
    decode = DecodeImage(224)
    images = [Image.fromarray(decode({"sample_id": s.sample_id, "path": s.path})["image"]) for s in samples]
    refs = {s.sample_id: list(s.references) for s in samples}
    split["decode"] += time.perf_counter() - t
    with CaptionScorer() as scorer:
        for model in models:
            for precision in precisions:
                t = time.perf_counter()
                captioner = make_captioner(model, None, None, False, precision, "hf")
                split["load"] += time.perf_counter() - t
                for max_new in tokens:
                    t = time.perf_counter()
                    kwargs = effective_generation(
                        captioner.family.generation_defaults,
                        {"max_new_tokens": max_new, "num_beams": 1, "do_sample": False},
                    )
                    captions = {}
                    for i in range(0, len(samples), 8):
                        reqs = [
                            CaptionRequest(s.sample_id, [img], PROMPT)
                            for s, img in zip(samples[i : i + 8], images[i : i + 8], strict=True)
                        ]
                        for req, res in zip(reqs, captioner.generate(reqs, kwargs), strict=True):
                            captions[req.sample_id] = res.caption
                    split["generation"] += time.perf_counter() - t
                    t = time.perf_counter()
                    scorer.score(captions, refs)
                    split["scoring"] += time.perf_counter() - t
                del captioner
                gc.collect()
    return time.perf_counter() - start, split


def bench_engine(
    coco: Path,
    work: Path,
    limit: int | None,
    repeats: int,
    models: list[str],
    precisions: list[str],
    tokens: list[int],
    rerun_repeats: int,
    do_rerun: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    engine_runs, base_runs, base_splits, rerun_walls, splits = [], [], [], [], []
    for r in range(repeats):
        out = work / f"engine-{r}"
        shutil.rmtree(out, ignore_errors=True)
        grid = make_grid(coco, out, models, precisions, tokens, limit, local_gpus=2)
        wall, timers, results = timed_sweep(grid)
        engine_runs.append(wall)
        splits.append(engine_split(wall, timers, results))
        log(f"  engine repeat {r + 1}/{repeats}: {wall:.1f}s (Ray start {timers.get('ray_start', 0):.1f}s)")
        b_wall, b_split = sequential_baseline(coco, models, precisions, tokens, limit)
        base_runs.append(b_wall)
        base_splits.append(b_split)
        log(f"  sequential script repeat {r + 1}/{repeats}: {b_wall:.1f}s")
        if do_rerun:
            for _ in range(rerun_repeats):
                rwall, _rt, _rr = timed_sweep(grid)
                rerun_walls.append(rwall / wall)
                log(f"  re-run of the finished grid: {rwall:.2f}s ({rwall / wall:.3f} of the first run)")
    keys = splits[0].keys()
    split = {k: median([s[k] for s in splits]) for k in keys}
    engine = {
        "grid": {
            "models": models,
            "precisions": precisions,
            "max_new_tokens": tokens,
            "batch_size": 8,
            "images": limit or 79,
            "local_gpus": 2,
            "cells": len(models) * len(precisions) * len(tokens),
        },
        "repeats": repeats,
        "engine_wall_seconds": median(engine_runs),
        "sequential_wall_seconds": median(base_runs),
        "ratio_engine_vs_sequential": median([e / b for e, b in zip(engine_runs, base_runs, strict=True)]),
        "ratio_engine_without_ray_start_vs_sequential": median(
            [(e - s["ray_start_seconds"]) / b for e, s, b in zip(engine_runs, splits, base_runs, strict=True)]
        ),
        "engine_split": split,
        "sequential_split": {k: median([s[k] for s in base_splits]) for k in base_splits[0]},
        "raw": {"engine": engine_runs, "sequential": base_runs},
    }
    rerun = None
    if do_rerun:
        rerun = {
            "ratio_rerun_vs_first": median(rerun_walls),
            "first_wall_seconds": median(engine_runs),
            "rerun_wall_seconds": median(rerun_walls) * median(engine_runs),
            "repeats": len(rerun_walls),
            "raw_ratios": rerun_walls,
            "target": "<= 0.1",
            "target_met": median(rerun_walls) <= 0.1,
        }
    return engine, rerun


def bench_scaling(
    coco: Path, work: Path, limit: int | None, repeats: int, replicas: list[int], max_new_tokens: int
) -> dict[str, Any]:
    walls: dict[int, list[float]] = {n: [] for n in replicas}
    ips: dict[int, list[float]] = {n: [] for n in replicas}
    cell_walls: dict[int, list[float]] = {n: [] for n in replicas}
    ray_starts: dict[int, list[float]] = {n: [] for n in replicas}
    for r in range(repeats):
        for n in replicas:
            out = work / f"scaling-{n}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            grid = make_grid(
                coco, out, ["tiny:llava"], ["fp32"], [max_new_tokens], limit, local_gpus=4, replicas=n
            )
            wall, timers, results = timed_sweep(grid)
            walls[n].append(wall)
            ips[n].append(float(results["images_per_sec"].iloc[0]))
            cell_walls[n].append(float(results["cell_wall_seconds"].iloc[0]))
            ray_starts[n].append(timers.get("ray_start", 0.0))
            log(
                f"  scaling replicas={n} repeat {r + 1}/{repeats}: {wall:.1f}s, "
                f"cell {cell_walls[n][-1]:.1f}s, "
                f"{ips[n][-1]:.1f} img/s"
            )
    n_images = limit or 79
    return {
        "cell": f"tiny:llava/fp32/t{max_new_tokens}",
        "images": n_images,
        "local_gpus": 4,
        "repeats": repeats,
        "note": "CPU only: replicas share 2 cores, so this checks sharding overhead, not speed-up",
        "rows": [
            {
                "replicas": n,
                "wall_seconds": median(walls[n]),
                "ray_start_seconds": median(ray_starts[n]),
                "cell_wall_seconds": median(cell_walls[n]),
                "cell_images_per_sec": n_images / median(cell_walls[n]),
                "generation_images_per_sec": median(ips[n]),
            }
            for n in replicas
        ],
    }


# ------------------------------------------------------------------------------------------- 5. GPU

GPU_MODELS = {  # ~2B and ~7B architectures; only config.json is needed (weights: dummy)
    "qwen2_vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf",
}


def bench_gpu(
    coco: Path,
    n_images: int,
    repeats: int,
    batch_sizes: list[int],
    precisions: list[str],
    max_new_tokens: int,
    models: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Dummy (random, real-size) weights: only each model's config.json is read, from the HF cache or the
    hub (run with HF_HUB_OFFLINE=0 where the configs are not cached), or from a local folder."""
    import torch

    if not torch.cuda.is_available():
        log("  no GPU: skipped")
        return {"skipped": "no GPU"}
    from actors.backends import make_captioner

    images = load_images(coco, max(n_images, max(batch_sizes)), 448)
    rows = []
    for name, model_id in (models or GPU_MODELS).items():
        for precision in precisions:
            try:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                captioner = make_captioner(model_id, None, None, False, precision, "hf", weights_mode="dummy")
            except Exception as err:  # e.g. config.json not reachable offline, bitsandbytes missing
                rows.append({"model": name, "precision": precision, "error": f"{type(err).__name__}: {err}"})
                log(f"  {name} {precision}: load failed: {err}")
                continue
            for bs in batch_sizes:
                runner = engine_batches(captioner, images[: max(bs, n_images)], bs, max_new_tokens)
                try:
                    runner()  # warm-up (CUDA kernels, allocator)
                    torch.cuda.reset_peak_memory_stats()
                    secs = []
                    for _ in range(repeats):
                        torch.cuda.synchronize()
                        secs.append(runner())
                        torch.cuda.synchronize()
                    n = len(images[: max(bs, n_images)])
                    ips = n / median(secs)
                    rows.append(
                        {
                            "model": name,
                            "model_id": model_id,
                            "precision": precision,
                            "batch_size": bs,
                            "images_per_sec": ips,
                            "tokens_per_sec": ips * max_new_tokens,
                            "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
                            "load_seconds": captioner.report.load_seconds,
                            "weight_gb": captioner.report.weight_bytes / 1e9,
                        }
                    )
                    log(
                        f"  {name} {precision} batch {bs}: {ips:.2f} img/s, "
                        f"{rows[-1]['peak_memory_gb']:.1f} GB peak"
                    )
                except torch.cuda.OutOfMemoryError:
                    rows.append({"model": name, "precision": precision, "batch_size": bs, "error": "oom"})
                    torch.cuda.empty_cache()
            del captioner
            gc.collect()
            torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(0),
        "weights": "dummy (random, real size)",
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "image_max_side": 448,
        "repeats": repeats,
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------- output


def fmt(v: Any, nd: int = 2) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Benchmark results {m['date']}",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {m['cpu_model']}, {m['cpu_cores']} cores (torch threads {m['torch_threads']}), "
        f"GPU: {m['gpu']}",
        f"- load average (1/5/15 min) at start {m.get('load_average_1_5_15min')}, "
        f"at end {m.get('load_average_at_end')} (shared machine: ratios are measured side by side)",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
        f"- git: {m['git_commit'][:12]}{' (dirty tree)' if m['git_dirty'] else ''}",
        f"- weights: random ({m['weights_note']})",
        f"- total benchmark time: {result['total_seconds']:.0f} s",
        f"- failed engine cells: {'; '.join(result.get('failed_cells') or []) or 'none'}",
        "",
    ]
    b = result.get("batching")
    if b:
        lines += [
            f"## 1. Batching (tiny:llava fp32, {b['n_images']} images, {b['max_new_tokens']} new tokens, "
            f"median of {b['repeats']})",
            "",
            "| variant | seconds | images/s | ratio vs per-image loop |",
            "|---|---|---|---|",
            f"| per-image transformers loop | {b['loop_seconds_median']:.2f} | "
            f"{b['loop_images_per_sec']:.2f} | 1.00 |",
        ]
        lines += [
            f"| HF actor, batch {r['batch_size']} | {r['seconds_median']:.2f} | {r['images_per_sec']:.2f} | "
            f"{r['ratio_vs_loop']:.2f} |"
            for r in b["batches"]
        ]
        lines += ["", f"Target {b['target']}: {'met' if b['target_met'] else 'NOT met'}.", ""]
    e = result.get("engine")
    if e:
        g = e["grid"]
        s = e["engine_split"]
        lines += [
            f"## 2. Engine overhead ({g['cells']} cells x {g['images']} images, median of {e['repeats']})",
            "",
            "| | seconds |",
            "|---|---|",
            f"| engine (run_sweep) wall | {e['engine_wall_seconds']:.1f} |",
            f"| sequential script wall | {e['sequential_wall_seconds']:.1f} |",
            f"| ratio engine / sequential | {e['ratio_engine_vs_sequential']:.2f} |",
            f"| ratio (engine - Ray start) / sequential | "
            f"{e['ratio_engine_without_ray_start_vs_sequential']:.2f} |",
            "",
            "Split of the engine's time:",
            "",
            "| part | seconds | how |",
            "|---|---|---|",
            f"| Ray start (init_ray) | {s['ray_start_seconds']:.1f} | timed in driver |",
            f"| Tune trials (run_trials, all cells) | {s['trials_seconds']:.1f} | timed in driver |",
            f"| model loads | {int(s.get('model_loads', 0))} for {int(s.get('cells', 0))} cells | "
            "cells with model_reused = 0 |",
            f"| model load, sum over loads | {s['model_load_seconds_sum']:.1f} | load_seconds x n_actors |",
            f"| generation, sum over cells | {s['generation_seconds_sum']:.1f} | "
            "n / images_per_sec (generation window) |",
            f"| per-cell pipeline overhead, sum | {s['pipeline_overhead_seconds_sum']:.1f} | "
            "cell_wall - generation (actor start + load + Ray Data + store) |",
            f"| scoring (SweepRecorder.score) | {s['scoring_seconds']:.1f} | timed in driver |",
            f"| MLflow (SweepTracker.*) | {s['mlflow_seconds']:.1f} | timed in driver |",
            f"| report + plots | {s['report_plots_seconds']:.1f} | timed in driver |",
            "",
            "Sequential script split: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in e["sequential_split"].items()),
            "",
        ]
    r = result.get("rerun")
    if r:
        lines += [
            "## 3. Re-run of the finished grid",
            "",
            f"re-run {r['rerun_wall_seconds']:.2f} s vs first run {r['first_wall_seconds']:.1f} s: ratio "
            f"**{r['ratio_rerun_vs_first']:.3f}** (target {r['target']}: "
            f"{'met' if r['target_met'] else 'NOT met'})",
            "",
        ]
    sc = result.get("scaling")
    if sc:
        lines += [
            f"## 4. Replicas on logical GPUs ({sc['cell']}, {sc['images']} images, median of "
            f"{sc['repeats']}; {sc['note']})",
            "",
            "| replicas | sweep wall s | Ray start s | cell wall s | cell images/s | generation images/s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['replicas']} | {x['wall_seconds']:.1f} | {x['ray_start_seconds']:.1f} | "
            f"{x['cell_wall_seconds']:.1f} | {x['cell_images_per_sec']:.2f} | "
            f"{x['generation_images_per_sec']:.2f} |"
            for x in sc["rows"]
        ]
        lines.append("")
    gp = result.get("gpu")
    if gp is not None:
        lines += ["## 5. GPU", ""]
        if "skipped" in gp:
            lines += [f"{gp['skipped']}: skipped.", ""]
        else:
            lines += [
                f"{gp['device']}, {gp['weights']}, {gp['max_new_tokens']} new tokens",
                "",
                "| model | precision | batch | images/s | tokens/s | peak GB | error |",
                "|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {x['model']} | {x['precision']} | {x.get('batch_size', '')} | "
                f"{fmt(x.get('images_per_sec', ''))} | {fmt(x.get('tokens_per_sec', ''))} | "
                f"{fmt(x.get('peak_memory_gb', ''))} | {x.get('error', '')} |"
                for x in gp["rows"]
            ]
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="8 images, 1 repeat, a 2-cell grid, replicas 1 and 2 (for the test)",
    )
    p.add_argument("--repeats", type=int, default=None, help="repeats of the batching section (default 3)")
    p.add_argument("--engine-repeats", type=int, default=1, help="repeats of the engine/scaling sections")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--coco", type=Path, default=COCO_MINI)
    p.add_argument("--limit", type=int, default=None, help="images per sweep (default: all 79 of coco-mini)")
    p.add_argument(
        "--gpu-models",
        default=None,
        metavar="NAME=ID,...",
        help="GPU section models (hub ids or local folders with config.json); default: "
        + ", ".join(f"{k}={v}" for k, v in GPU_MODELS.items()),
    )
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if not (args.coco / "captions_val2017.json").is_file():
        p.error(f"coco-mini not found at {args.coco}")
    os.environ.setdefault("VLM_SWEEP_CACHE", str(Path.home() / ".cache" / "vlm-sweep"))
    quick = args.quick
    gpu_models = (
        dict(item.split("=", 1) for item in args.gpu_models.split(",") if "=" in item)
        if args.gpu_models
        else None
    )
    repeats = args.repeats or (1 if quick else 3)
    engine_repeats = 1 if quick else args.engine_repeats
    limit = 8 if quick else args.limit
    n_batch_images = 8 if quick else 32
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]) if argv is None else str(argv),
        "quick": quick,
        "machine": machine_info(),
    }
    log(
        f"machine: {result['machine']['cpu_model']}, {result['machine']['cpu_cores']} cores, "
        f"GPU {result['machine']['gpu']}"
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}-{machine_slug(result['machine'])}"
    stem += "-quick" if quick else ""

    def save() -> None:
        """Written after every section, so a long run that is stopped keeps what it measured."""
        result["total_seconds"] = time.perf_counter() - started
        result["failed_cells"] = list(FAILURES)
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
        (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
        (args.out_dir / f"{stem}.md").write_text(markdown(result))

    work = Path(tempfile.mkdtemp(prefix="vlm-bench-"))
    try:
        if "batching" in sections:
            log("1. batching: HF actor vs per-image transformers loop")
            result["batching"] = bench_batching(args.coco, n_batch_images, repeats, [1, 4, 8, 16], 12)
            b = result["batching"]
            log(
                f"   per-image loop {b['loop_images_per_sec']:.2f} img/s; "
                + "; ".join(
                    f"batch {r['batch_size']}: {r['images_per_sec']:.2f} img/s = {r['ratio_vs_loop']:.2f}x"
                    for r in b["batches"]
                )
            )
            save()
        if "engine" in sections or "rerun" in sections:
            log(
                "2. engine overhead: run_sweep vs sequential script"
                + (" + 3. re-run" if "rerun" in sections else "")
            )
            models = ["tiny:llava"] if quick else ["tiny:llava", "tiny:qwen2_vl"]
            tokens = [4] if quick else [4, 12]
            engine, rerun = bench_engine(
                args.coco,
                work,
                limit,
                engine_repeats,
                models,
                ["fp32", "int8"],
                tokens,
                1 if quick else 3,
                "rerun" in sections,
            )
            if "engine" in sections:
                result["engine"] = engine
                log(
                    f"   engine {engine['engine_wall_seconds']:.1f}s vs sequential "
                    f"{engine['sequential_wall_seconds']:.1f}s: {engine['ratio_engine_vs_sequential']:.2f}x "
                    f"({engine['ratio_engine_without_ray_start_vs_sequential']:.2f}x without Ray start "
                    f"{engine['engine_split']['ray_start_seconds']:.1f}s)"
                )
                log("   split: " + ", ".join(f"{k} {v:.1f}" for k, v in engine["engine_split"].items()))
            if rerun:
                result["rerun"] = rerun
                log(
                    f"3. re-run / first run: {rerun['ratio_rerun_vs_first']:.3f} "
                    f"({rerun['rerun_wall_seconds']:.2f}s vs {rerun['first_wall_seconds']:.1f}s)"
                )
            save()
        if "scaling" in sections:
            log("4. replicas on logical GPUs (sharding overhead on CPU)")
            result["scaling"] = bench_scaling(
                args.coco, work, limit, engine_repeats, [1, 2] if quick else [1, 2, 4], 12
            )
            for x in result["scaling"]["rows"]:
                log(
                    f"   replicas {x['replicas']}: wall {x['wall_seconds']:.1f}s, "
                    f"cell {x['cell_wall_seconds']:.1f}s, "
                    f"{x['cell_images_per_sec']:.2f} img/s over the cell, "
                    f"{x['generation_images_per_sec']:.2f} img/s generation"
                )
            save()
        if "gpu" in sections:
            log("5. GPU throughput (dummy weights)")
            result["gpu"] = bench_gpu(
                args.coco, 8 if quick else 32, repeats, [1, 8, 16], ["bf16", "int8", "nf4"], 32, gpu_models
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save()
    log(f"results: {args.out_dir / stem}.json and .md ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
