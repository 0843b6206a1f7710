"""Invalid grids fail before Ray starts, naming every bad field at once."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import grid_dict

from sweep.grid.config import GridError, load_grid, parse_grid


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(GridError) as info:
        parse_grid(data, "grid.yaml")
    return dict(info.value.problems)


def test_valid_grid_has_documented_defaults(coco_mini, tmp_path):
    grid = parse_grid(grid_dict(coco_mini, tmp_path))
    assert grid.backend == "auto"
    assert grid.generation.num_beams is None and grid.generation.do_sample is False  # family default
    assert grid.resources.batch_size == 8 and grid.resources.replicas == 1
    assert grid.tracking.uri is None


def test_every_problem_is_reported_at_once_with_its_field(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path)
    data["precisions"] = ["fp32", "int3"]
    data["max_new_tokens"] = [8, -2]
    data["dataset"]["captions"] = str(tmp_path / "nope.json")
    data["colour"] = "blue"
    problems = problems_of(data)
    assert set(problems) == {"precisions.1", "max_new_tokens", "dataset.captions", "colour"}
    assert "'fp32'" in problems["precisions.1"] and "'nf4'" in problems["precisions.1"]
    assert "-2" in problems["max_new_tokens"]
    assert "nope.json" in problems["dataset.captions"]
    assert problems["colour"] == "unknown field"


def test_nested_unknown_and_missing_fields(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path)
    data["resources"] = {"batch_size": 0, "gpus": 2}
    data["models"] = [{"name": "x"}]
    problems = problems_of(data)
    assert problems["resources.gpus"] == "unknown field"
    assert "greater than or equal to 1" in problems["resources.batch_size"]
    assert problems["models.0.id"] == "required field is missing"


def test_backend_choices(coco_mini, tmp_path):
    problems = problems_of({**grid_dict(coco_mini, tmp_path), "backend": "tensorrt"})
    assert "'auto'" in problems["backend"] and "'vllm'" in problems["backend"]
    assert parse_grid({**grid_dict(coco_mini, tmp_path), "backend": "vllm"}).backend == "vllm"


def test_duplicate_model_names_rejected(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path, models=[{"id": "a/llava"}, {"id": "b/llava"}])
    assert "repeated" in problems_of(data)["<grid>"]


def test_overrides_apply_before_validation(coco_mini, tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid_dict(coco_mini, tmp_path)))
    grid = load_grid(path, ["dataset.limit=5", "precisions=[fp16, nf4]"])
    assert grid.dataset.limit == 5 and grid.precisions == ["fp16", "nf4"]
    with pytest.raises(GridError) as info:
        load_grid(path, ["dataset.limit=-1"])
    assert "dataset.limit" in str(info.value)


def test_cli_exits_2_before_ray_starts(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path)
    data["precisions"] = ["fp64"]
    data["max_new_tokens"] = [0]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "sweep.run", str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "precisions.0" in proc.stderr and "max_new_tokens" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    assert not (tmp_path / "tune").exists()


def test_missing_grid_file(tmp_path):
    with pytest.raises(GridError) as info:
        load_grid(tmp_path / "absent.yaml")
    assert "grid file not found" in str(info.value)
