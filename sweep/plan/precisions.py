"""Precision refusals decided on the driver before any work (shown by `--dry-run`, recorded by the sweep):
fp8 where the target has no fp8 kernel, `prequantized` on a checkpoint without a quantization_config or
with a method no backend that could serve the cell can load. The reasons are `actors.precision.refusal`'s,
the ones a model host raises at load; here the target is the grid's `resources.accelerator_type` when set
(the cluster's GPUs), else this machine."""

from __future__ import annotations

from sweep.grid.cells import Cell

#: CUDA compute capability by accelerator name (the names of sweep.plan.memory.KNOWN_GPU_MEMORY).
KNOWN_CAPABILITY: dict[str, tuple[int, int]] = {
    "L4": (8, 9), "RTX-5080": (12, 0), "T4": (7, 5), "A10G": (8, 6), "A100-40G": (8, 0), "A100-80G": (8, 0),
    "H100": (9, 0),
}
UNKNOWN = (99, 99)  # an accelerator named but not in the table: nothing is refused for its capability


def target_capability(accelerator_type: str | None) -> tuple[int, int] | None:
    """The compute capability cells are placed on: the named accelerator's (UNKNOWN when not in the table),
    else this machine's first GPU, None for a CPU."""
    if accelerator_type:
        from sweep.plan.memory import gpu_key

        return KNOWN_CAPABILITY.get(gpu_key(accelerator_type), UNKNOWN)
    from actors.backends import cuda_capability

    return cuda_capability()


def candidate_backends(cell: Cell, family, chosen: str, capability: tuple[int, int] | None) -> list[str]:
    """The backends that may serve the cell: the one the plan chose, and vLLM too when `auto` may pick it
    on the target's GPUs (the driver may lack vLLM while the hosts have it)."""
    out = [chosen]
    if cell.backend == "auto" and capability is not None and family is not None and family.vllm_supported:
        out.append("vllm")
    return list(dict.fromkeys(out))


def precision_refusal(cell: Cell, family, chosen: str, capability: tuple[int, int] | None,
                      config: dict | None) -> str | None:
    """Why the cell's precision cannot run on any backend that could serve it (None when one can)."""
    from actors.precision import refusal

    if cell.model.loader or cell.precision not in ("fp8", "prequantized"):
        return None
    if cell.precision == "prequantized" and config is None and not cell.model.is_tiny:
        return None  # config.json not local: the host decides at load, with the same reasons
    reasons = [refusal(cell.precision, backend=b, cuda_capability=capability, config=config)
               for b in candidate_backends(cell, family, chosen, capability)]
    if any(r is None for r in reasons):
        return None
    return "; ".join(dict.fromkeys(r for r in reasons if r))


def precision_refusals(cells: list[Cell], accelerator_type: str | None) -> dict[str, str]:
    """{cell_id: reason} for the cells whose precision is refused (module docstring)."""
    from actors.backends import choose_backend, detect_machine
    from actors.resolve import ModelConfigError, local_config_json
    from sweep.plan.budgets import family_of

    cells = [c for c in cells if c.precision in ("fp8", "prequantized") and not c.model.loader]
    if not cells:
        return {}
    capability, machine = target_capability(accelerator_type), detect_machine()
    refused = {}
    for cell in cells:
        try:
            family, _ = family_of(cell)
            config = local_config_json(cell.model.id, cell.model.revision)
            chosen = choose_backend(cell.backend, family, cell.precision, **machine)[0] if family else "hf"
        except (ValueError, ModelConfigError):
            continue  # a family or backend problem: the plan names it on its own
        if cell.model.is_tiny and cell.precision == "prequantized":
            config = {}  # tiny models are built unquantized: no quantization_config
        reason = precision_refusal(cell, family, chosen, capability, config)
        if reason:
            refused[cell.cell_id] = reason
    return refused


def planned_formats(cell: Cell, backend: str) -> tuple[str, str]:
    """(vision, language) formats the plan shows before loading; a pre-quantized checkpoint's language side
    by its method and bits when its config.json is local ("awq 4-bit (group 128)")."""
    from actors.checkpoint_quant import checkpoint_quant
    from actors.precision import PRECISIONS
    from actors.resolve import ModelConfigError, local_config_json

    fmt = PRECISIONS[cell.precision]
    vision, language = fmt.side_format("vision", backend), fmt.side_format("language", backend)
    if fmt.quantized_side == "checkpoint" and not cell.model.loader:
        try:
            quant = checkpoint_quant(local_config_json(cell.model.id, cell.model.revision) or {})
        except ModelConfigError:
            quant = None
        if quant is not None:
            language = quant.describe()
            vision = "float (unless the checkpoint quantized it)"
    return vision, language
