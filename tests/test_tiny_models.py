"""Tiny random-weight VLMs: build, reload via Auto classes, generate; batched == unbatched; determinism."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from actors.tiny import BUILDERS, FAMILIES, MARKER_FILE, build_tiny_model, known_tiny_families

FAMILY_NAMES = sorted(BUILDERS)
# Different sizes and aspect ratios: dynamic-resolution families get different prompt lengths (left padding).
IMAGE_SIZES = [(64, 48), (32, 96), (80, 80)]  # (width, height)
GEN_KWARGS = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    images = []
    for i, (w, h) in enumerate(IMAGE_SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 80 * i)], -1)
        noise = rng.integers(0, 64, (h, w, 3))
        images.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return images


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {name: build_tiny_model(name, root / name, seed=0) for name in FAMILY_NAMES}


def _load(family: str, path):
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    auto_cls = getattr(transformers, FAMILIES[family].auto_model_class)
    model = auto_cls.from_pretrained(path, local_files_only=True).eval()
    return processor, model


def _prompt(family: str, processor) -> str:
    plain = FAMILIES[family].prompt
    if plain is not None:
        return plain
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}
    ]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


def _generate(family: str, processor, model, prompt: str, images: list[Image.Image]) -> list[list[int]]:
    fam = FAMILIES[family]
    batch_images = [[im] for im in images] if fam.nested_images else images
    inputs = processor(
        images=batch_images,
        text=[prompt] * len(images),
        return_tensors="pt",
        padding=True,
        **fam.processor_kwargs,
    )
    with torch.no_grad():
        out = model.generate(**inputs, **GEN_KWARGS)
    if not model.config.is_encoder_decoder:
        out = out[:, inputs["input_ids"].shape[1] :]
    return out.tolist()


def test_known_families_and_unknown_name():
    assert known_tiny_families()[:3] == ["llava", "qwen2_vl", "smolvlm"]
    assert set(known_tiny_families()) == set(FAMILIES)
    with pytest.raises(KeyError, match="llava"):
        build_tiny_model("no_such_family", "/nonexistent/x")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_generate_batched_matches_unbatched(family, built):
    import transformers

    path = built[family]
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["family"] == family and marker["seed"] == 0
    assert marker["transformers_version"] == transformers.__version__

    processor, model = _load(family, path)
    assert type(model).__name__ == FAMILIES[family].model_class
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.generation_config.do_sample is False
    assert model.generation_config.eos_token_id is not None
    if FAMILIES[family].prompt is None:
        assert processor.chat_template

    prompt = _prompt(family, processor)
    images = _images()
    singles = [_generate(family, processor, model, prompt, [im])[0] for im in images]
    batched = _generate(family, processor, model, prompt, images)
    assert all(len(tokens) >= 5 for tokens in singles)
    assert batched == singles


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_same_seed_same_weights(family, built, tmp_path):
    from safetensors.torch import load_file

    first = load_file(built[family] / "model.safetensors")
    again = build_tiny_model(family, tmp_path / family, seed=0)
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    # A finished build is reused, not rebuilt.
    mtime = (again / MARKER_FILE).stat().st_mtime_ns
    assert build_tiny_model(family, again, seed=0) == again
    assert (again / MARKER_FILE).stat().st_mtime_ns == mtime
