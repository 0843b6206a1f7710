"""Precision: the one table of what each grid precision means (which modules it quantizes, into what, with
which library, on which backends, at how many bytes per parameter), the `from_pretrained` arguments that
realise it per module, and the refusals decided before any work.

| precision   | quantizes (rest stays float)          | library / kernel                     | backends  |
|-------------|---------------------------------------|--------------------------------------|-----------|
| fp32/16/bf16| nothing                               | torch                                | hf, vllm  |
| int8        | language model: LLM.int8              | bitsandbytes                         | hf        |
| int8-vision | vision tower + projector: LLM.int8    | bitsandbytes                         | hf        |
| nf4         | language model: 4-bit NF4             | bitsandbytes                         | hf        |
| int8wo      | language model: int8 weights, per row | torchao Int8WeightOnlyConfig         | hf        |
| int4wo      | language model: int4 weights, group 32| torchao int4 weight-only (CPU: opaque| hf        |
|             |                                       | packing, GPU: tinygemm tile packing) |           |
| fp8         | language model: fp8 e4m3 weights and  | vLLM quantization="fp8" (dynamic);   | vllm, hf  |
|             | activations (dynamic, per row)        | HF: torchao float8 dynamic; needs a  |           |
|             |                                       | GPU of compute capability >= 8.9     |           |
| prequantized| what the checkpoint's config.json     | the checkpoint's method (AWQ, GPTQ,  | vllm, hf* |
|             | quantization_config says              | compressed-tensors, ...)             |           |

The vision tower and projector stay float under every quantizing precision except int8-vision (and
prequantized, where the checkpoint decides; vLLM's fp8 quantizes the linear layers each family's vLLM code
builds with its quantization config, the vision tower's too in some families). *HF loads a pre-quantized
checkpoint only with its method's package installed (`actors.checkpoint_quant`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from actors.checkpoint_quant import checkpoint_quant, installed_packages, load_refusal
from actors.contract import Precision
from actors.families.base import Family
from actors.module_formats import module_precisions  # noqa: F401  (re-exported: the backends' import)

Side = Literal["language", "vision"]
INT4_GROUP_SIZE = 32  # torchao's finest int4 group; the zoo's 64-wide layers need <= 64 (128 would skip them)
FP8_MIN_CAPABILITY = (8, 9)  # Ada (L4, RTX 40xx), Hopper (H100) and later have fp8 tensor cores


@dataclass(frozen=True)
class PrecisionFormat:
    """One precision. `float_dtype` None: the unquantized modules take the device's compute dtype
    (`float_dtype_name`). Bytes of a quantized linear layer with W weights in R output rows:
    W * weight_bytes + R * row_bytes + W / group_size * (group_bytes + group_floats * float bytes)."""

    float_dtype: str | None
    quantized_side: Side | Literal["checkpoint"] | None = None
    quant_format: str | None = None  # the format `module_formats.weight_kind` reports for its modules
    library: str = "torch"
    backends: tuple[str, ...] = ("hf", "vllm")
    weight_bytes: float = 4.0
    row_bytes: float = 0.0  # per output row: LLM.int8's fp32 SCB; torchao int8's fp32 scale + int8 zero
    group_size: int = 0
    group_bytes: float = 0.0  # per group, fixed: nf4's fp32 absmax per 64 weights
    group_floats: int = 0  # per group, in the float dtype: torchao int4's scale and zero point
    fast_on: str = ""  # where its kernels are fast (the docs' table)

    def side_format(self, side: Side, backend: str = "hf") -> str:
        """What the plan shows per side before loading: a dtype, the quantized format, or "float"."""
        if self.quantized_side == "checkpoint":
            return "per checkpoint"
        if self.quantized_side == side:
            return str(self.quant_format)
        if backend == "vllm" and self.quant_format == "fp8":
            return "fp8 or bf16 (vLLM's family code decides)"
        return self.float_dtype or "float"

    def linear_bytes(self, weights: float, rows: float, float_bytes: float) -> float:
        """Bytes of quantized linear layers holding `weights` parameters in `rows` output rows."""
        groups = weights / self.group_size if self.group_size else 0.0
        return (weights * self.weight_bytes + rows * self.row_bytes
                + groups * (self.group_bytes + self.group_floats * float_bytes))


_BNB = {"library": "bitsandbytes", "backends": ("hf",), "fast_on": "CUDA GPUs (slow path: vLLM #9535)"}
_TORCHAO = {"library": "torchao", "backends": ("hf",)}
PRECISIONS: dict[Precision, PrecisionFormat] = {
    "fp32": PrecisionFormat("float32", fast_on="any"),
    "fp16": PrecisionFormat("float16", weight_bytes=2.0, fast_on="GPUs"),
    "bf16": PrecisionFormat("bfloat16", weight_bytes=2.0, fast_on="Ampere+ GPUs, CPUs with AMX/AVX512-BF16"),
    "int8": PrecisionFormat(None, "language", "int8", weight_bytes=1.0, row_bytes=4.0, **_BNB),
    "int8-vision": PrecisionFormat(None, "vision", "int8", weight_bytes=1.0, row_bytes=4.0, **_BNB),
    "nf4": PrecisionFormat(None, "language", "nf4", weight_bytes=0.5, group_size=64, group_bytes=4.0, **_BNB),
    "int8wo": PrecisionFormat(None, "language", "int8wo", weight_bytes=1.0, row_bytes=5.0,
                              fast_on="CPUs and GPUs (memory-bound decoding)", **_TORCHAO),
    "int4wo": PrecisionFormat(None, "language", "int4wo", weight_bytes=0.5, group_size=INT4_GROUP_SIZE,
                              group_floats=2, fast_on="CUDA GPUs (tinygemm), x86 CPUs", **_TORCHAO),
    "fp8": PrecisionFormat(None, "language", "fp8", "vLLM fp8 / torchao float8", ("vllm", "hf"),
                           weight_bytes=1.0, row_bytes=4.0, fast_on="GPUs of compute capability >= 8.9"),
    "prequantized": PrecisionFormat(None, "checkpoint", "checkpoint", "the checkpoint's method",
                                    ("vllm", "hf"), fast_on="vLLM on GPUs (Marlin kernels for AWQ/GPTQ)"),
}
if set(PRECISIONS) != set(get_args(Precision)):  # the table and the grid's type are one list
    raise AssertionError(f"precision table {sorted(PRECISIONS)} != Precision {sorted(get_args(Precision))}")

QUANTIZED = frozenset(p for p, f in PRECISIONS.items() if f.quantized_side)
FLOAT_PRECISIONS = tuple(p for p, f in PRECISIONS.items() if f.float_dtype)
VLLM_PRECISIONS = tuple(p for p, f in PRECISIONS.items() if "vllm" in f.backends)


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
        # bitsandbytes' and torchao's CPU kernels and the CPU matmuls are fastest and safest in fp32.
        return "float32"
    if precision in ("int4wo", "fp8"):
        return "bfloat16"  # tinygemm's int4 kernel and the fp8 matmuls take bf16 activations only
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def refusal(precision: str, *, backend: str, cuda_capability: tuple[int, int] | None,
            config: dict | None, installed: set[str] | None = None) -> str | None:
    """Why this precision cannot run on this backend and machine (None when it can), decided before any
    load. `cuda_capability` None: no CUDA GPU. `config`: the model's config.json (None: not known yet, so
    the pre-quantized checks wait for the load, which passes it)."""
    fmt = precision_format(precision)
    if backend not in fmt.backends and backend in ("hf", "vllm"):
        return f"precision {precision} is {fmt.library}, which runs on {'/'.join(fmt.backends)} only"
    if precision == "fp8":
        if cuda_capability is None:
            return ("precision fp8 needs a GPU with fp8 support (compute capability >= 8.9: L4, RTX 40xx, "
                    "H100); this CPU has no fp8 matmul kernel (torchao's float8 and vLLM's fp8 are GPU-only)")
        if tuple(cuda_capability) < FP8_MIN_CAPABILITY:
            major, minor = cuda_capability
            return (f"precision fp8 needs compute capability >= 8.9 (L4, RTX 40xx, H100); this GPU has "
                    f"{major}.{minor} (no fp8 tensor cores): use bf16, int8wo or int4wo")
    if precision == "prequantized" and config is not None:
        packages = installed_packages() if installed is None else installed
        return load_refusal(checkpoint_quant(config), backend, packages)
    return None


def skip_patterns(fragments: tuple[str, ...]) -> list[str]:
    """transformers 5 matches skip entries from the start of the module name (or as a suffix), so a
    bare fragment such as "vision_tower" would miss "model.vision_tower.encoder": anchor it anywhere.
    The fragment must also end a name part: transformers 5.20 matches a bare prefix (``re.match``), under
    which "model.embed_tokens" would also skip Phi-4's vision side, "model.embed_tokens_extend"."""
    return [rf"(?:.*\.)?{re.escape(f)}(?:\..*)?$" for f in fragments] + ["lm_head"]


def _torchao_config(precision: str, skip: list[str], on_cuda: bool) -> Any:
    """transformers' TorchAoConfig for a torchao precision (inductor settings left alone: nothing here is
    compiled)."""
    from transformers import TorchAoConfig

    if precision == "int8wo":
        from torchao.quantization import Int8WeightOnlyConfig

        quant = Int8WeightOnlyConfig(set_inductor_config=False)
    elif precision == "int4wo" and on_cuda:
        from torchao.quantization import Int4WeightOnlyConfig

        quant = Int4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d",
                                     set_inductor_config=False)
    elif precision == "int4wo":  # torchao 0.18's CPU int4 path (aten._weight_int4pack_mm_for_cpu)
        from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig

        quant = PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, set_inductor_config=False)
    else:  # fp8, on a GPU of capability >= 8.9 (refused elsewhere)
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

        quant = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)
    return TorchAoConfig(quant, modules_to_not_convert=skip)


def load_kwargs(precision: str, family: Family, on_cuda: bool) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` realising `precision` for this family."""
    import torch

    fmt = precision_format(precision)
    dtype = getattr(torch, float_dtype_name(precision, on_cuda))
    kwargs: dict[str, Any] = {"dtype": dtype}
    if fmt.quantized_side is None:
        return kwargs
    kwargs["device_map"] = {"": 0} if on_cuda else {"": "cpu"}
    if fmt.quantized_side == "checkpoint":
        return kwargs  # transformers reads the method from config.json's quantization_config
    # the side that stays float (and a vocabulary head not named lm_head, which also stays float)
    keep_float = (family.vision_modules + family.output_head_modules if fmt.quantized_side == "language"
                  else family.language_modules)
    if fmt.library == "bitsandbytes":
        kwargs["quantization_config"] = _bnb_config(fmt, dtype, skip_patterns(keep_float))
    else:
        kwargs["quantization_config"] = _torchao_config(precision, skip_patterns(keep_float), on_cuda)
    return kwargs


def _bnb_config(fmt: PrecisionFormat, dtype: Any, skip: list[str]) -> Any:
    from transformers import BitsAndBytesConfig

    if fmt.quant_format == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=fmt.quant_format,
                              bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=skip)
