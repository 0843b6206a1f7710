"""Precision: the one table of what each grid precision means, and the `from_pretrained` arguments that
realise it per module (which parts are quantized and which are not).

- fp32 / fp16 / bf16: every module in that float dtype (also what vLLM is given as `dtype`).
- int8:        language model in bitsandbytes LLM.int8; vision tower + projector in float.
- int8-vision: vision tower + projector in LLM.int8; language model in float.
- nf4:         language model in bitsandbytes 4-bit NF4; vision side in float.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, get_args

from actors.contract import Precision
from actors.families.base import Family, module_matches


@dataclass(frozen=True)
class PrecisionFormat:
    """What one precision loads. `float_dtype` None: bitsandbytes, whose float modules take the device's
    compute dtype (`float_dtype_name`)."""

    float_dtype: str | None
    quantized_side: Literal["language", "vision"] | None = None
    bnb_format: Literal["int8", "nf4"] | None = None
    # bytes per parameter (language decoder layers, vision side) for sweep.plan.memory's estimate; nf4 stores
    # one fp32 absmax per 64-weight block
    bytes_per_param: tuple[float, float] = (4.0, 4.0)

    def side_format(self, side: Literal["language", "vision"]) -> str:
        """What the plan shows per side before loading: a dtype, the quantized format, or "float"."""
        if self.quantized_side == side:
            return str(self.bnb_format)
        return self.float_dtype or "float"


PRECISIONS: dict[Precision, PrecisionFormat] = {
    "fp32": PrecisionFormat("float32", bytes_per_param=(4.0, 4.0)),
    "fp16": PrecisionFormat("float16", bytes_per_param=(2.0, 2.0)),
    "bf16": PrecisionFormat("bfloat16", bytes_per_param=(2.0, 2.0)),
    "int8": PrecisionFormat(None, "language", "int8", (1.0, 2.0)),
    "int8-vision": PrecisionFormat(None, "vision", "int8", (2.0, 1.0)),
    "nf4": PrecisionFormat(None, "language", "nf4", (0.5 + 4 / 64, 2.0)),
}
if set(PRECISIONS) != set(get_args(Precision)):  # the table and the grid's type are one list
    raise AssertionError(f"precision table {sorted(PRECISIONS)} != Precision {sorted(get_args(Precision))}")

QUANTIZED = frozenset(p for p, f in PRECISIONS.items() if f.quantized_side)
FLOAT_PRECISIONS = tuple(p for p, f in PRECISIONS.items() if f.float_dtype)


def precision_format(precision: str) -> PrecisionFormat:
    try:
        return PRECISIONS[precision]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}") from None


def float_dtype_name(precision: str, on_cuda: bool) -> str:
    """The dtype of the unquantized modules."""
    fmt = precision_format(precision)
    if fmt.float_dtype:
        return fmt.float_dtype
    if not on_cuda:
        # bitsandbytes' CPU kernels and the CPU matmuls are fastest and safest in fp32.
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def skip_patterns(fragments: tuple[str, ...]) -> list[str]:
    """transformers 5 matches skip entries from the start of the module name (or as a suffix), so a
    bare fragment such as "vision_tower" would miss "model.vision_tower.encoder": anchor it anywhere.
    The fragment must also end a name part: transformers 5.20 matches a bare prefix (``re.match``), under
    which "model.embed_tokens" would also skip Phi-4's vision side, "model.embed_tokens_extend"."""
    return [rf"(?:.*\.)?{re.escape(f)}(?:\..*)?$" for f in fragments] + ["lm_head"]


def load_kwargs(precision: str, family: Family, on_cuda: bool) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` realising `precision` for this family."""
    import torch
    from transformers import BitsAndBytesConfig

    fmt = precision_format(precision)
    dtype = getattr(torch, float_dtype_name(precision, on_cuda))
    kwargs: dict[str, Any] = {"dtype": dtype}
    if fmt.quantized_side is None:
        return kwargs
    # the side that stays float (and a vocabulary head not named lm_head, which also stays float)
    keep_float = (family.vision_modules + family.output_head_modules if fmt.quantized_side == "language"
                  else family.language_modules)
    if fmt.bnb_format == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_patterns(keep_float))
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=fmt.bnb_format,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=skip_patterns(keep_float),
        )
    kwargs["quantization_config"] = config
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
