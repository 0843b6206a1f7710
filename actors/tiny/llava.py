"""LLaVA-1.5 (``LlavaForConditionalGeneration``): CLIP vision tower + Llama language model.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: chat template
``USER: <image>\\n<text> ASSISTANT:`` (one ``<image>`` token expanded to 16 patch tokens by the processor).
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    LLAVA_CHAT_TEMPLATE,
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    special_ids,
    spread_weights,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = make_tokenizer(
        extra_special_tokens={"image_token": "<image>"}, chat_template=LLAVA_CHAT_TEMPLATE
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token (dropped again by the "default" strategy)
        chat_template=LLAVA_CHAT_TEMPLATE,
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
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        **ids,
    )
    num_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_seq_length=num_patches,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        **ids,
    )
    seed_everything(seed)
    model = LlavaForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
