"""vLLM's `max_num_batched_tokens` at least the model's largest image in tokens (issue 26, item 4; vLLM
#34040): the rule as a table, the floor from the real tiny models' HF processors, and the logged reason.
The engine itself on vLLM's CPU build: tests/test_vllm_cpu.py."""

from __future__ import annotations

import json

import pytest

from actors.vllm_backend import engine_args_logged
from actors.vllm_tokens import SMALLEST_VLLM_DEFAULT, batched_tokens, image_token_floor, with_token_floor


@pytest.mark.parametrize(("value", "floor", "expected", "why"), [
    (16384, 1200, 16384, ""),  # the grid's value holds the largest image: kept
    (1200, 1200, 1200, ""),  # exactly one image per step: enough
    (1024, 16384, 16384, "raised from 1024 to 16384"),  # a Qwen2-VL image of 16,384 tokens
    (None, 576, None, ""),  # unset, a LLaVA image: vLLM's default (>= 4096) holds it
    (None, SMALLEST_VLLM_DEFAULT, None, ""),
    (None, SMALLEST_VLLM_DEFAULT + 1, SMALLEST_VLLM_DEFAULT + 1, "set to 4097"),  # above every default
    (2048, None, 2048, ""),  # the processor cannot say: nothing changed
    (None, None, None, ""),
])
def test_batched_tokens_floor(value, floor, expected, why):
    got, reason = batched_tokens(value, floor)
    assert got == expected
    assert reason.startswith(why) if why else reason == ""
    if why:
        assert "#34040" in reason and str(floor) in reason


def test_engine_arguments_raised_and_logged_with_the_reason():
    grid = {"model": "/m", "dtype": "bfloat16", "max_num_batched_tokens": 2048}
    kwargs, reason = with_token_floor(grid, 6000)
    assert kwargs == {"model": "/m", "dtype": "bfloat16", "max_num_batched_tokens": 6000}
    logged = json.loads(engine_args_logged(kwargs, reason))
    assert logged["max_num_batched_tokens"] == 6000
    assert logged["max_num_batched_tokens_reason"].startswith("raised from 2048 to 6000")
    unset, none = with_token_floor({"model": "/m"}, 100)
    assert unset == {"model": "/m"} and none == ""  # vLLM's default stays
    assert "max_num_batched_tokens_reason" not in json.loads(engine_args_logged(unset, none))


def test_the_floor_comes_from_the_models_processor():
    """The tiny Qwen2-VL's processor (dynamic resolution, capped at a few tokens per image) and the same
    processor widened to a real checkpoint's pixel range (up to 16,384 tokens at 3584 px); LLaVA's fixed
    count; a processor that cannot say gives None."""
    from benchmarks import model_side
    from benchmarks.padding import widen_pixels

    qwen = model_side.load_captioner("tiny:qwen2_vl", "fp32").processor
    small = image_token_floor(qwen)
    widen_pixels(qwen, 56 * 56, 28 * 28 * 16384)
    assert small is not None and image_token_floor(qwen) == 16384 > small
    assert image_token_floor(qwen, ((448, 448),)) == 256  # 448 px: 16 x 16 merged patches
    llava = model_side.load_captioner("tiny:llava", "fp32").processor
    assert image_token_floor(llava) == image_token_floor(llava, ((224, 224),)) > 0  # one count for any size
    assert image_token_floor(object()) is None
