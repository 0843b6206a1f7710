"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention ViT with 2x2 patch merger +
Qwen2 decoder with M-RoPE. Same tokenizer, chat template and processor layout as Qwen2-VL.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: ChatML chat template with
``<|vision_start|><|image_pad|><|vision_end|>`` (``<|image_pad|>`` expanded to ``grid_t*grid_h*grid_w / 4``).
"""

from __future__ import annotations

from pathlib import Path

from .common import finish
from .configs import DECODER
from .qwen2_vl import FACTOR, make_qwen_processor, make_qwen_tokenizer, qwen_config, qwen_generation_config


def build(out_dir: Path, seed: int) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer = make_qwen_tokenizer()
    config = qwen_config(
        Qwen2_5_VLConfig,
        tokenizer,
        hidden_size=32,
        intermediate_size=64,
        out_hidden_size=DECODER["hidden_size"],
        window_size=FACTOR * 2,  # 2x2 merged tokens per attention window
        fullatt_block_indexes=[1],
    )
    processor = make_qwen_processor(Qwen2_5_VLProcessor, tokenizer)
    gen = qwen_generation_config(tokenizer)
    finish(Qwen2_5_VLForConditionalGeneration, config, processor, out_dir, seed, gen)
