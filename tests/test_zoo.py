"""The zoo: a deterministic synthetic COCO-format dataset, and tiny LLaVA captioners trained on it that
caption its test split far better than the same architecture with random weights."""

import json
from pathlib import Path

import pytest
from PIL import Image

from sweep.data.sources import load_coco_samples
from sweep.grid.config import DatasetConfig
from zoo.trainer import shapes

REPO = Path(__file__).resolve().parents[1]
TEST_SPLIT = REPO / "zoo" / "shapes-data" / "test"
SMALL = REPO / "zoo" / "shapes-llava-small"
BASE = REPO / "zoo" / "shapes-llava-base"
PROMPT = "Describe this image in one sentence."


def test_generator_is_deterministic_and_splits_differ():
    assert shapes.make_split("train", 0, 20) == shapes.make_split("train", 0, 20)
    assert shapes.make_split("train", 0, 20) != shapes.make_split("train", 1, 20)
    ids = {split: {s.image_id for s in shapes.make_split(split)} for split in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"])
    assert not (ids["val"] & ids["test"])
    scene = shapes.make_split("test", 0, 1)[0]
    assert shapes.render(scene).tobytes() == shapes.render(scene).tobytes()


def test_written_split_is_coco_with_five_distinct_captions(tmp_path):
    a = shapes.write_split(tmp_path / "a", "test", n=12)
    b = shapes.write_split(tmp_path / "b", "test", n=12)
    assert (a / "captions.json").read_text() == (b / "captions.json").read_text()
    for png in sorted((a / "images").iterdir()):
        assert Image.open(png).tobytes() == Image.open(b / "images" / png.name).tobytes()
    data = json.loads((a / "captions.json").read_text())
    assert {"images", "annotations"} <= set(data)
    assert all({"id", "file_name"} <= set(img) for img in data["images"])
    assert all({"image_id", "caption"} <= set(ann) for ann in data["annotations"])
    samples = load_coco_samples(DatasetConfig(captions=a / "captions.json", images=a / "images"))
    assert len(samples) == 12
    vocab = set(shapes.vocabulary())
    for s in samples:
        assert len(s.references) == 5 and len(set(s.references)) == 5
        assert Path(s.path).is_file() and s.content_sha1
        assert all(set(r.split()) <= vocab for r in s.references)


def test_committed_test_split_is_what_the_generator_writes():
    data = json.loads((TEST_SPLIT / "captions.json").read_text())
    scenes = shapes.make_split("test")
    assert data == shapes.coco_json(scenes, data["info"]["description"])
    for scene in scenes[:10]:
        assert Image.open(TEST_SPLIT / "images" / scene.file_name).tobytes() == shapes.render(scene).tobytes()


def _caption_split(captioner, samples, max_new_tokens):
    from actors.contract import CaptionRequest

    preds = {}
    kwargs = {"max_new_tokens": max_new_tokens, "num_beams": 1, "do_sample": False}
    for start in range(0, len(samples), 16):
        batch = samples[start : start + 16]
        reqs = [CaptionRequest(s.sample_id, [Image.open(s.path).convert("RGB")], PROMPT) for s in batch]
        for s, res in zip(batch, captioner.generate(reqs, kwargs), strict=True):
            preds[s.sample_id] = res.caption
    return preds


@pytest.mark.slow  # JVM scoring
def test_trained_captioners_beat_random_weights_and_base_beats_small():
    from actors.backends import make_captioner
    from sweep.quality.scoring import CaptionScorer

    meta = json.loads((SMALL / "ZOO_MODEL.json").read_text())
    assert meta["toy"] is True and "synthetic" in meta["description"]
    samples = load_coco_samples(
        DatasetConfig(captions=TEST_SPLIT / "captions.json", images=TEST_SPLIT / "images")
    )
    refs = {s.sample_id: list(s.references) for s in samples}
    trained = make_captioner(str(SMALL), "llava", None, False, "fp32", "hf")
    base = make_captioner(str(BASE), "llava", None, False, "fp32", "hf")
    random_weights = make_captioner(str(SMALL), "llava", None, False, "fp32", "hf", weights_mode="dummy")
    assert random_weights.report.weights == "random"
    with CaptionScorer(spice=False) as scorer:
        cider = {
            "trained t16": scorer.score(_caption_split(trained, samples, 16), refs)["cider"],
            "trained t4": scorer.score(_caption_split(trained, samples, 4), refs)["cider"],
            "random t16": scorer.score(_caption_split(random_weights, samples, 16), refs)["cider"],
            "base t16": scorer.score(_caption_split(base, samples, 16), refs)["cider"],
        }
    print("CIDEr on the shapes test split:", {k: round(v, 3) for k, v in cider.items()})
    assert cider["trained t16"] > 0.5
    assert cider["trained t16"] > 5 * cider["random t16"]
    assert cider["trained t4"] < cider["trained t16"]
    assert cider["base t16"] > 1.1 * cider["trained t16"]  # the larger model wins quality
