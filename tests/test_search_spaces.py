"""The ready grids validate (with the dataset pointed at coco-mini) and download nothing."""

from pathlib import Path

import pytest

from actors.registry import known_families
from sweep.data.sources import load_coco_samples
from sweep.grid.cells import expand_cells
from sweep.grid.config import load_grid

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def local(coco: Path, path: Path | None = None) -> list[str]:
    if path is not None and "video" in path.name:
        return [f"dataset.videos={coco / 'val2017'}"]  # any existing folder: validation only
    if path is not None and path.name.startswith("hf_"):
        return []  # a hub id: validated as given, read from the local cache only when the sweep runs
    if path is not None and path.name.startswith("karpathy"):  # any existing file and folder: validation only
        return [f"dataset.split_file={coco / 'captions_val2017.json'}", f"dataset.images={coco}"]
    return [f"dataset.captions={coco / 'captions_val2017.json'}", f"dataset.images={coco / 'val2017'}"]


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_ready_grid_validates(path, coco_mini, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    grid = load_grid(path, local(coco_mini, path))
    for model in grid.models:
        assert model.family is None or model.family in known_families()
    assert expand_cells(grid, "fp")


def test_llava_study_is_fp16_vs_int8_lm_vs_int8_vision_on_first_images(coco_mini):
    grid = load_grid(SPACES / "llava_quantization.yaml", [*local(coco_mini), "dataset.limit=5"])
    assert [m.id for m in grid.models] == ["llava-hf/llava-1.5-7b-hf"]
    assert grid.precisions == ["fp16", "int8", "int8-vision"]
    samples = load_coco_samples(grid.dataset)
    assert [s.image_id for s in samples] == sorted(s.image_id for s in samples)
    import json

    first = [img["id"] for img in json.loads((coco_mini / "captions_val2017.json").read_text())["images"]][:5]
    assert sorted(s.image_id for s in samples) == sorted(first)


def test_seed_grid_names_every_requested_model(coco_mini):
    grid = load_grid(SPACES / "seed_models.yaml", local(coco_mini))
    ids = " ".join(m.id for m in grid.models)
    for needle in ("Qwen2-VL-2B", "SmolVLM2-2.2B", "InternVL2-2B", "Phi-3-vision", "Phi-3.5-vision",
                   "llava-1.5-7b", "llava-v1.6-vicuna-7b", "llava-v1.6-mistral-7b", "instructblip",
                   "deepseek-vl-1.3b", "MobileVLM_V2-3B", "blip2", "paligemma", "Florence-2", "git-base",
                   "Qwen2.5-VL"):
        assert needle in ids, needle
    remote = {m.id for m in grid.models if m.trust_remote_code}
    assert "Qwen/Qwen2-VL-2B-Instruct" not in remote and "OpenGVLab/InternVL2-2B" in remote
