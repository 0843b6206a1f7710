"""The random-weight test-model builders (actors.tiny) themselves: what a build writes and loads as, when a
build is reused or redone, that the weights are a function of the seed, and the config values other tests
rely on. Prompting and generating with these models is the family adapters' (tests/test_families.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actors.registry import get_family, known_families
from actors.resolve import resolve_model
from actors.tiny import (
    FAMILIES,
    MARKER_FILE,
    TinyFamily,
    build_tiny_model,
    builder_digest,
    known_tiny_families,
)

FAMILY_NAMES = known_tiny_families()


@pytest.fixture(scope="module")
def built(tiny_model_cache: Path) -> dict[str, Path]:
    """The folders ``tiny:<family>`` resolves to (seed 0), shared with the other tests of the session."""
    return {name: Path(resolve_model(f"tiny:{name}")[0]) for name in FAMILY_NAMES}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def _marker(path: Path) -> dict:
    return json.loads((path / MARKER_FILE).read_text())


def test_known_families_match_the_registry_and_unknown_name_fails():
    assert FAMILY_NAMES[:3] == ["llava", "qwen2_vl", "smolvlm"]
    # every family that runs offline has a tiny model, loaded by the Auto class its adapter uses
    native = {name for name in known_families() if not get_family(name).requires_remote_code}
    assert set(FAMILY_NAMES) == native
    for name in FAMILY_NAMES:
        assert FAMILIES[name].auto_model_class == get_family(name).auto_class, name
    with pytest.raises(KeyError, match="llava"):
        build_tiny_model("no_such_family", "/nonexistent/x")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_folder_loads_with_the_recorded_classes(family, built):
    import transformers

    path = built[family]
    marker = _marker(path)
    assert marker == {
        "family": family,
        "seed": 0,
        "transformers_version": transformers.__version__,
        "auto_model_class": FAMILIES[family].auto_model_class,
        "model_class": FAMILIES[family].model_class,
        "builder": builder_digest(FAMILIES[family]),  # the builder's source: a changed builder rebuilds
    }
    processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    model = getattr(transformers, marker["auto_model_class"]).from_pretrained(path, local_files_only=True)
    assert type(model).__name__ == marker["model_class"]
    tokenizer = getattr(processor, "tokenizer", processor)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.generation_config.do_sample is False and model.generation_config.num_beams == 1
    assert model.generation_config.eos_token_id is not None
    # a chat-template family's build ships its template (Phi-4-MM's processor drops it on load: the
    # tokenizer keeps it); a plain-prompt family's has none
    has_template = bool(processor.chat_template or getattr(tokenizer, "chat_template", None))
    assert has_template == get_family(family).uses_chat_template


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_decoder_head_dim_is_64(family, built):
    """vLLM's CPU attention needs head_dim >= 64 (tests/test_vllm_cpu.py captions with the tiny llava)."""
    import transformers

    text = transformers.AutoConfig.from_pretrained(built[family]).get_text_config(decoder=True)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert head_dim == 64, (family, head_dim)


def test_llava_config_as_vllm_reads_it(built):
    import transformers

    config = transformers.AutoConfig.from_pretrained(built["llava"])
    assert config.text_config.head_dim == 64 and config.text_config.hidden_size == 128
    # 32-px images in 8-px patches: 16 image tokens (CLIP's CLS dropped by the "default" strategy)
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (32, 8)
    assert config.image_seq_length == 16
    assert (config.vision_feature_select_strategy, config.vision_feature_layer) == ("default", -2)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_same_seed_same_weights(family, built, tmp_path):
    first = _weights(built[family])
    second = _weights(build_tiny_model(family, tmp_path / family, seed=0))
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_finished_build_is_reused_and_a_changed_marker_rebuilds(tmp_path):
    path = build_tiny_model("llava", tmp_path / "llava", seed=0)
    seed0 = _weights(path)
    mtime = (path / MARKER_FILE).stat().st_mtime_ns
    assert build_tiny_model("llava", path, seed=0) == path
    assert (path / MARKER_FILE).stat().st_mtime_ns == mtime  # reused, not rebuilt

    build_tiny_model("llava", path, seed=1)  # another seed: rebuilt in place, with other weights
    assert _marker(path)["seed"] == 1
    seed1 = _weights(path)
    assert seed1.keys() == seed0.keys()
    assert any(not torch.equal(tensor, seed0[name]) for name, tensor in seed1.items())

    marker = _marker(path)
    (path / MARKER_FILE).write_text(json.dumps({**marker, "transformers_version": "0.0.0"}))
    build_tiny_model("llava", path, seed=1)  # made by another transformers: rebuilt
    assert _marker(path) == marker
    (path / MARKER_FILE).write_text(json.dumps({**marker, "builder": "0" * 16}))
    build_tiny_model("llava", path, seed=1)  # made by another version of the builder: rebuilt
    assert _marker(path) == marker
    assert all(torch.equal(t, seed1[n]) for n, t in _weights(path).items())


def test_foreign_content_is_replaced_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    foreign = tmp_path / "git"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a model")
    assert build_tiny_model("git", foreign) == foreign
    assert not (foreign / "notes.txt").exists() and _marker(foreign)["family"] == "git"

    def broken(out_dir: Path, seed: int) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("builder failed")

    monkeypatch.setitem(FAMILIES, "git", TinyFamily(broken, "GitForCausalLM"))
    with pytest.raises(RuntimeError, match="builder failed"):
        build_tiny_model("git", tmp_path / "fresh")
    with pytest.raises(RuntimeError, match="builder failed"):
        build_tiny_model("git", foreign, seed=5)  # a rebuild that fails keeps the finished build
    assert sorted(p.name for p in tmp_path.iterdir()) == ["git"]  # no half-built or temporary folder
    assert _marker(foreign)["seed"] == 0
