"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): ViT with 2x2 patch merger + Qwen2 decoder with M-RoPE.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: ChatML chat template with
``<|vision_start|><|image_pad|><|vision_end|>``; the processor expands ``<|image_pad|>`` to
``grid_t*grid_h*grid_w / 4`` tokens (dynamic resolution, so different image sizes give different lengths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import QWEN2_VL_CHAT_TEMPLATE, finish, greedy_generation_config, make_tokenizer
from .configs import DECODER, text_config

PATCH_SIZE = 14
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28
MIN_PIXELS = FACTOR * FACTOR  # 1 merged token
MAX_PIXELS = FACTOR * FACTOR * 6  # at most 6 merged tokens per image

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_VISION_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def make_qwen_tokenizer():
    """Qwen-style tokenizer: no BOS, eos ``<|im_end|>``, pad ``<|endoftext|>``, ChatML chat template."""
    return make_tokenizer(
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        add_bos_token=False,
        base_special_tokens=QWEN_SPECIAL_TOKENS,
        extra_special_tokens=QWEN_VISION_TOKENS,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def make_qwen_processor(processor_class, tokenizer):
    """``processor_class`` with Qwen2-VL image and video processors of 1 to 6 merged tokens per image."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    return processor_class(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE),
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def qwen_generation_config(tokenizer):
    gen = greedy_generation_config(tokenizer)
    # Like the real checkpoints: stop on <|im_end|> or <|endoftext|>.
    gen.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    return gen


def qwen_config(config_class, tokenizer, **vision: Any):
    """``config_class``: Qwen2 decoder + a 2-layer ViT with 2x2 patch merger, sized by ``vision``."""
    # mrope_section must sum to head_dim / 2 = 32 (the real 7B uses [16, 24, 24] for head_dim 128)
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]}
    patches = dict(patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE, temporal_patch_size=2)
    return config_class(
        text_config=text_config(tokenizer, rope_parameters=rope),
        vision_config=dict(depth=2, num_heads=2, **patches, **vision),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )


def build(out_dir: Path, seed: int) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer = make_qwen_tokenizer()
    merger_output = DECODER["hidden_size"]  # the vision config's hidden_size: what the merger outputs
    config = qwen_config(Qwen2VLConfig, tokenizer, embed_dim=32, mlp_ratio=2, hidden_size=merger_output)
    processor = make_qwen_processor(Qwen2VLProcessor, tokenizer)
    gen = qwen_generation_config(tokenizer)
    finish(Qwen2VLForConditionalGeneration, config, processor, out_dir, seed, gen)
