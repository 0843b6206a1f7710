"""DeepSeek-VL (native ``DeepseekVLForConditionalGeneration``, the 1.3B-chat layout): SigLIP vision tower +
2-layer MLP aligner + Llama decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: chat template
``User: <image_placeholder>Describe the image.\\n\\nAssistant:`` (BOS added by the tokenizer); the processor
expands ``<image_placeholder>`` (read from ``tokenizer.image_token``) to a fixed 16 tokens.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    DEEPSEEK_VL_CHAT_TEMPLATE,
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    special_ids,
    spread_weights,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 16 (SigLIP has no CLS token)

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        DeepseekVLConfig,
        DeepseekVLForConditionalGeneration,
        DeepseekVLImageProcessor,
        DeepseekVLProcessor,
    )

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
    ids = special_ids(tokenizer)
    config = DeepseekVLConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            vision_use_head=False,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=1024,
            **ids,
        ),
        image_token_id=tokenizer.image_token_id,
        **ids,
    )
    seed_everything(seed)
    model = DeepseekVLForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
