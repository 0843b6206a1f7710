"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention ViT with 2x2 patch merger +
Qwen2 decoder with M-RoPE. Same tokenizer, chat template and processor layout as Qwen2-VL.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: ChatML chat template with
``<|vision_start|><|image_pad|><|vision_end|>`` (``<|image_pad|>`` expanded to ``grid_t*grid_h*grid_w / 4``).
"""

from __future__ import annotations

from pathlib import Path

from .common import QWEN2_VL_CHAT_TEMPLATE, save_model_and_processor, seed_everything, spread_weights
from .qwen2_vl import (
    MAX_PIXELS,
    MERGE_SIZE,
    MIN_PIXELS,
    PATCH_SIZE,
    make_qwen_tokenizer,
    qwen_generation_config,
    qwen_text_kwargs,
    qwen_vision_token_ids,
)


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = make_qwen_tokenizer()
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE),
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    text_kwargs = qwen_text_kwargs(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=text_kwargs,
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=PATCH_SIZE,
            spatial_merge_size=MERGE_SIZE,
            temporal_patch_size=2,
            out_hidden_size=text_kwargs["hidden_size"],
            window_size=PATCH_SIZE * MERGE_SIZE * 2,  # 2x2 merged tokens per attention window
            fullatt_block_indexes=[1],
        ),
        **qwen_vision_token_ids(tokenizer),
    )
    seed_everything(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, qwen_generation_config(tokenizer))
