"""What a loaded model holds, per side (vision, language): the weight format of its modules and their bytes,
as stored (quantized tensors count their packed data and scales, not the float shape they stand for)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors.families.base import Family, module_matches

# torchao tensor subclasses (0.18) -> the grid precision that makes them
_TORCHAO_KINDS = {"Int8Tensor": "int8wo", "Int4Tensor": "int4wo", "Int4OpaqueTensor": "int4wo",
                  "Int4TilePackedTo4dTensor": "int4wo", "Int4PlainInt32Tensor": "int4wo",
                  "Int4PreshuffledTensor": "int4wo", "Float8Tensor": "fp8"}
# modules of pre-quantized checkpoints (AWQ/GPTQ kernels, compressed-tensors) by class name fragment
_CHECKPOINT_KINDS = (("WQLinear", "awq"), ("AwqLinear", "awq"), ("QuantLinear", "gptq"),
                     ("CompressedLinear", "compressed-tensors"), ("FP8Linear", "fp8"))


def tensor_bytes(tensor: Any) -> int:
    """Bytes a tensor stores: a torchao subclass's inner tensors (packed data, scales, zero points), else
    numel x element size (a subclass reports the float dtype it dequantizes to)."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, n)) for n in names)
    return int(tensor.numel() * tensor.element_size())


def _bnb_state_bytes(module: Any) -> int:
    """bitsandbytes keeps its scales outside the parameter's data: LLM.int8's per-row SCB (moved to
    `module.state` after the first forward), 4-bit's per-block absmax (and its nested state)."""
    weight = getattr(module, "weight", None)
    scb = getattr(weight, "SCB", None)
    if scb is None:
        scb = getattr(getattr(module, "state", None), "SCB", None)
    total = tensor_bytes(scb) if scb is not None else 0
    state = getattr(weight, "quant_state", None)
    while state is not None:
        absmax = getattr(state, "absmax", None)
        total += tensor_bytes(absmax) if absmax is not None else 0
        state = getattr(state, "state2", None)
    return total


def module_bytes(module: Any) -> int:
    """This module's own parameters and persistent buffers (AWQ/GPTQ keep qweight/scales as buffers)."""
    total = sum(tensor_bytes(p) for p in module.parameters(recurse=False))
    skip = getattr(module, "_non_persistent_buffers_set", set())
    total += sum(tensor_bytes(b) for n, b in module.named_buffers(recurse=False) if n not in skip)
    return total + _bnb_state_bytes(module)


def weight_kind(module: Any) -> str | None:
    """The format of this module's weight: a grid precision's name for quantized ones, else its dtype."""
    cls = type(module).__name__
    if cls == "Linear8bitLt":
        return "int8"
    if cls == "Linear4bit":
        return "nf4"
    for fragment, kind in _CHECKPOINT_KINDS:
        if fragment in cls:
            return kind
    weight = getattr(module, "weight", None)
    if weight is None or not hasattr(weight, "dtype"):
        return None
    kind = _TORCHAO_KINDS.get(type(weight).__name__)
    return kind or str(weight.dtype).removeprefix("torch.")


def _numel(module: Any) -> int:
    weight = getattr(module, "weight", None)
    if weight is not None:
        return int(weight.numel())
    qweight = getattr(module, "qweight", None)
    return int(qweight.numel()) if qweight is not None else 0


def module_precisions(model: Any, family: Family) -> tuple[dict[str, str], dict[str, int]]:
    """Per side (vision, language): the weight formats actually loaded, most parameters first, and
    the bytes that side stores (`module_bytes`)."""
    sides = {"vision": family.vision_modules, "language": (*family.language_modules, "lm_head")}
    formats: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for side, fragments in sides.items():
        kinds: Counter[str] = Counter()
        nbytes = 0
        for name, module in model.named_modules():
            if not any(module_matches(name, f) for f in fragments):
                continue
            nbytes += module_bytes(module)
            kind = weight_kind(module)
            if kind and _numel(module):
                kinds[kind] += _numel(module)
        formats[side] = "+".join(k for k, _ in kinds.most_common()) or "absent"
        sizes[side] = nbytes
    return formats, sizes


def model_bytes(model: Any) -> int:
    """Every module's `module_bytes`: the weights as stored (transformers' get_memory_footprint counts a
    torchao tensor at its float size)."""
    return sum(module_bytes(m) for m in model.modules())
