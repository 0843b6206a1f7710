"""Will a cell fit on one GPU? A pure estimate from the model's config.json, made before any Ray work.

Formula (bytes; every term is computed from the config dict, nothing is loaded)::

    estimate = weights + kv_cache + activations

    weights     = LM_layers + P_embed_lm * b_float + vision
        P_layers_lm  decoder layers: per layer  q,o: 2*h*(heads*head_dim)  k,v: 2*h*(kv_heads*head_dim)
                     MLP (gated, SwiGLU): 3*h*intermediate   norms: 2*h
                     of which linear weights W_lm (all but the norms) in R_lm output rows
                     (q: heads*head_dim, k and v: kv_heads*head_dim, o: h, gate and up: intermediate, down: h)
        P_embed_lm   token embedding vocab*h, plus lm_head vocab*h unless tie_word_embeddings
                     (no precision here quantizes these: they stay float)
        P_vision     vision tower: per layer 4*d*d (attention) + 2*d*d_mlp (MLP), patch embedding,
                     position embedding, plus the projector into the LM (a 2-layer MLP d -> h -> h, or
                     Qwen2-VL's patch merger)
        LM_layers    float precisions: P_layers_lm * b_float; a precision quantizing the language side:
                     quant(W_lm, R_lm) + (P_layers_lm - W_lm) * b_float
        vision       float: P_vision * b_float; int8-vision: quant(P_vision, P_vision / d)
        quant(W, R)  = W * b_w + R * b_row + W / g * (b_group + n_group * b_float), from the precision table
                     (actors.precision.PRECISIONS):
            int8 (LLM.int8)  b_w 1, b_row 4 (fp32 SCB per row)
            nf4              b_w 0.5, g 64, b_group 4 (one fp32 absmax per 64-weight block)
            int8wo (torchao) b_w 1, b_row 5 (fp32 scale + int8 zero point per row)
            int4wo (torchao) b_w 0.5, g 32, n_group 2 (scale and zero point in the float dtype)
            fp8              b_w 1, b_row 4 (fp32 scale per row)
            prequantized     b_w from config.json's quantization_config: bits/8, plus (2 + bits/8)/g for
                             an fp16 scale and a packed zero point per group of g (AWQ, GPTQ)
        b_float = 4 for fp32, else 2 (the GPU compute dtype); `float_bytes` overrides it for the float
                  modules of a quantized precision (4 on CPU, where they stay fp32)
    kv_cache    = 2 * layers * kv_heads * head_dim * (prompt_tokens + max_new_tokens) * batch * beams * b_kv
        prompt_tokens = image tokens ((image_side / patch)^2 / merge^2) + 32 text tokens;
        b_kv = 4 for fp32 else 2 (the cache is kept in the compute dtype, also for int8/nf4)
    activations = 10% of weights  (allocator fragmentation, dequantization buffers)
                + batch * beams * vocab * 4          (fp32 logits of one step)
                + batch * beams * prompt_tokens * (4*h + 2*intermediate) * b_kv   (prefill of one layer)
                + 0.5 GiB                             (CUDA context and cuBLAS workspaces)

It is deliberately a slight over-estimate: a refusal costs one skipped cell, a wrong admission costs an
OOM halfway through a cell on a shared cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from actors.checkpoint_quant import checkpoint_quant
from actors.precision import PRECISIONS, PrecisionFormat

GiB = 1024**3
GB = 1000**3

#: Memory of one GPU by accelerator name (Ray's accelerator_type names where Ray has one), in bytes.
KNOWN_GPU_MEMORY: dict[str, int] = {
    "L4": 24 * GB,
    "RTX-5080": 16 * GB,
    "T4": 16 * GB,
    "A10G": 24 * GB,
    "A100-40G": 40 * GB,
    "A100-80G": 80 * GB,
    "H100": 80 * GB,
}
_ALIASES = {"RTX5080": "RTX-5080", "GEFORCE-RTX-5080": "RTX-5080", "A100": "A100-40G",
            "A100-40GB": "A100-40G", "A100-80GB": "A100-80G", "H100-80G": "H100", "H100-80GB": "H100",
            "TESLA-T4": "T4"}

TEXT_PROMPT_TOKENS = 32
WEIGHT_OVERHEAD = 0.10
CUDA_CONTEXT_BYTES = GiB // 2


def gpu_key(accelerator_type: str) -> str:
    """The table name of an accelerator (`NVIDIA L4` -> `L4`, `A100-80GB` -> `A100-80G`)."""
    key = accelerator_type.strip().upper().replace(" ", "-").replace("_", "-")
    key = key.removeprefix("NVIDIA-")
    return _ALIASES.get(key, key)


def known_gpu_memory(accelerator_type: str) -> int | None:
    """Bytes of one GPU of this kind (`L4`, `RTX 5080`, `A100-80G`, ...), None when unknown."""
    return KNOWN_GPU_MEMORY.get(gpu_key(accelerator_type))


def gpu_memory_bytes(accelerator_type: str | None, gpu_memory_gb: float | None = None) -> int | None:
    """The budget of one GPU for a grid's `resources`: the explicit override, else the known table."""
    if gpu_memory_gb is not None:
        return int(gpu_memory_gb * GB)
    return known_gpu_memory(accelerator_type) if accelerator_type else None


def _get(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("text_config", "llm_config", "language_config"):
        if isinstance(config.get(key), Mapping):
            return {**config[key], **{k: v for k, v in config.items() if k == "tie_word_embeddings"
                                      and "tie_word_embeddings" not in config[key]}}
    return config


class TextDims(NamedTuple):
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool


def text_dims(config: Mapping[str, Any]) -> TextDims:
    """The language model's sizes, whatever names this config family gives them."""
    t = _text_config(config)
    h = int(t["hidden_size"])
    heads = int(_get(t, "num_attention_heads", "n_head"))
    return TextDims(
        hidden=h,
        layers=int(_get(t, "num_hidden_layers", "n_layer", "num_layers")),
        heads=heads,
        kv_heads=int(_get(t, "num_key_value_heads", default=heads)),
        head_dim=int(_get(t, "head_dim", default=h // heads)),
        intermediate=int(_get(t, "intermediate_size", default=4 * h)),
        vocab=int(_get(t, "vocab_size", default=config.get("vocab_size", 32000))),
        tied=bool(_get(t, "tie_word_embeddings", default=False)),
    )


def language_parameters(config: Mapping[str, Any]) -> tuple[int, int]:
    """(decoder-layer parameters, embedding + lm_head parameters) of the language model."""
    d = text_dims(config)
    h = d.hidden
    attention = 2 * h * d.heads * d.head_dim + 2 * h * d.kv_heads * d.head_dim  # q, o and k, v
    per_layer = attention + 3 * h * d.intermediate + 2 * h
    return d.layers * per_layer + h, d.vocab * h * (1 if d.tied else 2)


def language_linears(config: Mapping[str, Any]) -> tuple[int, int]:
    """(weights, output rows) of the decoder layers' linear layers: what a quantizing precision packs."""
    d = text_dims(config)
    h = d.hidden
    weights = 2 * h * d.heads * d.head_dim + 2 * h * d.kv_heads * d.head_dim + 3 * h * d.intermediate
    rows = d.heads * d.head_dim + 2 * d.kv_heads * d.head_dim + h + 2 * d.intermediate + h
    return d.layers * weights, d.layers * rows


def vision_width(config: Mapping[str, Any]) -> int:
    """The vision tower's hidden size d (Qwen2-VL: embed_dim)."""
    v = config["vision_config"]
    if "embed_dim" in v and "depth" in v:  # Qwen2-VL style: hidden_size is the merger's output size
        return int(v["embed_dim"])
    return int(_get(v, "hidden_size", "embed_dim", "width"))


def weight_bytes(config: Mapping[str, Any], precision: str, float_bytes: float | None = None) -> float:
    """The weights term of the formula (module docstring) for this config at this precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
    fmt: PrecisionFormat = PRECISIONS[precision]  # type: ignore[index]
    b_float = float_bytes or (fmt.weight_bytes if fmt.float_dtype else 2.0)
    layer_params, embed_params = language_parameters(config)
    lin_w, lin_rows = language_linears(config)
    p_vision = vision_parameters(config)
    lm, vision = layer_params * b_float, p_vision * b_float
    if fmt.quantized_side == "language":
        lm = fmt.linear_bytes(lin_w, lin_rows, b_float) + (layer_params - lin_w) * b_float
    elif fmt.quantized_side == "vision" and p_vision:
        vision = fmt.linear_bytes(p_vision, p_vision / vision_width(config), b_float)
    elif fmt.quantized_side == "checkpoint":
        quant = checkpoint_quant(config)
        if quant is None:
            raise ValueError("precision prequantized: config.json has no quantization_config")
        lm = lin_w * quant.weight_bytes() + (layer_params - lin_w) * b_float
    return lm + embed_params * b_float + vision


def vision_parameters(config: Mapping[str, Any]) -> int:
    """Vision tower + projector parameters (0 for a text-only config)."""
    v = config.get("vision_config")
    if not isinstance(v, Mapping):
        return 0
    d = vision_width(config)
    layers = int(_get(v, "num_hidden_layers", "depth", "layers"))
    d_mlp = int(_get(v, "intermediate_size", default=int(_get(v, "mlp_ratio", default=4) * d)))
    patch = int(_get(v, "patch_size", default=14))
    channels = int(_get(v, "num_channels", "in_chans", "in_channels", default=3))
    temporal = int(_get(v, "temporal_patch_size", default=1))
    image = int(_get(v, "image_size", default=0))
    per_layer = 4 * d * d + 4 * d + 2 * d * d_mlp + d_mlp + d + 4 * d
    patches = (image // patch) ** 2 if image else 0
    embed = channels * temporal * patch * patch * d + (patches + 1) * d
    text_h = int(_text_config(config)["hidden_size"])
    merge = int(_get(v, "spatial_merge_size", default=0))
    if merge:  # patch merger: LN, then MLP (d*m^2 -> d*m^2 -> text hidden)
        ctx = d * merge * merge
        projector = ctx * ctx + ctx * text_h
    else:  # LLaVA's 2-layer MLP projector
        projector = d * text_h + text_h * text_h
    return layers * per_layer + embed + projector


def image_tokens(config: Mapping[str, Any], image_side: int | None = None) -> int:
    """Tokens one image takes in the prompt (LLaVA-1.5: 576; Qwen2-VL at 448 px: 256)."""
    v = config.get("vision_config")
    if not isinstance(v, Mapping):
        return 0
    if config.get("image_seq_length"):
        return int(config["image_seq_length"])
    patch = int(_get(v, "patch_size", default=14))
    side = image_side or int(_get(v, "image_size", default=448))
    merge = int(_get(v, "spatial_merge_size", default=1))
    return max(1, (side // patch) ** 2 // (merge * merge))


def estimate_cell_bytes(config: Mapping[str, Any], precision: str, batch_size: int, max_new_tokens: int,
                        num_beams: int = 1, prompt_tokens: int | None = None,
                        image_side: int | None = None, float_bytes: float | None = None) -> dict[str, int]:
    """GPU memory of one model actor of a cell: {"weights", "kv_cache", "activations", "total"} in bytes.

    `config` is the model's config.json as a dict (a VLM's with `text_config`/`vision_config`, or a
    Qwen2-VL style one with the text fields at the top). See the module docstring for the formula.
    """
    weights = weight_bytes(config, precision, float_bytes)
    b_float = float_bytes or (4.0 if precision == "fp32" else 2.0)

    d = text_dims(config)
    h, inter, vocab = d.hidden, d.intermediate, d.vocab
    if prompt_tokens is None:
        prompt_tokens = image_tokens(config, image_side) + TEXT_PROMPT_TOKENS
    sequences = batch_size * max(1, num_beams)
    kv = 2 * d.layers * d.kv_heads * d.head_dim * (prompt_tokens + max_new_tokens) * sequences * b_float
    activations = (WEIGHT_OVERHEAD * weights + sequences * vocab * 4
                   + sequences * prompt_tokens * (4 * h + 2 * inter) * b_float + CUDA_CONTEXT_BYTES)
    parts = {"weights": weights, "kv_cache": kv, "activations": activations}
    out = {k: int(math.ceil(v)) for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def check_fit(estimate_bytes: int, gpu_bytes: int) -> str | None:
    """None when the estimate fits the GPU, else a refusal message giving both numbers."""
    if estimate_bytes <= gpu_bytes:
        return None
    return (f"needs about {_gb(estimate_bytes)} of GPU memory ({estimate_bytes} bytes, estimated from the "
            f"model config) but the GPU has {_gb(gpu_bytes)} ({gpu_bytes} bytes): not started")


def refuse_unfit(cells: Iterable[Any], config_dicts: Mapping[str, Mapping[str, Any]],
                 gpu_bytes: int | None, image_side: int | None = None) -> dict[str, str]:
    """{cell_id: refusal reason} for the cells whose estimate exceeds their GPU budget.

    `config_dicts` maps a model's `id` (or its display name) to its config.json dict; cells whose model has
    no config there (custom loaders, unknown configs) are never refused. A cell's budget is
    `gpu_bytes * gpus_per_actor` (a fractional actor shares the GPU; a multi-GPU actor spreads its
    layers). With `gpu_bytes` None (unknown accelerator) nothing is refused.
    """
    refused: dict[str, str] = {}
    if not gpu_bytes:
        return refused
    for cell in cells:
        config = config_dicts.get(cell.model.id) or config_dicts.get(cell.model.display_name)
        if not config:
            continue
        try:
            est = estimate_cell_bytes(config, cell.precision, cell.batch_size, cell.max_new_tokens,
                                      cell.num_beams or 1, image_side=image_side)
        except (KeyError, TypeError, ValueError):
            continue  # a config this estimator cannot read: let the cell try
        budget = int(gpu_bytes * cell.gpus_per_actor)
        reason = check_fit(est["total"], budget)
        if reason:
            refused[cell.cell_id] = f"oom (estimated): {reason}"
    return refused
