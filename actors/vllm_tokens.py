"""vLLM's `max_num_batched_tokens` at least one image's worth of tokens (issue 26, item 4).

vLLM schedules a multimodal item's tokens, and budgets its vision encoder, within one engine step of
`max_num_batched_tokens`: an image whose placeholder tokens exceed it is rejected (vLLM #34040). A grid
that sets the value lower than the model's largest image (Qwen2-VL: up to 16,384 tokens per image) would
fail on its large images only, so the engine's value is raised to that floor, and the raise is logged with
the cell's engine arguments. Pure functions, but `image_token_floor` (it asks the HF processor)."""

from __future__ import annotations

from typing import Any

# The smallest default vLLM 0.32's offline `LLM` picks (`EngineArgs.get_batch_defaults`): 4096 on CPU,
# 8192 or 16384 on CUDA GPUs. A grid that leaves the value unset keeps vLLM's default unless the floor is
# above this one.
SMALLEST_VLLM_DEFAULT = 4096

# Image sizes (height, width) the processor is asked about: squares up to a real Qwen2-VL checkpoint's
# largest (3584 px: 16,384 tokens), and two long strips for tiling processors (LLaVA-NeXT's grids).
PROBE_SIZES = ((224, 224), (448, 448), (896, 896), (1344, 1344), (2048, 2048), (3584, 3584),
               (336, 1344), (1344, 336))


def image_token_floor(processor: Any, sizes: tuple[tuple[int, int], ...] = PROBE_SIZES) -> int | None:
    """The most placeholder tokens the model's HF processor gives one image, over `sizes` (its own count,
    `_get_num_multimodal_tokens`, which vLLM reads too: no pixels are processed); None where the
    processor cannot say."""
    count = getattr(processor, "_get_num_multimodal_tokens", None)
    if count is None:
        return None
    try:
        tokens = count(image_sizes=[list(size) for size in sizes]).num_image_tokens
    except (AttributeError, NotImplementedError, TypeError, ValueError, KeyError):
        return None
    return max((int(n) for n in tokens), default=None)


def batched_tokens(value: int | None, floor: int | None) -> tuple[int | None, str]:
    """(the `max_num_batched_tokens` to build the engine with, None for vLLM's default; why it differs
    from `value`, "" when it does not). `value`: the grid's (or the operator's) setting; `floor`: the
    model's largest image in tokens (None: unknown, nothing changed)."""
    if floor is None:
        return value, ""
    if value is None:
        if floor <= SMALLEST_VLLM_DEFAULT:
            return None, ""
        return floor, (f"set to {floor}: the model's largest image is {floor} tokens, above vLLM's "
                       f"smallest default ({SMALLEST_VLLM_DEFAULT}), and vLLM rejects an image larger than "
                       "max_num_batched_tokens (vLLM #34040)")
    if value >= floor:
        return value, ""
    return floor, (f"raised from {value} to {floor}: the model's largest image is {floor} tokens, and vLLM "
                   "rejects an image larger than max_num_batched_tokens (vLLM #34040)")


def with_token_floor(kwargs: dict[str, Any], floor: int | None) -> tuple[dict[str, Any], str]:
    """The engine arguments with `max_num_batched_tokens` at least `floor` (`batched_tokens`), and why."""
    value, reason = batched_tokens(kwargs.get("max_num_batched_tokens"), floor)
    out = {k: v for k, v in kwargs.items() if k != "max_num_batched_tokens"}
    if value is not None:
        out["max_num_batched_tokens"] = value
    return out, reason
