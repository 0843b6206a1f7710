"""LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``): CLIP vision tower with AnyRes tiling +
Mistral decoder (as in llava-v1.6-mistral).

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: chat template
``[INST] <image>\\n<text> [/INST]``; the processor expands ``<image>`` to base + unpadded tile features +
one newline feature per row, which depends on the image's aspect ratio.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    LLAVA_NEXT_CHAT_TEMPLATE,
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    special_ids,
    spread_weights,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8
GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64]]


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    tokenizer = make_tokenizer(
        extra_special_tokens={"image_token": "<image>"}, chat_template=LLAVA_NEXT_CHAT_TEMPLATE
    )
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=GRID_PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=LLAVA_NEXT_CHAT_TEMPLATE,
        image_token="<image>",
    )
    ids = special_ids(tokenizer)
    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text_config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
        sliding_window=None,
        tie_word_embeddings=False,
        **ids,
    )
    config = LlavaNextConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_grid_pinpoints=GRID_PINPOINTS,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        **ids,
    )
    seed_everything(seed)
    model = LlavaNextForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
