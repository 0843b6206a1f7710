"""A user's own model (CLIP encoder + projection + Llama) plugged in by import path runs as a sweep cell."""

from pathlib import Path

import pytest
from conftest import grid_dict

from actors.custom import CustomLoaderError, import_loader
from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import GridError, parse_grid
from sweep.results.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def run_from_repo_root(monkeypatch):
    """`examples.*` lives in the checkout, not in the installed packages: a user runs the sweep from the
    repository root, which is then on the driver's path, and embedded Ray puts the driver's working
    directory on its workers' path. The same here, whatever directory pytest was started in."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.mark.slow  # a sweep on Ray
def test_custom_model_runs_through_a_sweep_cell(coco_mini, tmp_path):
    grid = parse_grid(grid_dict(
        coco_mini, tmp_path,
        models=[{"id": "my-clip-llama", "loader": "examples.custom_clip_llama:build"}],
        max_new_tokens=[6],
        dataset={"captions": str(coco_mini / "captions_val2017.json"), "images": str(coco_mini / "val2017"),
                 "limit": 10},
        energy={"enabled": False},  # codecarbon adds seconds per actor; not what this test is about
    ))
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    code = info.exit_code
    assert code == 0, info.results[["label", "reason"]]
    row = info.results.iloc[0]
    assert row["backend"] == "custom" and row["weights"] == "random"
    table = ResultStore(info.output_dir).read_captions(cells[0].cell_id)
    assert len(table) == 10 and (table["generated_tokens"] == 6).all()
    assert table["caption"].str.len().gt(0).all()
    run = info.tracker.client.get_run(row_run_id(info))
    assert run.data.params["loader"] == "examples.custom_clip_llama:build"
    assert run.data.params["family"] == "custom"


def row_run_id(info) -> str:
    tracker = info.tracker
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_id}'")
    return runs[0].info.run_id


def test_loader_path_errors_are_clear(coco_mini, tmp_path):
    with pytest.raises(GridError) as info:
        parse_grid(grid_dict(coco_mini, tmp_path, models=[{"id": "x", "loader": "no colon here"}]))
    assert "models.0.loader" in str(info.value)
    with pytest.raises(CustomLoaderError, match="cannot import"):
        import_loader("not_a_package.anywhere:build")
    with pytest.raises(CustomLoaderError, match="no callable 'missing'"):
        import_loader("examples.custom_clip_llama:missing")
