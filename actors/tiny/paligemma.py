"""PaliGemma (``PaliGemmaForConditionalGeneration``): SigLIP vision tower + Gemma decoder with a
bidirectional (prefix-LM) attention over image + prompt.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: plain task prompt such as
``"caption en"``; the processor writes ``<image>`` x 16 + ``<bos>`` + prompt + ``"\\n"`` and returns
``token_type_ids`` (prefix = 0) and ``labels`` as well.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)

from .common import finish, make_tokenizer, special_ids
from .configs import HEAD_DIM, IMAGE_SIZE, NUM_PATCHES, siglip_vision_config, text_config


def build(out_dir: Path, seed: int) -> None:
    tokenizer = make_tokenizer(
        bos_token="<bos>",
        eos_token="<eos>",
        base_special_tokens=("<pad>", "<eos>", "<bos>", "<unk>"),
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    image_processor.image_seq_length = NUM_PATCHES  # read by PaliGemmaProcessor, saved in its config
    # The processor adds 1024 <locXXXX> + 128 <segXXX> tokens to the tokenizer: build it before the model.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = special_ids(tokenizer)
    # Gemma: one KV head, tied output head (its default)
    text = text_config(
        tokenizer, model_type="gemma", num_key_value_heads=1, head_dim=HEAD_DIM, max_position_embeddings=512
    )
    config = PaliGemmaConfig(
        vision_config=siglip_vision_config(),
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=128,
        hidden_size=128,
        **ids,
    )
    finish(PaliGemmaForConditionalGeneration, config, processor, out_dir, seed)
