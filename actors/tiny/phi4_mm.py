"""Phi-4-multimodal (native ``Phi4MultimodalForCausalLM``): SigLIP-style vision tower + 2-layer MLP projector
(``image_embed``), a Conformer audio encoder (``audio_embed``) and a Phi-4-mini decoder.

Load with ``AutoProcessor`` (needs torchvision: ``Phi4MultimodalImageProcessor``) + ``AutoModelForCausalLM``.
Prompt: chat template ``<|user|><|image|>Describe the image.<|end|><|assistant|>``; the processor expands
``<|image|>`` (``tokenizer.image_token``) to one token per image feature: a 16x16 global grid + 16 row
separators + 1 separator + the 16x16 grid of every 64-px crop (+ 16 row separators per crop row).

The image processor hard-codes 256 + 16 tokens for the global image (448 px / patch 14 = 32 patches per
side, 2x2 pooled), so the tiny vision tower keeps 32 patches per side: ``image_size=64, patch_size=2``
(and ``crop_size=64``, the size the model splits crops by). The audio sub-config is required even for
image-only use; a tiny Conformer is built and never run.

The tiny vision tower has ONE layer and, like the real config, takes features from layer -2: the patch +
position embeddings, before any attention. transformers 5.23 runs this SigLIP tower with causal SDPA when no
crop in the call is padded and bidirectionally otherwise (``Phi4MultimodalVisionAttention.is_causal = True``),
so with attention in the feature path, plain-transformers greedy outputs would depend on batch composition.
``actors.families.phi4_mm`` fixes that on load; ``build(..., vision_feature_layer=-1)`` makes a variant whose
features do go through attention, for testing that fix.
"""

from __future__ import annotations

from pathlib import Path

from .common import finish, make_tokenizer
from .configs import text_config, vision_config

IMAGE_SIZE = 64
PATCH_SIZE = 2  # 32 patches per side, as the processor's hard-coded token count assumes
MAX_CROPS = 4  # ``dynamic_hd``: at most 4 crops of 64 px besides the global image (real model: 36 of 448 px)

# Phi-4 chat format with the native processor's image token: "<|user|><|image|>{prompt}<|end|><|assistant|>".
# (The original remote-code processor expanded "<|image_1|>", "<|image_2|>", ...; the native processor
# expands one fixed token, ``tokenizer.image_token``.)
PHI4_MM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif content['type'] == 'audio' %}{{ '<|audio|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)


def _keep(name: str) -> bool:
    """The weights ``spread_weights`` leaves alone here: the token and position embeddings only. (Its default
    keeps every name with "embed", but every image-side parameter lives under
    ``model.embed_tokens_extend.image_embed``.)"""
    return name.startswith("model.embed_tokens.") or "position_embedding" in name


def build(out_dir: Path, seed: int, *, vision_feature_layer: int = -2) -> None:
    from transformers import (
        Phi4MultimodalConfig,
        Phi4MultimodalFeatureExtractor,
        Phi4MultimodalForCausalLM,
        Phi4MultimodalImageProcessor,
        Phi4MultimodalProcessor,
    )

    tokenizer = make_tokenizer(
        bos_token="<|endoftext|>",
        eos_token="<|end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        add_bos_token=False,
        base_special_tokens=("<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"),
        extra_special_tokens={"image_token": "<|image|>", "audio_token": "<|audio|>"},
        chat_template=PHI4_MM_CHAT_TEMPLATE,
    )
    processor = Phi4MultimodalProcessor(
        image_processor=Phi4MultimodalImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, patch_size=PATCH_SIZE, dynamic_hd=MAX_CROPS
        ),
        audio_processor=Phi4MultimodalFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=PHI4_MM_CHAT_TEMPLATE,
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0}
    config = Phi4MultimodalConfig(
        **text_config(
            tokenizer,
            max_position_embeddings=4096,
            original_max_position_embeddings=4096,
            rope_parameters=rope,
            tie_word_embeddings=False,
        ),
        vision_config=vision_config(
            num_hidden_layers=1,
            feature_layer=vision_feature_layer,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            crop_size=IMAGE_SIZE,
            image_token_id=tokenizer.image_token_id,
        ),
        audio_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_blocks=1,
            num_attention_heads=2,
            ext_pw_out_channel=32,
            depthwise_separable_out_channel=32,
            nemo_conv_channels=32,
            bias_max_distance=32,
            audio_token_id=tokenizer.audio_token_id,
        ),
    )
    finish(Phi4MultimodalForCausalLM, config, processor, out_dir, seed, keep=_keep)
