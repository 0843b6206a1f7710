"""`benchmarks/run.py --quick` runs end to end and writes every section with finite numbers.

Speed targets are reported by the benchmark, never asserted here (CI machines are noisy and shared).
The quick run starts one Ray that every section's sweeps share; the timeout leaves room for a loaded machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # the quick benchmark runs seven sweeps

REPO = Path(__file__).resolve().parents[1]
# benchmarks/run.py's sections, all of them
SECTIONS = ("batching", "engine", "rerun", "scaling", "gpu", "token_budgets", "scoring", "halving",
            "pipeline_ceiling", "padding", "precisions", "warmup", "preprocess")


def numbers(obj: object) -> list[float]:
    """Every int/float anywhere in a JSON value (bools excluded)."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in numbers(v)]
    return []


def test_quick_benchmark_writes_every_section(
    coco_mini: Path, tiny_model_cache: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "VLM_SWEEP_CACHE": str(tiny_model_cache),
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--out-dir",
            str(tmp_path),
            "--coco",
            str(coco_mini),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    check_quick_result(tmp_path)


def check_quick_result(out_dir: Path) -> None:
    """What a --quick run must have written in `out_dir` (also usable on a run made by hand)."""
    files = sorted(out_dir.glob("*-quick.json"))
    assert len(files) == 1, list(out_dir.iterdir())
    assert files[0].with_suffix(".md").is_file()
    result = json.loads(files[0].read_text())

    machine = result["machine"]
    for key in ("date", "cpu_model", "cpu_cores", "gpu", "versions", "weights_random"):
        assert key in machine, key
    for pkg in ("python", "torch", "transformers", "ray"):
        assert machine["versions"].get(pkg), pkg
    assert machine["weights_random"] is True

    assert "shared by every section" in result["ray"]  # one Ray start for the whole quick run
    for section in SECTIONS:
        assert section in result, section
    assert set(result["section_seconds"]) == set(SECTIONS)  # each one ran and was written
    for section in (s for s in SECTIONS if s not in ("gpu", "warmup")):
        values = numbers(result[section])
        assert values, section
        assert all(math.isfinite(v) for v in values), (section, result[section])
    # cold cells: the quick run's one logical GPU runs a load's three cells one after another on one host,
    # so each variant has its first-vs-siblings pair
    for variant in result["warmup"]["variants"].values():
        assert variant["wall"] > 0 and variant["cache_policy"], variant
        assert len(variant["loads"]) == 1, variant
        assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in variant["loads"]), variant

    batching = result["batching"]
    assert [r["batch_size"] for r in batching["batches"]] == [1, 4, 8, 16]
    assert all(r["images_per_sec"] > 0 and r["ratio_vs_loop"] > 0 for r in batching["batches"])
    assert batching["loop_images_per_sec"] > 0
    engine = result["engine"]
    assert engine["engine_wall_seconds"] > 0 and engine["sequential_wall_seconds"] > 0
    for key in (
        "ray_start_seconds",
        "model_load_seconds_sum",
        "generation_seconds_sum",
        "scoring_seconds",
        "mlflow_seconds",
    ):
        assert engine["engine_split"][key] >= 0, key
    assert result["rerun"]["ratio_rerun_vs_first"] > 0
    assert [r["replicas"] for r in result["scaling"]["rows"]] == [1, 2]
    assert all(r["wall_seconds"] > 0 for r in result["scaling"]["rows"])
    # the sweeps the quick run shares between sections (one run each, read by both): the engine section's
    # run is the scaling section's replicas-1 row, the token-budget section's shared run the halving
    # section's full run
    assert result["scaling"]["rows"][0]["wall_seconds"] == engine["engine_wall_seconds"]
    budgets = result["token_budgets"]["grids"]["quick"]
    halving = result["halving"]["grids"]["zoo_families"]
    assert halving["wall_full"] == budgets["wall_seconds_shared"]
    assert budgets["generating_cells_shared"] < budgets["generating_cells_unshared"] == budgets["cells"]
    assert halving["rungs"] == [4, 8] and halving["generations"] == 2
    gpu = result["gpu"]
    if machine["gpu"] == "none":
        assert gpu == {"skipped": "no GPU"}
    else:
        assert gpu["rows"]
    prep = result["preprocess"]  # section 12: the processor on the host vs in the decode tasks
    assert prep["identical_captions"] == prep["compared_captions"] == 16
    assert all(prep["summary"][where]["images_per_sec"] > 0 for where in ("host", "decode_task"))
    assert {r["preprocess_where"] for r in prep["runs"]["decode_task"]} == {"decode_task"}
    padding = result["padding"]  # section 10: mixed image sizes, grouped by prompt length
    assert 0 <= padding["pad_tokens_grouped"] < padding["pad_tokens_padded"]
    assert padding["identical_captions"] == padding["compared_captions"] == 8
    precisions = result["precisions"]  # section 11: every CPU precision loads, shrinks and is estimated
    rows = {(r["model"], r["precision"]): r for r in precisions["rows"]}
    assert {p for _, p in rows} == {"fp32", "int8", "nf4", "int8wo", "int4wo"}
    assert all(0.95 <= r["ratio_estimate_vs_measured"] <= 1.05 for r in rows.values())
    assert all(r["images_per_sec"] > 0 and r["same_captions_as_fp32"] >= 0 for r in rows.values())
    small = {p: r for (m, p), r in rows.items() if m.endswith("shapes-llava-small")}
    assert small["int4wo"]["weight_bytes"] < small["int8wo"]["weight_bytes"] < small["fp32"]["weight_bytes"]
    assert all(math.isfinite(r["cider"]) and r["cider_ci_low"] <= r["cider"] <= r["cider_ci_high"]
               for r in small.values())
