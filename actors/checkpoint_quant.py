"""Pre-quantized checkpoints: what a config.json's `quantization_config` says (AWQ, GPTQ, compressed-tensors,
and the other methods transformers writes), and which backend can load it here.

Pure functions of the config dict and of the installed package names, so detection and every refusal are
testable on a synthetic config.json without the quantization packages (none of AWQ's, GPTQ's or
compressed-tensors' kernels is installed on the CPU test machine).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Where transformers and vLLM look for it: the top of config.json; some VLM exports put it in text_config.
_CONFIG_KEYS = ("text_config", "llm_config", "language_config")

#: transformers' quantizer per method and the packages its `validate_environment` requires
#: (transformers 5.20: quantizer_awq needs gptqmodel; quantizer_gptq optimum + gptqmodel; ...).
HF_PACKAGES: dict[str, tuple[str, ...]] = {
    "awq": ("gptqmodel",),
    "gptq": ("optimum", "gptqmodel"),
    "compressed-tensors": ("compressed_tensors",),
    "bitsandbytes": ("bitsandbytes",),
    "torchao": ("torchao",),
    "fp8": (),  # transformers' fine-grained fp8: a CUDA/XPU GPU, no package
}

#: methods vLLM detects from config.json itself (vLLM's quantization registry, 0.3x): it then picks its
#: fastest kernel (awq -> awq_marlin, gptq -> gptq_marlin on capable GPUs), so it is not told the method.
VLLM_METHODS = frozenset({"awq", "gptq", "compressed-tensors", "fp8", "bitsandbytes", "torchao", "modelopt",
                          "fbgemm_fp8", "gguf", "mxfp4", "awq_marlin", "gptq_marlin"})


@dataclass(frozen=True)
class CheckpointQuant:
    """A checkpoint's quantization as its config.json states it."""

    method: str
    bits: int | None  # weight bits (None: not stated)
    group_size: int | None  # weights sharing one scale (None: per channel or not stated)
    float_weights: bool = False  # fp8 weights (compressed-tensors float, transformers fp8)
    activation_bits: int | None = None  # compressed-tensors W8A8: activations quantized too
    ignored: tuple[str, ...] = ()  # modules the checkpoint left unquantized (vision tower, lm_head, ...)

    def describe(self) -> str:
        """"awq 4-bit (group 128)", "compressed-tensors w8a8 fp8", "bitsandbytes 4-bit"."""
        if self.bits is None:
            return self.method
        kind = "fp" if self.float_weights else ""
        if self.activation_bits:
            text = f"{self.method} w{self.bits}a{self.activation_bits}" + (f" fp{self.bits}" if kind else "")
        else:
            text = f"{self.method} {kind}{self.bits}" if kind else f"{self.method} {self.bits}-bit"
        return text + (f" (group {self.group_size})" if self.group_size else "")

    def weight_bytes(self) -> float:
        """Bytes per quantized weight, scales included: AWQ/GPTQ (and int groups of compressed-tensors)
        store an fp16 scale and a packed `bits`-wide zero point per group; per-channel and fp8 block
        scales are one float per row or per 128x128 block, under 0.5% of the weights here."""
        bits = self.bits or 16
        if not self.group_size or self.float_weights:
            return bits / 8
        return bits / 8 + (2 + bits / 8) / self.group_size


def quantization_config(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The `quantization_config` of a config.json dict, wherever the VLM export put it."""
    found = config.get("quantization_config")
    if isinstance(found, Mapping):
        return found
    for key in _CONFIG_KEYS:
        sub = config.get(key)
        if isinstance(sub, Mapping) and isinstance(sub.get("quantization_config"), Mapping):
            return sub["quantization_config"]
    return None


def _compressed_tensors(q: Mapping[str, Any]) -> CheckpointQuant:
    groups = q.get("config_groups") or {}
    scheme = next((g for g in groups.values() if isinstance(g, Mapping)), {})
    weights = scheme.get("weights") or {}
    acts = scheme.get("input_activations") or {}
    return CheckpointQuant(
        "compressed-tensors",
        bits=weights.get("num_bits"),
        group_size=weights.get("group_size") if weights.get("strategy") == "group" else None,
        float_weights=weights.get("type") == "float",
        activation_bits=acts.get("num_bits") if acts else None,
        ignored=tuple(q.get("ignore") or ()),
    )


def _bitsandbytes(q: Mapping[str, Any]) -> CheckpointQuant:
    four = q.get("load_in_4bit") or q.get("_load_in_4bit")
    return CheckpointQuant("bitsandbytes", 4 if four else 8, 64 if four else None,
                           ignored=tuple(q.get("llm_int8_skip_modules") or ()))


def checkpoint_quant(config: Mapping[str, Any]) -> CheckpointQuant | None:
    """What the checkpoint's config.json says it is quantized with; None when it is not quantized."""
    q = quantization_config(config)
    if q is None:
        return None
    method = str(q.get("quant_method") or "unknown").lower()
    if method == "compressed-tensors":
        return _compressed_tensors(q)
    if method == "bitsandbytes":
        return _bitsandbytes(q)
    if method == "fp8":
        block = q.get("weight_block_size")
        return CheckpointQuant("fp8", 8, int(block[1]) if block else None, float_weights=True,
                               activation_bits=8, ignored=tuple(q.get("modules_to_not_convert") or ()))
    skip = q.get("modules_to_not_convert") or ()
    if method == "torchao":  # TorchAoConfig.to_dict: {"quant_type": {"default": {"_type": ...}}}
        kind = str(((q.get("quant_type") or {}).get("default") or {}).get("_type", ""))
        found = re.search(r"(Int|Float)(\d)", kind)
        bits = int(found.group(2)) if found else None
        return CheckpointQuant("torchao", bits, None, float_weights=kind.startswith("Float"),
                               ignored=tuple(skip))
    bits, group = q.get("bits", q.get("w_bit")), q.get("group_size", q.get("q_group_size"))
    return CheckpointQuant(method, int(bits) if bits else None,
                           int(group) if group and int(group) > 0 else None, ignored=tuple(skip))


def load_refusal(quant: CheckpointQuant | None, backend: str, installed: Iterable[str]) -> str | None:
    """Why `backend` cannot load this pre-quantized checkpoint (None when it can). `installed`: the
    importable package names of this machine (only the HF backend's quantizers depend on them)."""
    if quant is None:
        return ("precision prequantized needs a checkpoint whose config.json has a quantization_config "
                "(AWQ, GPTQ, compressed-tensors, ...); this one has none: use fp16/bf16 or a quantizing "
                "precision (int8, nf4, int8wo, int4wo, fp8)")
    if backend == "vllm":
        if quant.method in VLLM_METHODS:
            return None
        return (f"vLLM cannot load a {quant.describe()} checkpoint (it loads "
                f"{', '.join(sorted(VLLM_METHODS))}); use backend: hf")
    if quant.method not in HF_PACKAGES:
        return f"transformers here has no loader for a {quant.describe()} checkpoint"
    missing = [p for p in HF_PACKAGES[quant.method] if p not in set(installed)]
    if missing:
        return (f"HF cannot load a {quant.describe()} checkpoint here: transformers' {quant.method} "
                f"quantizer needs {', '.join(missing)} (not installed); serve it with vLLM "
                "(backend: vllm on a GPU) or install the package")
    return None


def installed_packages() -> set[str]:
    """The names of HF_PACKAGES importable in this process (found, not imported)."""
    import importlib.util

    names = {p for packages in HF_PACKAGES.values() for p in packages}
    return {p for p in names if importlib.util.find_spec(p) is not None}
