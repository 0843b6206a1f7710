"""PaliGemma (``PaliGemmaForConditionalGeneration``): SigLIP vision tower + Gemma decoder with a
bidirectional (prefix-LM) attention over image + prompt.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: plain task prompt such as
``"caption en"``; the processor writes ``<image>`` x 16 + ``<bos>`` + prompt + ``"\\n"`` and returns
``token_type_ids`` (prefix = 0) and ``labels`` as well.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    special_ids,
    spread_weights,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 16


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer = make_tokenizer(
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        base_special_tokens=("<pad>", "<eos>", "<bos>", "<unk>"),
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    image_processor.image_seq_length = IMAGE_SEQ_LENGTH  # read by PaliGemmaProcessor, saved in its config
    # The processor adds 1024 <locXXXX> + 128 <segXXX> tokens to the tokenizer: build it before the model.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vocab_size = len(tokenizer)
    ids = special_ids(tokenizer)
    config = PaliGemmaConfig(
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
            model_type="gemma",
            vocab_size=vocab_size,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=64,
            max_position_embeddings=512,
            **ids,
        ),
        image_token_index=tokenizer.image_token_id,
        vocab_size=vocab_size,
        projection_dim=128,
        hidden_size=128,
        **ids,
    )
    seed_everything(seed)
    model = PaliGemmaForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
