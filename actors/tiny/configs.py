"""The sizes every tiny model shares, as config factories that each builder adjusts with keyword overrides.

Vision towers (CLIP/SigLIP-style ViTs): width 32, 2 layers, 2 heads, 32-px images in 8-px patches
(16 patches). Decoders: width 128, 2 layers, 2 heads of head_dim 64 (vLLM's CPU attention needs
head_dim >= 64), an MLP of 256, the vocabulary of the model's tokenizer and its bos/eos/pad ids.
"""

from __future__ import annotations

from typing import Any

from .common import special_ids

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 16
HEAD_DIM = 64

# The small encoder of every vision tower (and of the BLIP Q-Former).
ENCODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
# The decoder size that also fits non-Llama decoders (GIT's BERT-style one, OPT): head_dim 128 / 2 = 64.
DECODER = {"hidden_size": 2 * HEAD_DIM, "num_hidden_layers": 2, "num_attention_heads": 2}


def vision_config(**overrides: Any) -> dict[str, Any]:
    """A CLIP-style vision tower config (pass it to ``CLIPVisionConfig(**...)`` or as a sub-config dict)."""
    return {**ENCODER, "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE, **overrides}


def siglip_vision_config(**overrides: Any) -> dict[str, Any]:
    """The same tower as a SigLIP sub-config without the attention-pooling head (DeepSeek-VL, PaliGemma)."""
    return vision_config(model_type="siglip_vision_model", vision_use_head=False, **overrides)


def text_config(tokenizer, **overrides: Any) -> dict[str, Any]:
    """A Llama/Qwen-style decoder config sized for ``tokenizer``, with its special ids.

    head_dim is implied (hidden / heads = 64), as in Qwen2 configs; :func:`llama_text_config` states it.
    """
    return {
        "vocab_size": len(tokenizer),
        **DECODER,
        "intermediate_size": 256,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        **special_ids(tokenizer),
        **overrides,
    }


def llama_text_config(tokenizer, **overrides: Any) -> dict[str, Any]:
    """:func:`text_config` as Llama/Mistral configs write it: explicit head_dim, untied output head."""
    return text_config(tokenizer, head_dim=HEAD_DIM, tie_word_embeddings=False, **overrides)


def vlm_config(config_class, tokenizer, vision: dict[str, Any], text: dict[str, Any], **extra: Any):
    """``config_class`` of a vision tower + decoder whose tokenizer names its ``image_token``."""
    return config_class(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.image_token_id,
        **special_ids(tokenizer),
        **extra,
    )
