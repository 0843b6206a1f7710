"""What the driver knows of a cell before running it, from local files only (no GPU, no download, no Ray):
its model's config.json, whether it fits the target GPU, its family and backend, an ETA from past runs."""

from __future__ import annotations

import json
import math
from typing import Any

from actors.custom import loader_problem
from actors.resolve import ModelConfigError, local_config_json
from sweep.grid.cells import Cell
from sweep.plan.budgets import family_of
from sweep.results.store import ResultStore


def _backend(cell: Cell, family: Any) -> tuple[str, str]:
    from actors.backends import choose_backend, detect_machine

    return choose_backend(cell.backend, family, cell.precision, **detect_machine())


def eta_from_store(store: ResultStore, cell: Cell, n_samples: int) -> float | None:
    """From finished cells of the same model and precision in this store: load + per-image time."""
    for cell_json in store.root.glob("cells/*/cell.json"):
        try:
            other = json.loads(cell_json.read_text())
            costs = json.loads((cell_json.parent / "costs.json").read_text())
        except (OSError, ValueError):
            continue
        if other["model"]["id"] == cell.model.id and other["precision"] == cell.precision:
            return costs.get("load_seconds", 0.0) + costs.get("seconds_per_image", 0.0) * n_samples
    return None


def target_gpu_bytes(accelerator_type: str | None, gpu_memory_gb: float | None) -> int | None:
    """The GPU a cell must fit: the grid's override or accelerator type, else this machine's GPU."""
    from sweep.plan.memory import gpu_memory_bytes

    known = gpu_memory_bytes(accelerator_type, gpu_memory_gb)
    if known:
        return known
    import torch

    return int(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else None


def cell_config(cell: Cell) -> dict | None:
    """The cell's model config.json read locally (never downloaded); None for a custom loader or when
    absent. An invalid file raises ModelConfigError."""
    return None if cell.model.loader else local_config_json(cell.model.id, cell.model.revision)


def memory_refusals(cells: list[Cell], gpu_bytes: int | None, image_side: int | None) -> dict[str, str]:
    """{cell_id: reason} for cells whose estimate exceeds the GPU (configs read locally, no download)."""
    from sweep.plan.memory import refuse_unfit

    configs = {}
    for c in cells:
        try:
            if cfg := cell_config(c):
                configs[c.model.id] = cfg
        except ModelConfigError:  # not refused here: the plan and the model's load name the bad file
            continue
    return refuse_unfit(cells, configs, gpu_bytes, image_side)


def estimated_weight_bytes(cell: Cell) -> float:
    """The cell's weights by `sweep.plan.memory.estimate_cell_bytes` (config.json read locally), +inf when
    unknown (a custom loader, no local config, a config not understood)."""
    from sweep.plan.memory import estimate_cell_bytes

    try:
        config = cell_config(cell)
        if config is None:
            return math.inf
        return float(estimate_cell_bytes(config, cell.precision, 1, 1)["weights"])
    except (ModelConfigError, KeyError, TypeError, ValueError):
        return math.inf


def memory_text(cell: Cell, gpu_bytes: int | None, image_side: int | None) -> str:
    from sweep.plan.memory import estimate_cell_bytes

    try:
        config = cell_config(cell)
    except ModelConfigError:
        return "unknown (config.json is not valid)"
    if config is None:
        return "unknown (no local config.json)"
    try:
        est = estimate_cell_bytes(config, cell.precision, cell.batch_size, cell.max_new_tokens,
                                  cell.num_beams or 1, image_side=image_side)["total"]
    except (KeyError, TypeError, ValueError):
        return "unknown (config not understood)"
    limit = f" of {gpu_bytes / 1e9:.1f} GB GPU" if gpu_bytes else " (no target GPU known)"
    return f"~{est / 1e9:.2f} GB{limit}"


def describe_cell(cell: Cell, gpu_bytes: int | None, image_side: int | None) -> dict[str, Any]:
    """The dry run's facts of a cell: family, backend and why, precision per side, memory estimate, and the
    problems that will make its load fail (unknown family, remote code not allowed, no backend)."""
    from sweep.plan.precisions import planned_formats

    vision, language = planned_formats(cell, "hf")
    facts: dict[str, Any] = {"vision": vision, "language": language,
                             "memory": memory_text(cell, gpu_bytes, image_side), "problems": []}
    if cell.model.loader:
        facts.update(family="custom", backend="custom", backend_reason=f"loader {cell.model.loader}")
        facts["problems"] += list(filter(None, [loader_problem(cell.model.loader)]))  # found, not run
        return facts
    try:
        family, problem = family_of(cell)
    except ValueError as err:
        family, problem = None, str(err)
    if family is None:
        facts["problems"].append(problem if "config.json" in problem else f"family unknown: {problem}")
        return facts
    facts["family"] = family.name
    if family.requires_remote_code and not cell.model.trust_remote_code:
        facts["problems"].append(f"{family.name} runs remote code: set trust_remote_code: true")
    try:
        facts["backend"], facts["backend_reason"] = _backend(cell, family)
        facts["vision"], facts["language"] = planned_formats(cell, facts["backend"])
    except ValueError as err:
        facts["problems"].append(str(err))
    return facts
