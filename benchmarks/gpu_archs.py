"""The two architectures of the GPU check (`benchmarks/gpu_check.py`), built from their transformers
configuration classes: real-size Qwen2-VL-2B-Instruct and LLaVA-1.5-7B (sizes copied from the checkpoints'
config.json), or the same code at toy sizes; tokenizers of the real vocabulary size made locally; synthetic
images. Needs torch, transformers, tokenizers, Pillow, numpy (and torchvision for Qwen2-VL's processors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT = "Describe the image."
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


@dataclass(frozen=True)
class Sizes:
    """The numbers that make an architecture real-size or tiny; everything else is the same code."""

    vocab_size: int
    text: dict[str, Any]
    vision: dict[str, Any]
    image_side: int  # synthetic images are image_side x image_side
    first_special: int  # id of the first special token of the checkpoint's tokenizer

    def shrunk(self, vocab_size: int, image_side: int, first_special: int, text: dict[str, Any],
               vision: dict[str, Any]) -> Sizes:
        """The same architecture at toy sizes: `text` and `vision` replace these sizes' numbers, what they
        do not name (norm epsilon, tied embeddings, patch size, activation) stays the checkpoint's."""
        return Sizes(vocab_size, {**self.text, **text}, {**self.vision, **vision}, image_side, first_special)


# Qwen/Qwen2-VL-2B-Instruct config.json: Qwen2 decoder 1536 wide, 28 layers, 12 heads (head_dim 128, 2 KV
# heads), ViT 1280 wide, 32 layers, 2x2 merger; vocabulary 151936, specials from 151643 (<|endoftext|>).
QWEN2_VL_2B = Sizes(
    vocab_size=151936,
    text=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
              num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
              tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=1536, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2),
    image_side=448,
    first_special=151643,
)
QWEN2_VL_TINY = QWEN2_VL_2B.shrunk(
    vocab_size=1024, image_side=112, first_special=1000,
    text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, max_position_embeddings=2048,
              rope_parameters={**QWEN2_VL_2B.text["rope_parameters"], "mrope_section": [8, 12, 12]}),
    vision=dict(depth=2, embed_dim=32, mlp_ratio=2, num_heads=2, hidden_size=128),
)
# llava-hf/llava-1.5-7b-hf config.json: CLIP ViT-L/14 at 336 px (576 image tokens) + Llama-2-7B (4096 wide,
# 32 layers, 32 heads); vocabulary 32064, <image> 32000, <pad> 32001.
LLAVA_15_7B = Sizes(
    vocab_size=32064,
    text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
              tie_word_embeddings=False),
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
    image_side=448,
    first_special=32000,
)
LLAVA_TINY = LLAVA_15_7B.shrunk(
    vocab_size=512, image_side=112, first_special=480,
    text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=1024),
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=56, projection_dim=32),
)


def sized_tokenizer(vocab_size: int, specials: dict[str, int], **kwargs: Any):
    """A byte-level BPE tokenizer of exactly `vocab_size` ids: a small BPE trained in memory on captions
    (actors.tiny's), filler tokens up to the size, and `specials` at their given ids (the checkpoint's).
    Fillers are never produced by encoding (no merge leads to them); random weights may generate them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from actors.tiny.common import train_bpe_tokenizer

    trained = json.loads(train_bpe_tokenizer(vocab_size=384, special_tokens=[]).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    learned = sorted(trained["vocab"], key=trained["vocab"].get)
    by_id = {i: tok for tok, i in specials.items()}
    if len(by_id) != len(specials) or max(by_id) >= vocab_size or len(learned) + len(specials) > vocab_size:
        raise ValueError(f"specials {specials} do not fit a vocabulary of {vocab_size}")
    pool = iter(learned)
    vocab = {}
    for i in range(vocab_size):
        vocab[by_id[i] if i in by_id else next(pool, f"<|fill_{i}|>")] = i
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))  # already in the vocabulary: they keep their ids
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", model_max_length=32768,
                                        clean_up_tokenization_spaces=False, **kwargs)
    if len(tokenizer) != vocab_size:
        raise AssertionError(f"tokenizer has {len(tokenizer)} ids, expected {vocab_size}")
    return tokenizer


@dataclass
class Parts:
    """An architecture ready to build: config, processor, generation config, and what it stands for."""

    name: str
    stands_for: str
    config: Any
    processor: Any
    generation_config: Any
    image_side: int


def qwen2_vl_parts(sizes: Sizes) -> Parts:
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from actors.tiny.common import QWEN2_VL_CHAT_TEMPLATE

    ids = {tok: sizes.first_special + i for i, tok in enumerate(QWEN_SPECIALS)}
    tokenizer = sized_tokenizer(
        sizes.vocab_size, ids, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
        chat_template=QWEN2_VL_CHAT_TEMPLATE)
    special = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                   pad_token_id=ids["<|endoftext|>"])
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=sizes.vocab_size, **sizes.text, **special),
        vision_config=dict(sizes.vision),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=sizes.text["tie_word_embeddings"],
    )
    # the checkpoint's preprocessor: 56x56 to 3584x3584 pixels, 14-px patches merged 2x2
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
    patches = dict(patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **patches),
        video_processor=Qwen2VLVideoProcessor(size=size, **patches),
        tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    gen = GenerationConfig(do_sample=False, num_beams=1, bos_token_id=special["bos_token_id"],
                           pad_token_id=special["pad_token_id"],
                           eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]])
    return Parts("qwen2_vl-2b", "Qwen/Qwen2-VL-2B-Instruct", config, processor, gen, sizes.image_side)


def llava_parts(sizes: Sizes) -> Parts:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaProcessor,
    )

    from actors.families.llava import LLAVA_CHAT_TEMPLATE

    image_id, pad_id = sizes.first_special, sizes.first_special + 1
    ids = {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": image_id, "<pad>": pad_id}
    tokenizer = sized_tokenizer(sizes.vocab_size, ids, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>", add_bos_token=True, chat_template=LLAVA_CHAT_TEMPLATE,
                                extra_special_tokens={"image_token": "<image>"})
    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=pad_id)
    vision = CLIPVisionConfig(**sizes.vision)
    side = sizes.vision["image_size"]
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(vocab_size=sizes.vocab_size, **sizes.text, **special),
        image_token_index=image_id, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_seq_length=(side // sizes.vision["patch_size"]) ** 2,
        **special,
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side},
                                           crop_size={"height": side, "width": side}),
        tokenizer=tokenizer, chat_template=LLAVA_CHAT_TEMPLATE, patch_size=sizes.vision["patch_size"],
        vision_feature_select_strategy="default", num_additional_image_tokens=1, image_token="<image>",
    )
    gen = GenerationConfig(do_sample=False, num_beams=1, **special)
    return Parts("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", config, processor, gen, sizes.image_side)


def architectures(tiny: bool) -> list[Callable[[], Parts]]:
    """The two architectures, built when called (the 2B's 152k-token tokenizer takes a few seconds)."""

    def named(parts: Parts) -> Parts:
        if tiny:  # the same code at toy sizes: never to be read as the real model's numbers
            parts.name += "-tiny"
        return parts

    return [lambda: named(qwen2_vl_parts(QWEN2_VL_TINY if tiny else QWEN2_VL_2B)),
            lambda: named(llava_parts(LLAVA_TINY if tiny else LLAVA_15_7B))]


def synthetic_images(n: int, side: int, seed: int = 0) -> list[Any]:
    """n different RGB images (colour gradients plus noise), uint8 HxWx3 arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    out = []
    for _ in range(n):
        base = rng.uniform(0, 255, size=3).astype(np.float32)
        img = base * ramp[None, :, None] + (255 - base) * ramp[:, None, None]
        img = img + rng.normal(0, 20, size=(side, side, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def save_for_host(parts: Parts, folder: Path) -> Path:
    """config.json + processor + generation_config.json, no weights: what `weights: dummy` loads."""
    folder.mkdir(parents=True, exist_ok=True)
    parts.config.save_pretrained(folder)
    parts.processor.save_pretrained(folder)
    parts.generation_config.save_pretrained(folder)
    return folder
