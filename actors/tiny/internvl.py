"""InternVL 3 (native ``InternVLForConditionalGeneration``): InternViT + pixel-shuffle MLP projector + Qwen2.

Load with ``AutoProcessor`` (needs torchvision: ``GotOcr2ImageProcessor`` + ``InternVLVideoProcessor``) +
``AutoModelForImageTextToText``. Prompt: ChatML chat template where an image renders as ``<IMG_CONTEXT>\\n``;
the processor expands it to ``<img>`` + ``<IMG_CONTEXT>`` x (4 x tiles) + ``</img>``, tiles = 1-4 crops of
32 px (by aspect ratio) + a thumbnail, so the length depends on the image size.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    INTERNVL_CHAT_TEMPLATE,
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    spread_weights,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8
DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int((IMAGE_SIZE // PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO**2)  # 4 tokens per tile


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
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[IMAGE_SIZE, IMAGE_SIZE],
            patch_size=[PATCH_SIZE, PATCH_SIZE],
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,  # head_dim 64
            num_key_value_heads=2,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE_RATIO,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    seed_everything(seed)
    model = InternVLForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
