"""Precision → from_pretrained arguments, per module: which parts are quantized and which are not.

- int8:        language model in bitsandbytes LLM.int8; vision tower + projector in float.
- int8-vision: vision tower + projector in LLM.int8; language model in float.
- nf4:         language model in bitsandbytes 4-bit NF4; vision side in float.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from actors.families.base import Family, module_matches

QUANTIZED = {"int8", "int8-vision", "nf4"}


def float_dtype_name(precision: str, on_cuda: bool) -> str:
    """The dtype of the unquantized modules."""
    if precision in ("fp32", "fp16", "bf16"):
        return {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
    if not on_cuda:
        # bitsandbytes' CPU kernels and the CPU matmuls are fastest and safest in fp32.
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def skip_patterns(fragments: tuple[str, ...]) -> list[str]:
    """transformers 5 matches skip entries from the start of the module name (or as a suffix), so a
    bare fragment such as "vision_tower" would miss "model.vision_tower.encoder": anchor it anywhere."""
    return [rf"(?:.*\.)?{re.escape(f)}" for f in fragments] + ["lm_head"]


def load_kwargs(precision: str, family: Family, on_cuda: bool) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` realising `precision` for this family."""
    import torch
    from transformers import BitsAndBytesConfig

    dtype = getattr(torch, float_dtype_name(precision, on_cuda))
    kwargs: dict[str, Any] = {"dtype": dtype}
    if precision == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True,
            llm_int8_skip_modules=skip_patterns(family.vision_modules + family.output_head_modules),
        )
    elif precision == "int8-vision":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=skip_patterns(family.language_modules)
        )
    elif precision == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=skip_patterns(family.vision_modules + family.output_head_modules),
        )
    if precision in QUANTIZED:
        kwargs["device_map"] = {"": 0} if on_cuda else {"": "cpu"}
    return kwargs


def _weight_kind(module: Any) -> str | None:
    cls = type(module).__name__
    if cls == "Linear8bitLt":
        return "int8"
    if cls == "Linear4bit":
        return "nf4"
    weight = getattr(module, "weight", None)
    if weight is None or not hasattr(weight, "dtype"):
        return None
    return str(weight.dtype).removeprefix("torch.")


def module_precisions(model: Any, family: Family) -> tuple[dict[str, str], dict[str, int]]:
    """Per side (vision, language): the weight formats actually loaded, most parameters first, and
    the bytes of that side's parameters (bitsandbytes packs int8/nf4 weights in smaller tensors)."""
    sides = {"vision": family.vision_modules, "language": (*family.language_modules, "lm_head")}
    formats: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for side, fragments in sides.items():
        kinds: Counter[str] = Counter()
        nbytes = 0
        for name, module in model.named_modules():
            if not any(module_matches(name, f) for f in fragments):
                continue
            for param in module.parameters(recurse=False):
                nbytes += param.numel() * param.element_size()
            kind = _weight_kind(module)
            if kind and getattr(module, "weight", None) is not None:
                kinds[kind] += module.weight.numel()
        formats[side] = "+".join(k for k, _ in kinds.most_common()) or "absent"
        sizes[side] = nbytes
    return formats, sizes
