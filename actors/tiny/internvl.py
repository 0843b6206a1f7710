"""InternVL 3 (native ``InternVLForConditionalGeneration``): InternViT + pixel-shuffle MLP projector + Qwen2.

Load with ``AutoProcessor`` (needs torchvision: ``GotOcr2ImageProcessor`` + ``InternVLVideoProcessor``) +
``AutoModelForImageTextToText``. Prompt: ChatML chat template where an image renders as ``<IMG_CONTEXT>\\n``;
the processor expands it to ``<img>`` + ``<IMG_CONTEXT>`` x (4 x tiles) + ``</img>``, tiles = 1-4 crops of
32 px (by aspect ratio) + a thumbnail, so the length depends on the image size.
"""

from __future__ import annotations

from pathlib import Path

from .common import INTERNVL_CHAT_TEMPLATE, finish, make_tokenizer
from .configs import IMAGE_SIZE, NUM_PATCHES, PATCH_SIZE, text_config, vision_config

DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int(NUM_PATCHES * DOWNSAMPLE_RATIO**2)  # 4 tokens per tile


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = make_tokenizer(
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        add_bos_token=False,
        base_special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=4),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tokenizer,
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    config = InternVLConfig(
        vision_config=vision_config(image_size=[IMAGE_SIZE, IMAGE_SIZE], patch_size=[PATCH_SIZE, PATCH_SIZE]),
        # Qwen2 (no BOS): head_dim implied
        text_config=text_config(tokenizer, model_type="qwen2", tie_word_embeddings=False),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE_RATIO,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    finish(InternVLForConditionalGeneration, config, processor, out_dir, seed)
