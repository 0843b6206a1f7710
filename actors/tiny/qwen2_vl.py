"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): ViT with 2x2 patch merger + Qwen2 decoder with M-RoPE.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. Prompt: ChatML chat template with
``<|vision_start|><|image_pad|><|vision_end|>``; the processor expands ``<|image_pad|>`` to
``grid_t*grid_h*grid_w / 4`` tokens (dynamic resolution, so different image sizes give different lengths).
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    QWEN2_VL_CHAT_TEMPLATE,
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    spread_weights,
)

PATCH_SIZE = 14
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28
MIN_PIXELS = FACTOR * FACTOR  # 1 merged token
MAX_PIXELS = FACTOR * FACTOR * 6  # at most 6 merged tokens per image

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_VISION_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def make_qwen_tokenizer():
    """Qwen-style tokenizer: no BOS, eos ``<|im_end|>``, pad ``<|endoftext|>``, ChatML chat template."""
    return make_tokenizer(
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        add_bos_token=False,
        base_special_tokens=QWEN_SPECIAL_TOKENS,
        extra_special_tokens=QWEN_VISION_TOKENS,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def qwen_generation_config(tokenizer):
    gen = greedy_generation_config(tokenizer)
    # Like the real checkpoints: stop on <|im_end|> or <|endoftext|>.
    gen.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    return gen


def qwen_text_kwargs(tokenizer) -> dict:
    """Text decoder settings shared by Qwen2-VL and Qwen2.5-VL (head_dim 64 for vLLM's CPU backend)."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        # mrope_section must sum to head_dim / 2 = 32 (the real 7B uses [16, 24, 24] for head_dim 128)
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def qwen_vision_token_ids(tokenizer) -> dict:
    return dict(
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = make_qwen_tokenizer()
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE),
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    text_kwargs = qwen_text_kwargs(tokenizer)
    config = Qwen2VLConfig(
        text_config=text_kwargs,
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=text_kwargs["hidden_size"],  # merger output size = LM hidden size
            mlp_ratio=2,
            num_heads=2,
            patch_size=PATCH_SIZE,
            spatial_merge_size=MERGE_SIZE,
            temporal_patch_size=2,
        ),
        **qwen_vision_token_ids(tokenizer),
    )
    seed_everything(seed)
    model = Qwen2VLForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, qwen_generation_config(tokenizer))
