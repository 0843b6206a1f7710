"""The engine's phases on their own: plan (what the store holds, what cannot fit), publish (files, exit
code, summary) and the phase timer, without Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import Execution, plan_sweep, publish_results
from sweep.execute.phases import PHASES, PhaseTimer
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.recorder import CellOutcome
from sweep.results.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"


def _grid(out: Path, **overrides):
    data = {
        "name": "engine",
        "dataset": {"captions": str(SHAPES / "captions.json"), "images": str(SHAPES / "images"), "limit": 6,
                    "image_max_side": 64},
        "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small"}],
        "precisions": ["fp32"],
        "max_new_tokens": [4, 8],
        "output_dir": str(out),
        **overrides,
    }
    grid = parse_grid(data)
    samples = load_coco_samples(grid.dataset)
    return grid, samples, expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))


def _finish(store, cell, samples, costs):
    table = pd.DataFrame({"sample_id": [s.sample_id for s in samples], "caption": "a red circle",
                          "error": "", "batch_end_ts": 100.0})
    store.begin_cell(cell)
    store.finish_cell(cell.cell_id, table, costs)


def test_plan_reads_back_finished_cells_and_runs_the_rest(tmp_path):
    grid, samples, cells = _grid(tmp_path)
    plan = plan_sweep(grid, cells, samples)
    assert [c.cell_id for c in plan.todo] == [c.cell_id for c in cells] and not plan.finished
    _finish(plan.store, cells[0], samples, {"latency_p50_s": 0.1})
    plan = plan_sweep(grid, cells, samples)
    assert plan.finished == {cells[0].cell_id: {"latency_p50_s": 0.1}}
    assert [c.cell_id for c in plan.todo] == [cells[1].cell_id]
    assert (tmp_path / "samples.json").is_file()  # what `python -m sweep.publish.report` rebuilds from
    # a finished cell over other images is not "finished" for this sample set
    _, fewer, _ = _grid(tmp_path, dataset={**grid.dataset.model_dump(mode="json"), "limit": 3})
    assert not plan_sweep(grid, cells, fewer).finished


def test_plan_refuses_cells_that_cannot_fit_and_fresh_archives(tmp_path):
    grid, samples, cells = _grid(tmp_path, resources={"gpu_memory_gb": 0.01})
    _finish(ResultStore(tmp_path), cells[0], samples, {"latency_p50_s": 0.1})
    plan = plan_sweep(grid, cells, samples, fresh=True)
    assert plan.archived is not None and (plan.archived / cells[0].cell_id / "costs.json").is_file()
    assert not plan.finished and not plan.todo  # archived, then both refused before any load
    assert set(plan.refused) == {c.cell_id for c in cells}
    assert all("GB" in reason for reason in plan.refused.values())


def test_publish_writes_results_and_exits_1_when_a_cell_failed(tmp_path, capsys):
    grid, samples, cells = _grid(tmp_path)
    plan = plan_sweep(grid, cells, samples)
    metrics = {"cider": 1.0, "latency_p50_s": 0.1, "peak_memory_gb": 1.0, "energy_kwh": 1e-6}
    outcomes = {
        cells[0].cell_id: CellOutcome(cells[0], "ok", metrics, {"weights": "toy", "backend": "hf"}),
        cells[1].cell_id: CellOutcome(cells[1], "failed", {}, {}, reason="oom: CUDA out of memory"),
    }
    timer = PhaseTimer()
    code, results = publish_results(plan, Execution(outcomes, ["a note"], None, "sqlite:///x.db"), timer)
    assert code == 1
    assert list(results["status"]) == ["ok", "failed"]
    saved = pd.read_csv(tmp_path / "results.csv")
    assert list(saved["cell_id"]) == [c.cell_id for c in cells]
    assert (tmp_path / "report.html").is_file() and (tmp_path / "pareto_front.csv").is_file()
    out = capsys.readouterr().out
    assert "note: a note" in out and "1 of 2 cells failed" in out and "oom: CUDA out of memory" in out
    assert timer.calls["report"] == 1 and timer.seconds["report"] > 0 and timer.calls["mlflow"] == 0


def test_phase_timer_sums_each_phase_and_refuses_unknown_ones():
    timer = PhaseTimer()
    for _ in range(2):
        with timer.phase("scoring"):
            pass
    assert timer.calls["scoring"] == 2 and set(timer.snapshot()) == set(PHASES)
    assert all(math.isfinite(v) for v in timer.snapshot().values())
    with pytest.raises(KeyError, match="phases are"), timer.phase("lunch"):
        pass


def _scored(samples, captions, cider):
    """A finished cell's caption table with the per-image quality columns scoring adds."""
    n = len(samples)
    table = pd.DataFrame({"sample_id": [s.sample_id for s in samples],
                          "image_id": [s.image_id for s in samples], "caption": captions, "error": "",
                          "batch_end_ts": 100.0, "cider": cider, "meteor": 0.2, "rouge_l": 0.5,
                          "batch_latency_sec": [0.10 + 0.01 * i for i in range(n)],
                          "processing_time_sec": 0.02, "bleu_testlen": 8.0, "bleu_reflen": 9.0})
    for k in range(1, 5):
        table[f"bleu_guess_{k}"] = 9.0 - k
        table[f"bleu_correct_{k}"] = 5.0 - k
    return table


class FakeTracker:
    parent_id = "parent"

    def __init__(self):
        self.extra: dict[str, tuple[dict, dict]] = {}

    def log_cell_extra(self, run_id, metrics, tags):
        self.extra[run_id] = (metrics, tags)

    def log_parent(self, metrics=None, artifacts=None, tags=None):
        self.parent = (metrics, artifacts)
        self.parent_tags = tags

    def finish(self, ok):
        self.ok = ok


def test_publish_adds_intervals_ties_and_the_degenerate_flag_from_per_image_tables(tmp_path, capsys):
    grid, samples, cells = _grid(tmp_path)
    plan = plan_sweep(grid, cells, samples)
    colours = ["red", "blue", "green", "pink", "gray", "black"]
    tables = [_scored(samples, [f"a {c} circle" for c in colours], [1.0, 1.4, 0.8, 1.2, 1.1, 0.9]),
              _scored(samples, ["a red circle"] * len(samples), [0.3, 1.4, 0.1, 0.2, 0.1, 0.1])]
    outcomes = {}
    for k, (cell, table) in enumerate(zip(cells, tables, strict=True)):
        plan.store.begin_cell(cell)
        plan.store.finish_cell(cell.cell_id, table, {})
        metrics = {"cider": float(table["cider"].mean()), "peak_memory_gb": 1.0, "energy_kwh": 1e-6,
                   "latency_p50_s": float(table["batch_latency_sec"].median())}
        outcomes[cell.cell_id] = CellOutcome(cell, "ok", metrics, {"weights": "toy", "backend": "hf"},
                                             run_id=f"run-{k}")
    tracker = FakeTracker()
    code, results = publish_results(plan, Execution(outcomes, [], tracker, "sqlite:///x.db"), PhaseTimer())
    assert code == 0
    saved = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)
    for column in ("cider_ci_low", "cider_ci_high", "pareto_tied", "degenerate_output", "bleu_4_ci_low",
                   "latency_p50_s_ci_high", "seconds_per_image_ci_low", "meteor_ci_high", "rouge_l_ci_low"):
        assert column in saved, column
    assert list(saved["degenerate_output"]) == [0.0, 1.0]
    assert (saved["cider_ci_low"] <= saved["cider"]).all()
    assert (saved["cider"] <= saved["cider_ci_high"]).all()
    assert saved.at[0, "pareto_tied"] == "latency,memory,energy"  # on every front: tied with itself
    out = capsys.readouterr().out
    low, high = results.at[0, "cider_ci_low"], results.at[0, "cider_ci_high"]
    assert f"1.07 [{low:.2f}, {high:.2f}]" in out  # CIDEr with its interval in the table
    assert "DEGENERATE" in out and "WARNING: DEGENERATE" in out and "ties (paired bootstrap" in out
    assert "top two:" in out
    html = (tmp_path / "report.html").read_text()
    assert "What is a tie" in html and "DEGENERATE" in html and "class='ci'" in html
    metrics, tags = tracker.extra["run-1"]
    assert metrics["degenerate_output"] == 1.0 and "cider_ci_low" in metrics and "pareto_tied" in tags
    assert set(tracker.extra) == {"run-0", "run-1"}
    # the recommendation: first section of the report, tags on the parent run (one per GPU size)
    assert html.index("Which cell to use") < html.index("Cells, ranked by CIDEr")
    best = results.sort_values("cider", ascending=False)["label"].iloc[0]
    assert {tracker.parent_tags[f"pick_{k}"] for k in ("any", "16gb", "24gb", "80gb")} == {best}
    assert f"choice (no constraint): {best}" in out
    assert "tied_with" in saved


def test_log_cell_extra_adds_metrics_and_tags_to_an_existing_child_run(tmp_path):
    from sweep.publish.tracking import SweepTracker, default_tracking_uri

    tracker = SweepTracker(default_tracking_uri(tmp_path), "extra", tmp_path / "mlartifacts", "extra", {})
    run_id = tracker.log_cell("cell-1", "m/fp32/t8", {"model": "m"}, {"cider": 1.0}, [])
    tracker.log_cell_extra(run_id, {"cider_ci_low": 0.9, "cider_ci_high": 1.1, "meteor_ci_low": math.nan,
                                    "degenerate_output": 0.0}, {"pareto_tied": "latency,memory"})
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    expected = {"cider": 1.0, "cider_ci_low": 0.9, "cider_ci_high": 1.1, "degenerate_output": 0.0}
    assert run.data.metrics == expected  # NaN left out
    assert run.data.tags["pareto_tied"] == "latency,memory"


def test_publish_reports_a_sweep_whose_every_cell_failed(tmp_path, capsys):
    grid, samples, cells = _grid(tmp_path)
    plan = plan_sweep(grid, cells, samples)
    reason = "load failed: no such model"
    outcomes = {c.cell_id: CellOutcome(c, "failed", {}, {}, reason=reason) for c in cells}
    code, results = publish_results(plan, Execution(outcomes, [], None, "sqlite:///x.db"), PhaseTimer())
    assert code == 1 and list(results["status"]) == ["failed", "failed"]
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "report.html").is_file()
    assert "2 of 2 cells failed" in capsys.readouterr().out
