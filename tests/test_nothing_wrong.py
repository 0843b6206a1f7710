"""Issue 19, items 1, 2, 6 and 8: no silently wrong result (stale scores after the references changed, a
dataset without one readable image), no cell failing on a leftover temp part, an all-failed sweep still
reported and its MLflow run ended. Without Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from sweep.data.sources import DatasetError, dataset_fingerprint, load_coco_samples
from sweep.engine import Execution, plan_sweep, publish_results
from sweep.execute.phases import PhaseTimer
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.recorder import CellOutcome, SweepRecorder
from sweep.results.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"


def _dataset(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    """A copy of the first n shapes images and their captions, to edit."""
    data = json.loads((SHAPES / "captions.json").read_text())
    images = data["images"][:n]
    ids = {img["id"] for img in images}
    folder = tmp_path / "images"
    folder.mkdir()
    for img in images:
        shutil.copy(SHAPES / "images" / img["file_name"], folder / img["file_name"])
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": images,
                                    "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))
    return captions, folder


def _grid(tmp_path: Path, captions: Path, images: Path, **dataset):
    grid = parse_grid({
        "name": "nothing-wrong",
        "dataset": {"captions": str(captions), "images": str(images), "image_max_side": 64, **dataset},
        "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small"}],
        "precisions": ["fp32"],
        "max_new_tokens": [8],
        "scoring": {"document_frequencies": "scored_subset"},
        "output_dir": str(tmp_path / "out"),
    })
    samples = load_coco_samples(grid.dataset)
    return grid, samples, expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))


class ExactScorer:
    """cider 1.0 for a caption equal to one of its references, else 0.0: scores that follow the refs."""

    def score_images(self, predictions, references, document_frequencies=None):
        from sweep.quality.scoring import PER_IMAGE_COLUMNS

        hit = {sid: float(predictions[sid] in references[sid]) for sid in predictions}
        per_image = pd.DataFrame({c: [hit[sid] for sid in predictions] for c in PER_IMAGE_COLUMNS},
                                 index=list(predictions))
        return SimpleNamespace(per_image=per_image, corpus={"cider": sum(hit.values()) / len(hit)})


def _finish(store: ResultStore, cell, samples, caption: str) -> None:
    table = pd.DataFrame({"sample_id": [s.sample_id for s in samples], "caption": caption, "error": "",
                          "batch_end_ts": 100.0})
    store.begin_cell(cell)
    store.finish_cell(cell.cell_id, table, {"latency_p50_s": 0.1, "n_errors": 0.0})


# --- item 1: changed references -> scores recomputed and re-logged ---------------------------------------

def test_editing_only_the_references_rescores_stored_captions_and_relogs_mlflow(tmp_path):
    from sweep.publish.tracking import SweepTracker, default_tracking_uri

    captions, images = _dataset(tmp_path)
    grid, samples, cells = _grid(tmp_path, captions, images)
    cell = cells[0]
    plan = plan_sweep(grid, cells, samples)
    _finish(plan.store, cell, samples, "a new caption")
    uri = default_tracking_uri(plan.output_dir)

    def record(samples):
        tracker = SweepTracker(uri, "nothing-wrong", plan.output_dir / "mlartifacts", "nw", {})
        recorder = SweepRecorder(cells, samples, plan.store, ExactScorer(), tracker,
                                 document_frequencies="scored_subset")
        plan_now = plan_sweep(grid, cells, samples)
        assert set(plan_now.finished) == {cell.cell_id}  # captions are reused: they do not depend on refs
        outcome = recorder.record(cell.cell_id, plan_now.finished[cell.cell_id], from_store=True)
        return outcome, tracker

    first, tracker = record(samples)
    assert first.metrics["cider"] == 0.0
    run_id = first.run_id
    # only the references change: every image gets "a new caption" as a reference
    data = json.loads(captions.read_text())
    for ann in data["annotations"]:
        ann["caption"] = "a new caption"
    captions.write_text(json.dumps(data))
    _, edited, _ = _grid(tmp_path, captions, images)
    again, tracker = record(edited)
    assert again.metrics["cider"] == 1.0  # recomputed, not the stale 0.0 read back
    assert plan.store.read_scores(cell.cell_id)["cider"] == 1.0
    assert again.run_id == run_id  # the cell's existing child run, now with the new scores
    run = tracker.client.get_run(run_id)
    assert run.data.metrics["cider"] == 1.0 and run.info.status == "FINISHED"
    assert "rescored" in run.data.tags
    # unchanged references: read back, nothing rescored
    third, _ = record(edited)
    assert third.metrics["cider"] == 1.0 and third.run_id == run_id


# --- item 2: no readable image -> refused; error rows shown ----------------------------------------------

def test_a_dataset_whose_every_image_is_missing_or_empty_is_refused(tmp_path):
    captions, images = _dataset(tmp_path)
    files = sorted(images.iterdir())
    for path in files:
        path.unlink()
    with pytest.raises(DatasetError, match="none of the 4 images"):
        _grid(tmp_path, captions, images)
    files[0].write_bytes(b"")  # an empty file is not an image either
    with pytest.raises(DatasetError, match="dataset.images"):
        _grid(tmp_path, captions, images)
    shutil.copy(SHAPES / "images" / files[1].name, files[1])  # one good image: the sweep runs
    _, samples, _ = _grid(tmp_path, captions, images)
    assert len(samples) == 4


def test_a_missing_image_set_exits_2_before_ray(tmp_path, capsys):
    import yaml

    from sweep.run import main

    captions, images = _dataset(tmp_path)
    for image in images.iterdir():
        image.unlink()
    grid = {"name": "none", "dataset": {"captions": str(captions), "images": str(images)},
            "models": [{"id": str(REPO / "zoo" / "shapes-llava-small")}], "precisions": ["fp32"],
            "max_new_tokens": [8], "output_dir": str(tmp_path / "out")}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main([str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "none of the 4 images" in captured.out + captured.err


def test_the_table_and_summary_show_each_cells_error_rows(tmp_path, capsys):
    from sweep.publish.report import format_table

    captions, images = _dataset(tmp_path)
    grid, samples, cells = _grid(tmp_path, captions, images, **{})
    plan = plan_sweep(grid, cells, samples)
    cell = cells[0]
    table = pd.DataFrame({"sample_id": [s.sample_id for s in samples],
                          "image_id": [s.image_id for s in samples], "caption": ["a", "", "", "b"],
                          "error": ["", "FileNotFoundError: x.jpg", "OSError: y", ""], "batch_end_ts": 1.0})
    plan.store.begin_cell(cell)
    plan.store.finish_cell(cell.cell_id, table, {})
    metrics = {"cider": 0.5, "n_errors": 2.0, "n_samples": 4.0}
    outcomes = {cell.cell_id: CellOutcome(cell, "ok", metrics, {"weights": "toy"})}
    publish_results(plan, Execution(outcomes, [], None, "sqlite:///x.db"), PhaseTimer())
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("cell "))
    assert header.split()[:3] == ["cell", "status", "errors"]
    assert "2 of 4 images not captioned (error rows); the first: FileNotFoundError: x.jpg" in out
    clean = pd.DataFrame([{**CellOutcome(cell, "ok", {"n_errors": 0.0}).row()}])
    assert "errors" not in format_table(clean).splitlines()[0].split()


# --- item 6: leftover temp parts, unreadable parts --------------------------------------------------------

def _part(store: ResultStore, ids: list[str]) -> Path:
    return store.append_part("c1", pd.DataFrame({"sample_id": ids, "caption": "x", "error": ""}))


def test_a_leftover_temp_part_is_never_read(tmp_path):
    store = ResultStore(tmp_path)
    _part(store, ["a", "b"])
    temp = store.parts_dir("c1") / ".0123abcd.xyz.parquet"
    temp.write_bytes(b"")  # a kill mid-write, or another writer's file in progress
    assert store.done_sample_ids("c1") == {"a", "b"}
    assert store.read_parts("c1")["sample_id"].tolist() == ["a", "b"]
    store.finish_cell("c1", store.read_parts("c1"), {})
    assert temp.exists()  # not ours to delete: it may be a write in progress
    assert not store.notes


def test_an_unreadable_part_is_set_aside_and_its_samples_are_not_done(tmp_path):
    store = ResultStore(tmp_path)
    _part(store, ["a", "b"])
    bad = store.parts_dir("c1") / "ffff.parquet"
    bad.write_bytes(b"not parquet at all")
    assert store.done_sample_ids("c1") == {"a", "b"}  # c and d of the bad part: to be recomputed
    assert not bad.exists() and (bad.parent / "ffff.parquet.unreadable").read_bytes() == b"not parquet at all"
    assert len(store.notes) == 1 and "ffff.parquet.unreadable" in store.notes[0]
    assert store.read_parts("c1")["sample_id"].tolist() == ["a", "b"]
    bad.write_bytes(b"")  # zero bytes, visible name
    assert store.read_parts("c1")["sample_id"].tolist() == ["a", "b"] and not bad.exists()


# --- item 8: every cell failed ----------------------------------------------------------------------------

def test_report_rebuilds_an_output_dir_whose_every_cell_failed(tmp_path, capsys):
    from sweep.publish.report import main

    captions, images = _dataset(tmp_path)
    grid, samples, cells = _grid(tmp_path, captions, images)
    plan = plan_sweep(grid, cells, samples)  # writes samples.json
    rows = [CellOutcome(c, "failed", {}, {}, reason="load failed: no such model").row() for c in cells]
    # as an all-failed sweep wrote it before its rows had the metric columns: no 'cider' at all
    pd.DataFrame(rows).drop(columns=["cider", "bleu_4", "latency_p50_s", "peak_memory_kind"]) \
        .to_csv(plan.output_dir / "results.csv", index=False)
    assert main([str(plan.output_dir)]) == 0
    assert "load failed: no such model" in (plan.output_dir / "report.html").read_text()
    pd.DataFrame(rows).to_csv(plan.output_dir / "results.csv", index=False)  # the bare rows
    assert main([str(plan.output_dir)]) == 0
    (plan.output_dir / "report.html").unlink()
    reason = "load failed: no such model"
    outcomes = {c.cell_id: CellOutcome(c, "failed", {}, {}, reason=reason) for c in cells}
    publish_results(plan, Execution(outcomes, [], None, "sqlite:///x.db"), PhaseTimer())  # as a sweep does
    (plan.output_dir / "report.html").unlink()
    assert main([str(plan.output_dir)]) == 0
    html = (plan.output_dir / "report.html").read_text()
    assert "load failed: no such model" in html


def test_the_mlflow_parent_of_an_all_failed_sweep_ends_failed(tmp_path, capsys):
    from sweep.publish.tracking import SweepTracker, default_tracking_uri

    captions, images = _dataset(tmp_path)
    grid, samples, cells = _grid(tmp_path, captions, images)
    plan = plan_sweep(grid, cells, samples)
    tracker = SweepTracker(default_tracking_uri(plan.output_dir), "all-failed",
                           plan.output_dir / "mlartifacts", "all-failed", {})
    outcomes = {c.cell_id: CellOutcome(c, "failed", {}, {}, reason="load failed") for c in cells}
    code, _ = publish_results(plan, Execution(outcomes, [], tracker, tracker.uri), PhaseTimer())
    assert code == 1
    parent = tracker.client.get_run(tracker.parent_id)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["n_cells_failed"] == len(cells)
