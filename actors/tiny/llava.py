"""LLaVA-1.5 (``LlavaForConditionalGeneration``): CLIP vision tower + Llama language model.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: chat template
``USER: <image>\\n<text> ASSISTANT:`` (one ``<image>`` token expanded to 16 patch tokens by the processor).
"""

from __future__ import annotations

from pathlib import Path

from actors.families.llava import LLAVA_CHAT_TEMPLATE

from .common import finish, make_tokenizer, special_ids
from .configs import IMAGE_SIZE, NUM_PATCHES, PATCH_SIZE, llama_text_config, vision_config

# What LLaVA-1.5 and LLaVA-NeXT processors and configs share: CLIP's CLS token is counted
# (num_additional_image_tokens) and dropped again by the "default" feature strategy.
PROCESSOR_KWARGS = dict(
    patch_size=PATCH_SIZE,
    vision_feature_select_strategy="default",
    num_additional_image_tokens=1,
    image_token="<image>",
)


def image_tokenizer(chat_template: str):
    return make_tokenizer(extra_special_tokens={"image_token": "<image>"}, chat_template=chat_template)


def config_kwargs(tokenizer, text_config) -> dict:
    """CLIP tower + ``text_config``, with the feature selection and image tokens of the llava-hf configs."""
    from transformers import CLIPVisionConfig

    return dict(
        vision_config=CLIPVisionConfig(**vision_config(projection_dim=32)),
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_seq_length=NUM_PATCHES,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        **special_ids(tokenizer),
    )


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        CLIPImageProcessor,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = image_tokenizer(LLAVA_CHAT_TEMPLATE)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=LLAVA_CHAT_TEMPLATE,
        **PROCESSOR_KWARGS,
    )
    text = LlamaConfig(**llama_text_config(tokenizer, max_position_embeddings=512))
    config = LlavaConfig(**config_kwargs(tokenizer, text))
    finish(LlavaForConditionalGeneration, config, processor, out_dir, seed)
