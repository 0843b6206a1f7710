"""DeepSeek-VL (native ``DeepseekVLForConditionalGeneration``, the 1.3B-chat layout): SigLIP vision tower +
2-layer MLP aligner + Llama decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: chat template
``User: <image_placeholder>Describe the image.\\n\\nAssistant:`` (BOS added by the tokenizer); the processor
expands ``<image_placeholder>`` (read from ``tokenizer.image_token``) to a fixed 16 tokens.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    DeepseekVLConfig,
    DeepseekVLForConditionalGeneration,
    DeepseekVLImageProcessor,
    DeepseekVLProcessor,
)

from .common import DEEPSEEK_VL_CHAT_TEMPLATE, finish, make_tokenizer
from .configs import IMAGE_SIZE, NUM_PATCHES, llama_text_config, siglip_vision_config, vlm_config

NUM_IMAGE_TOKENS = NUM_PATCHES  # 16 (SigLIP has no CLS token)

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


def build(out_dir: Path, seed: int) -> None:
    tokenizer = make_tokenizer(
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=None,
        base_special_tokens=(BOS, EOS),
        extra_special_tokens={"image_token": "<image_placeholder>"},
        chat_template=DEEPSEEK_VL_CHAT_TEMPLATE,
    )
    processor = DeepseekVLProcessor(
        image_processor=DeepseekVLImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, min_size=4
        ),
        tokenizer=tokenizer,
        chat_template=DEEPSEEK_VL_CHAT_TEMPLATE,
        num_image_tokens=NUM_IMAGE_TOKENS,
    )
    text = llama_text_config(tokenizer, model_type="llama")
    config = vlm_config(DeepseekVLConfig, tokenizer, siglip_vision_config(), text)
    finish(DeepseekVLForConditionalGeneration, config, processor, out_dir, seed)
