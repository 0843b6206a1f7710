"""Faults stay inside their cell or batch, and an interrupted sweep resumes without redoing work."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import grid_dict, ray_processes
from sweep_fixtures import fault_dir_fixture  # noqa: F401  (the fault_dir fixture)

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.store import ResultStore

# every test runs a sweep on Ray: all on the shared one (the fault models' folder is the session's)
pytestmark = [pytest.mark.slow, pytest.mark.shared_ray]

ROOT = Path(__file__).resolve().parents[1]


def make_grid(coco: Path, out: Path, models: list[dict], limit: int = 12, **kw) -> dict:
    data = grid_dict(coco, out, models=models, max_new_tokens=[8], **kw)
    data["dataset"]["limit"] = limit
    data["resources"] = {"local_gpus": 2, "batch_size": 4}
    # These tests count the images each model call sees: no unmeasured warm-up batch in the counts.
    data["measurement"] = {"warmup_batches": 0}
    data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
    return data


def sweep(data: dict):
    grid = parse_grid(data)
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    code = info.exit_code
    return code, info, cells


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def calls(fault_dir: Path) -> list[int]:
    log = fault_dir / "calls.log"
    return [int(line.split()[-1]) for line in log.read_text().splitlines()] if log.exists() else []


def test_interrupted_sweep_resumes_only_missing_samples(coco_mini, tmp_path, fault_dir):
    model = [{"id": "slow-model", "loader": "fault_models:slow"}]
    data = make_grid(coco_mini, tmp_path / "out", model, limit=24)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    ray_tmp = Path(tempfile.mkdtemp(prefix="rfl", dir="/tmp"))  # short: Ray's socket paths; names its Ray
    env = {**os.environ, "VLM_SWEEP_FAULT_DIR": str(fault_dir), "VLM_SWEEP_FAULT_SLEEP": "2",
           "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "sweep.run", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while len(calls(fault_dir)) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(calls(fault_dir)) >= 3, "the sweep never reached its third batch"
        # kill -9 the sweep's whole process group: driver, Ray and its workers, no chance to clean up
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Ray daemons that left the process group: this sweep's only (`ray stop` would stop every Ray here)
    left = ray_processes(str(ray_tmp))
    left += [c for p in list(left) for c in _children(p)]
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(left, timeout=30)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    grid = parse_grid(data)
    samples = load_coco_samples(grid.dataset)
    cell = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))[0]
    store = ResultStore(tmp_path / "out")
    done_before = len(store.done_sample_ids(cell.cell_id))
    assert 0 < done_before < 24, done_before

    (fault_dir / "calls.log").unlink()
    code, info, _ = sweep(data)  # on the shared Ray: its workers sleep the default 0.5 s per batch
    assert code == 0
    assert sum(calls(fault_dir)) == 24 - done_before  # only the missing samples were generated
    resumed = store.read_captions(cell.cell_id)

    # the table an uninterrupted run gives: every sample once, in the dataset's order, with the caption
    # the scripted model writes for it (a function of the sample id and the budget)
    words = max(1, cell.max_new_tokens // 2)
    assert list(resumed["sample_id"]) == [s.sample_id for s in samples]
    assert list(resumed["caption"]) == [" ".join(["a", "photo", "of", s.sample_id, "with", "things"][:words])
                                        for s in samples]


def test_oom_on_every_batch_fails_only_that_cell(coco_mini, tmp_path, fault_dir):
    models = [{"id": "too-big", "loader": "fault_models:oom"},
              {"id": "fits", "loader": "fault_models:counting"}]
    code, info, _ = sweep(make_grid(coco_mini, tmp_path / "out", models))
    assert code == 1
    results = info.results.set_index("model")
    assert results.loc["fits", "status"] == "ok"
    assert results.loc["too-big", "status"] == "failed"
    assert results.loc["too-big", "reason"].startswith("oom")
    tracker = info.tracker
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_id}'")
    by_model = {r.data.params["model"]: r for r in runs}
    assert by_model["too-big"].info.status == "FAILED"
    assert by_model["too-big"].data.tags["failure_reason"] == "oom"
    assert by_model["fits"].info.status == "FINISHED"
    # the failed cell is left out of the Pareto front and the table says why
    assert results.loc["too-big", "pareto"] == ""


def test_truncated_jpeg_is_one_error_row(coco_mini, tmp_path, fault_dir):
    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    coco = json.loads((coco_mini / "captions_val2017.json").read_text())
    images = coco["images"][:6]
    ids = {img["id"] for img in images}
    for img in images:
        shutil.copy(coco_mini / "val2017" / img["file_name"], data_dir / "images" / img["file_name"])
    broken = data_dir / "images" / images[2]["file_name"]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])
    subset = {"images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    (data_dir / "captions.json").write_text(json.dumps(subset))
    data = make_grid(coco_mini, tmp_path / "out", [{"id": "m", "loader": "fault_models:counting"}])
    data["dataset"] = {"captions": str(data_dir / "captions.json"), "images": str(data_dir / "images")}
    code, info, cells = sweep(data)
    assert code == 0
    row = info.results.iloc[0]
    assert row["n_errors"] == 1 and row["n_samples"] == 6 and row["status"] == "ok"
    table = ResultStore(tmp_path / "out").read_captions(cells[0].cell_id)
    errors = table[table["error"] != ""]
    assert list(errors["image_id"]) == [images[2]["id"]]
    assert "truncated" in errors["error"].iloc[0].lower()
    assert sum(calls(fault_dir)) == 5  # the broken image never reached the model
    assert row["cider"] >= 0 and row["bleu_4"] >= 0


def test_actor_death_mid_cell_still_captions_every_sample_once(coco_mini, tmp_path, fault_dir):
    fragile = [{"id": "fragile", "loader": "fault_models:die_once"}]
    data = make_grid(coco_mini, tmp_path / "out", fragile, limit=20)
    code, info, cells = sweep(data)
    assert code == 0, info.results["reason"].tolist()
    assert (fault_dir / "died").exists()
    table = ResultStore(tmp_path / "out").read_captions(cells[0].cell_id)
    assert len(table) == 20 and table["sample_id"].is_unique
    assert (table["error"] == "").all()


def test_rerun_generates_nothing_and_a_new_precision_runs_alone(coco_mini, tmp_path, fault_dir):
    model = [{"id": "m", "loader": "fault_models:counting"}]
    start = time.perf_counter()
    sweep(make_grid(coco_mini, tmp_path / "out", model))
    first = time.perf_counter() - start
    assert sum(calls(fault_dir)) == 12
    (fault_dir / "calls.log").unlink()
    start = time.perf_counter()
    code, info, _ = sweep(make_grid(coco_mini, tmp_path / "out", model))
    rerun = time.perf_counter() - start
    print(f"\nfirst run {first:.1f} s, re-run of the finished grid {rerun:.1f} s ({rerun / first:.2f}x)")
    assert code == 0 and calls(fault_dir) == [] and bool(info.results["reused"].all())
    tracker = info.tracker  # the finished cell already has its MLflow run: nothing logged again
    assert tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_id}'") == []
    code, info, _ = sweep(make_grid(coco_mini, tmp_path / "out", model, precisions=["fp32", "fp16"]))
    assert code == 0 and sum(calls(fault_dir)) == 12  # only the new fp16 cell ran
    assert sorted(info.results["reused"].tolist()) == [False, True]


def test_unreachable_mlflow_keeps_results_and_next_run_logs_them(coco_mini, tmp_path, fault_dir):
    model = [{"id": "m", "loader": "fault_models:counting"}]
    data = make_grid(coco_mini, tmp_path / "out", model)
    data["tracking"] = {"uri": "http://127.0.0.1:9"}  # nothing listens there
    code, info, cells = sweep(data)
    assert code == 0 and info.tracker is None
    assert ResultStore(tmp_path / "out").captions_path(cells[0].cell_id).is_file()
    (fault_dir / "calls.log").unlink()
    code, info, _ = sweep(make_grid(coco_mini, tmp_path / "out", model))  # the tracking store is back
    assert code == 0 and calls(fault_dir) == []
    tracker = info.tracker
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.role = 'cell'")
    assert [r.data.tags["cell_id"] for r in runs] == [cells[0].cell_id]
