"""Issue 30: what a second break-it pass found. Inputs never overwritten, pixels as the file means them,
the bytes decoded are the bytes hashed, only regular files read, retries only of what can succeed,
pruned cells read back, prompts told apart, and the smaller ones. Cheap: no Ray unless marked slow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sweep.run import main

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"


def _dataset(root: Path, n: int = 3, captions_name: str = "captions.json") -> tuple[Path, Path]:
    data = json.loads((SHAPES / "captions.json").read_text())
    images = data["images"][:n]
    ids = {img["id"] for img in images}
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for img in images:
        shutil.copy(SHAPES / "images" / img["file_name"], folder / img["file_name"])
    captions = root / captions_name
    captions.write_text(json.dumps({"images": images,
                                    "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))
    return captions, folder


def _grid_file(tmp_path: Path, captions: Path, images: Path, out: Path, **extra) -> Path:
    grid = {"name": "again", "dataset": {"captions": str(captions), "images": str(images)},
            "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small"}],
            "precisions": ["fp32"], "max_new_tokens": [8], "output_dir": str(out), **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


# --- 1: inputs are never overwritten -------------------------------------------------------------------

@pytest.mark.parametrize("dry", [True, False])
def test_an_output_dir_holding_the_captions_file_among_the_store_paths_is_refused(tmp_path, capsys, dry):
    captions, images = _dataset(tmp_path, captions_name="samples.json")
    before = captions.read_bytes()
    grid = _grid_file(tmp_path, captions, images, tmp_path)
    assert main([str(grid), *(["--dry-run"] if dry else [])]) == 2
    err = capsys.readouterr().err
    assert "dataset.captions" in err and str(captions) in err and f"output_dir {tmp_path}" in err
    assert captions.read_bytes() == before
    assert not (tmp_path / "cells").exists() and not (tmp_path / "sweep.log").exists()


def test_an_output_dir_inside_the_images_folder_or_whose_cells_hold_it_is_refused(tmp_path, capsys):
    captions, images = _dataset(tmp_path)
    assert main([str(_grid_file(tmp_path, captions, images, images / "out")), "--dry-run"]) == 2
    assert "inside dataset.images" in capsys.readouterr().err
    assert main([str(_grid_file(tmp_path, captions, images, images)), "--dry-run"]) == 2
    assert "inside dataset.images" in capsys.readouterr().err
    cells = tmp_path / "out" / "cells"
    cells.mkdir(parents=True)
    moved = shutil.move(str(images), str(cells / "images"))
    assert main([str(_grid_file(tmp_path, captions, Path(moved), tmp_path / "out")), "--dry-run"]) == 2
    assert "would overwrite dataset.images" in capsys.readouterr().err
    # a dataset beside the output dir (the usual layout) is fine
    assert main([str(_grid_file(tmp_path, captions, Path(moved), tmp_path / "elsewhere")), "--dry-run"]) == 0
