"""The whole sweep on a local Ray with 2 logical GPUs: 2 families x 2 precisions x 2 max_new_tokens."""

import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import grid_dict

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.store import ResultStore

pytestmark = [pytest.mark.slow, pytest.mark.shared_ray]  # the whole sweep on Ray

COST_AND_QUALITY = [
    "cider", "bleu_4", "meteor", "rouge_l", "latency_p50_s", "latency_p95_s", "images_per_sec",
    "tokens_per_sec", "peak_memory_bytes", "energy_kwh", "emissions_kg_co2", "load_seconds", "weight_bytes",
]


@pytest.fixture(scope="module")
def sweep_result(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sweep")
    grid = parse_grid(grid_dict(
        coco_mini, out,
        models=[{"id": "tiny:llava"}, {"id": "tiny:qwen2_vl"}],
        precisions=["fp32", "int8"],
        max_new_tokens=[3, 12],
        resources={"local_gpus": 2, "batch_size": 16},
    ))
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    code = info.exit_code
    return code, info, cells, samples


def _child_runs(info):
    tracker = info.tracker
    return tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_id}'"
    )


def test_every_cell_ran_and_was_logged(sweep_result):
    code, info, cells, samples = sweep_result
    assert code == 0, info.results[["label", "status", "reason"]]
    assert len(samples) == 79
    runs = _child_runs(info)
    assert len(runs) == 8
    assert {r.data.tags["cell_id"] for r in runs} == {c.cell_id for c in cells}
    for run in runs:
        assert run.info.status == "FINISHED"
        # what the MLflow UI compares: no per-run unique param, none of Tune's own metrics, the cell's
        # own duration (not the few ms its logging took)
        assert "cell_id" not in run.data.params
        assert not {"pid", "timestamp", "time_total_s", "training_iteration"} & set(run.data.metrics)
        duration = (run.info.end_time - run.info.start_time) / 1000
        assert duration == pytest.approx(run.data.metrics["cell_wall_seconds"], abs=1.0)
        for key in COST_AND_QUALITY:
            assert key in run.data.metrics, f"{key} missing on {run.info.run_name}"
            assert math.isfinite(run.data.metrics[key])
        assert run.data.metrics["n_samples"] == 79
        params = run.data.params
        assert params["weights"] == "random"
        assert params["backend"] == "hf" and params["backend_reason"]
        import torch

        on_gpu = torch.cuda.is_available()  # the sweep runs its cells on the real GPUs where there are some
        assert params["device"] == (torch.cuda.get_device_name(0) if on_gpu else "cpu")
        kind = "gpu_allocated" if on_gpu else "cpu_rss"
        if params.get("shared_generation"):  # t3 is cut from t12's generation: its peak is that one's
            assert params["peak_memory_kind"].startswith(kind) and "upper bound" in params["peak_memory_kind"]
        else:
            assert params["peak_memory_kind"] == kind
        assert params["version_transformers"] and params["version_torch"]
        # HF batches: the wall of each batch's generate(); t3 is cut from t12's by its decode-step times
        shared = bool(params.get("shared_generation"))
        assert params["latency_kind"] == ("decode_step_times" if shared else "batch_wall")
        assert params["batch_size"] == "16"
        # every cell measured cold (docs/measurement.md): HF keeps no cache across calls; one warm-up; the
        # processor's seconds apart from generate(), a share of the batches' time
        assert params["cache_policy"] == "cold: no cache kept across generate() calls"
        assert run.data.metrics["warmup_batches"] == 1
        assert run.data.metrics["preprocess_seconds_per_image"] > 0
        assert 0 < run.data.metrics["preprocess_share"] < 1
        if params["precision"] == "int8":
            assert params["precision_language"].startswith("int8")
            assert "int8" not in params["precision_vision"]


def test_results_csv_says_how_each_cell_was_measured(sweep_result):
    _, info, _, _ = sweep_result
    results = pd.read_csv(info.output_dir / "results.csv")
    for column in ("cache_policy", "warmup_batches", "preprocess_seconds_per_image", "preprocess_share"):
        assert column in results and results[column].notna().all(), column


def test_engine_times_its_own_phases(sweep_result):
    """Benchmarks read these instead of patching the engine: every phase ran, inside the sweep's wall."""
    _, info, _, _ = sweep_result
    assert set(info.phases) == {"ray_start", "trials", "scoring", "mlflow", "report"}
    assert all(seconds > 0 for seconds in info.phases.values()), info.phases
    # 8 cells of 79 images cannot start Ray, run, score and log in less time than the trials took
    assert info.phases["trials"] > max(info.phases["ray_start"], info.phases["report"])


def test_caption_table_has_one_row_per_image(sweep_result, tmp_path):
    code, info, cells, samples = sweep_result
    tracker = info.tracker
    run = _child_runs(info)[0]
    local = tracker.client.download_artifacts(run.info.run_id, "captions.parquet", str(tmp_path))
    table = pd.read_parquet(local)
    assert len(table) == 79
    assert sorted(table["image_id"]) == sorted(s.image_id for s in samples)
    for col in ("image_id", "model_name", "caption", "processing_time_sec", "image_width", "image_height",
                "batch_id", "precision", "max_new_tokens"):
        assert col in table, col
    assert (table["image_width"] > 0).all() and (table["error"] == "").all()
    names = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
    assert {"captions.parquet", "batches.parquet", "cell.json"} <= names
    # the images' batches beside them: each image's batch there once, with when it ended
    batches = pd.read_parquet(tracker.client.download_artifacts(run.info.run_id, "batches.parquet",
                                                                str(tmp_path)))
    assert set(table["batch_id"]) == set(batches["batch_id"]) and batches["batch_id"].is_unique
    assert "timestamp" in batches and "batch_latency_sec" not in table
    # every table the sweep wrote is as `sweep.results.tables` declares it
    from sweep.results.table_check import check_output, check_table
    from sweep.results.tables import CAPTION_TABLE

    assert check_table(table, CAPTION_TABLE) == []
    assert check_output(info.output_dir) == []


def test_parent_run_has_pareto_plots_and_front(sweep_result):
    code, info, cells, samples = sweep_result
    tracker = info.tracker
    names = {a.path for a in tracker.client.list_artifacts(tracker.parent_id)}
    assert {"pareto_cider_vs_latency.png", "pareto_cider_vs_memory.png", "pareto_cider_vs_energy.png",
            "pareto_front.csv"} <= names
    results = info.results
    assert (results["pareto"] != "").any()
    assert (info.output_dir / "pareto_cider_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shorter_budget_gives_shorter_captions(sweep_result):
    info = sweep_result[1]
    results = info.results
    store = ResultStore(info.output_dir)
    for (model, precision), group in results.groupby(["model", "precision"]):
        short = group[group["max_new_tokens"] == 3].iloc[0]
        long = group[group["max_new_tokens"] == 12].iloc[0]
        chars = [store.read_captions(row["cell_id"])["caption"].str.len().mean() for row in (short, long)]
        assert chars[0] < chars[1], (model, precision, chars)
        assert short["mean_generated_tokens"] < long["mean_generated_tokens"], (model, precision)
        assert short["mean_generated_tokens"] <= 3
        assert short["mean_caption_words"] <= long["mean_caption_words"], (model, precision)
