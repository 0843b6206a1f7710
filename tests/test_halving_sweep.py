"""Pareto-aware successive halving end to end (issue 17): the zoo's small llava over 16 shapes images at 4
and 16 tokens (each its own generation), rungs [8, 16], memory the only objective: at 8 images t16 is
better on CIDEr with confidence at the same weights, so t4 is pruned there, and says so in results.csv,
the report and MLflow; t16, on the front, runs to the end. A re-run with `strategy: full` completes t4
from where it stopped (its 8 stored images are not captioned again), and t4 is not on that front."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sweep_fixtures import own_ray

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.store import ResultStore

pytestmark = pytest.mark.slow  # two sweeps on Ray (one Ray: sweep_fixtures.own_ray)

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"


def sweep(out: Path, strategy: str):
    search = {"strategy": strategy}
    if strategy == "pareto_halving":
        search.update(rungs=[8], objectives=["memory"])
    grid = parse_grid({
        "name": "halving",
        "dataset": {"captions": str(SHAPES / "captions.json"), "images": str(SHAPES / "images"), "limit": 16,
                    "image_max_side": 64},
        "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small", "family": "llava"}],
        "precisions": ["fp32"],
        "max_new_tokens": [4, 16],
        "prompts": ["Describe this image in one sentence."],
        "generation": {"share_token_budgets": False},
        # one at a time, t16 first (the largest budget of a load leads): t4 meets it at its first rung
        "resources": {"local_gpus": 1, "batch_size": 8},
        "energy": {"enabled": False},
        "search": search,
        "output_dir": str(out),
    })
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    return run_sweep(grid, cells, samples), {c.max_new_tokens: c for c in cells}


def test_dominated_cell_pruned_at_the_first_rung_then_completed_by_a_full_rerun(tmp_path):
    with own_ray(1):  # the grids' one GPU (one cell at a time), one start for the halving and the full run
        _prune_then_complete(tmp_path)


def _prune_then_complete(tmp_path: Path) -> None:
    halving, cells = sweep(tmp_path, "pareto_halving")
    assert halving.exit_code == 0  # a pruned cell is a result, not a failure
    results = pd.read_csv(tmp_path / "results.csv").set_index("max_new_tokens")
    assert list(results["status"]) == ["pruned", "ok"]
    t4 = results.loc[4]
    assert t4["reason"].startswith("dominated by small/fp32/t16 at 8 images: CIDEr −")
    assert t4["images_seen"] == 8 and t4["pruned_rung"] == 1
    assert t4["cider_ci_low"] < t4["cider"] < t4["cider_ci_high"]  # partial metrics keep their intervals
    assert "memory" in results.loc[16, "pareto"] and pd.isna(t4["pareto"])
    store = ResultStore(tmp_path)
    first = store.read_captions(cells[4].cell_id)
    assert len(first) == 8 and len(store.read_captions(cells[16].cell_id)) == 16
    report = (tmp_path / "report.html").read_text()
    assert "class='pruned'" in report and "dominated by small/fp32/t16" in report
    from sweep.results.table_check import check_output

    assert check_output(tmp_path) == []  # a pruned cell's rows and results are as declared

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("vlm-sweep").experiment_id,
                              filter_string=f"tags.cell_id = '{cells[4].cell_id}'")
    run = runs[0]
    assert run.data.tags["status"] == "pruned" and run.data.params["pruned_by"] == cells[16].cell_id
    assert run.data.metrics["images_seen"] == 8 and run.data.metrics["pruned_rung"] == 1

    # issue 30: a re-run of the same halving grid reads the pruned cell back: no Ray, no new MLflow run
    again, _ = sweep(tmp_path, "pareto_halving")
    assert again.exit_code == 0 and list(again.results["status"]) == ["pruned", "ok"]
    assert again.results["reused"].all()
    assert len(client.search_runs(client.get_experiment_by_name("vlm-sweep").experiment_id,
                                  filter_string=f"tags.cell_id = '{cells[4].cell_id}'")) == 1
    assert len(store.read_captions(cells[4].cell_id)) == 8

    full, _ = sweep(tmp_path, "full")  # the same output dir: completes the pruned cell
    assert full.exit_code == 0
    results = pd.read_csv(tmp_path / "results.csv").set_index("max_new_tokens")
    assert list(results["status"]) == ["ok", "ok"]
    table = store.read_captions(cells[4].cell_id)
    assert len(table) == 16
    kept = table.set_index("sample_id").loc[first["sample_id"], "attempt"]
    assert list(kept) == list(first["attempt"])  # its 8 images of the first run, not captioned again
    assert "memory" not in str(results.loc[4, "pareto"])  # the pruned cell is off the full grid's front
