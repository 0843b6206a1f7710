"""LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``): CLIP vision tower with AnyRes tiling +
Mistral decoder (as in llava-v1.6-mistral).

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: chat template
``[INST] <image>\\n<text> [/INST]``; the processor expands ``<image>`` to base + unpadded tile features +
one newline feature per row, which depends on the image's aspect ratio.
"""

from __future__ import annotations

from pathlib import Path

from .common import LLAVA_NEXT_CHAT_TEMPLATE, finish
from .configs import IMAGE_SIZE, llama_text_config
from .llava import PROCESSOR_KWARGS, config_kwargs, image_tokenizer

GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64]]


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    tokenizer = image_tokenizer(LLAVA_NEXT_CHAT_TEMPLATE)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=GRID_PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=LLAVA_NEXT_CHAT_TEMPLATE,
        **PROCESSOR_KWARGS,
    )
    text = MistralConfig(**llama_text_config(tokenizer, sliding_window=None))
    config = LlavaNextConfig(**config_kwargs(tokenizer, text), image_grid_pinpoints=GRID_PINPOINTS)
    finish(LlavaNextForConditionalGeneration, config, processor, out_dir, seed)
