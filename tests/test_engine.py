"""The engine's phases on their own: plan (what the store holds, what cannot fit), publish (files, exit
code, summary) and the phase timer, without Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sweep.cells import expand_cells
from sweep.config import parse_grid
from sweep.data import dataset_fingerprint, load_coco_samples
from sweep.engine import Execution, plan_sweep, publish_results
from sweep.phases import PHASES, PhaseTimer
from sweep.recorder import CellOutcome
from sweep.store import ResultStore

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
    assert (tmp_path / "samples.json").is_file()  # what `python -m sweep.report` rebuilds from
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
