"""Precision → from_pretrained arguments, per module: which parts are quantized and which are not."""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors.families.base import Family

QUANTIZED = {"int8", "nf4"}


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
    return [rf"(?:.*\.)?{f}" for f in fragments] + ["lm_head"]


def load_kwargs(precision: str, family: Family, on_cuda: bool) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` realising `precision` for this family."""
    import torch
    from transformers import BitsAndBytesConfig

    dtype = getattr(torch, float_dtype_name(precision, on_cuda))
    kwargs: dict[str, Any] = {"dtype": dtype}
    if precision == "int8":
        # LLM.int8 on the language model only: the vision tower and projector stay in float.
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=skip_patterns(family.vision_modules)
        )
    elif precision == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=False,
            llm_int8_skip_modules=skip_patterns(family.vision_modules),
        )
    if precision in QUANTIZED:
        kwargs["device_map"] = {"": 0} if on_cuda else {"": "cpu"}
    return kwargs


def module_precisions(model: Any, family: Family) -> dict[str, str]:
    """For the vision side and the language side: the dominant weight format actually loaded."""

    def describe(fragments: tuple[str, ...]) -> str:
        kinds: Counter[str] = Counter()
        for name, module in model.named_modules():
            if not any(f in name.split(".") for f in fragments) or not hasattr(module, "weight"):
                continue
            cls = type(module).__name__
            if cls == "Linear8bitLt":
                kinds["int8"] += 1
            elif cls == "Linear4bit":
                kinds["nf4"] += 1
            elif getattr(module, "weight", None) is not None:
                kinds[str(module.weight.dtype).removeprefix("torch.")] += 1
        return "+".join(k for k, _ in kinds.most_common()) or "absent"

    return {"vision": describe(family.vision_modules), "language": describe(family.language_modules)}
