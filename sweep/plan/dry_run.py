"""`--dry-run`: what each cell would do, from local information only (no GPU, no download, no Ray)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from actors.precision import PRECISIONS
from actors.resolve import ModelConfigError, local_config_json
from sweep.grid.cells import Cell
from sweep.grid.config import SearchConfig
from sweep.plan.budgets import family_of, plan_sharing
from sweep.results.store import ResultStore


@dataclass
class CellPlan:
    cell: Cell
    family: str = "?"
    backend: str = "?"
    backend_reason: str = ""
    vision: str = ""
    language: str = ""
    store_state: str = "new"
    eta_s: float | None = None
    memory: str = "unknown"
    sharing: str = ""  # token-budget sharing: "shares the generation of ..." or "generates itself: ..."
    problems: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return not self.problems


def _backend(cell: Cell, family) -> tuple[str, str]:
    from actors.backends import choose_backend, detect_machine

    return choose_backend(cell.backend, family, cell.precision, **detect_machine())


def vllm_missing_note(cells: list[Cell]) -> str:
    """The start line's note when a CUDA machine without vLLM runs auto cells on HF that vLLM could serve."""
    from actors.backends import detect_machine, missing_vllm_note

    requests = []
    for cell in cells:
        family = None if cell.model.loader else family_of(cell)[0]
        if family is not None:
            requests.append((cell.backend, family, cell.precision))
    return missing_vllm_note(requests, **detect_machine())


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


def _memory_text(cell: Cell, gpu_bytes: int | None, image_side: int | None) -> str:
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


def plan_cells(cells: list[Cell], store: ResultStore, sample_ids: set[str],
               gpu_bytes: int | None = None, image_side: int | None = None,
               share_token_budgets: bool = True) -> list[CellPlan]:
    plans = []
    refused = memory_refusals(cells, gpu_bytes, image_side)
    for cell in cells:
        plan = CellPlan(cell)
        fmt = PRECISIONS[cell.precision]
        plan.vision, plan.language = fmt.side_format("vision"), fmt.side_format("language")
        plan.memory = _memory_text(cell, gpu_bytes, image_side)
        if cell.cell_id in refused:
            plan.problems.append(refused[cell.cell_id])
        try:
            family, problem = family_of(cell) if not cell.model.loader else (None, "")
        except ValueError as err:
            family, problem = None, str(err)
        if cell.model.loader:
            plan.family, plan.backend, plan.backend_reason = "custom", "custom", f"loader {cell.model.loader}"
        elif family is None:
            plan.problems.append(problem if "config.json" in problem else f"family unknown: {problem}")
        else:
            plan.family = family.name
            if family.requires_remote_code and not cell.model.trust_remote_code:
                plan.problems.append(f"{family.name} runs remote code: set trust_remote_code: true")
            try:
                plan.backend, plan.backend_reason = _backend(cell, family)
            except ValueError as err:
                plan.problems.append(str(err))
        done = store.done_sample_ids(cell.cell_id) & sample_ids
        if store.finished_costs(cell.cell_id, sample_ids) is not None:
            plan.store_state = "finished (read back, not recomputed)"
        elif done:
            plan.store_state = f"{len(done)}/{len(sample_ids)} samples stored (resumes)"
        plan.eta_s = eta_from_store(store, cell, len(sample_ids) - len(done))
        plans.append(plan)
    # as the engine groups them: among the cells that will generate (not finished, not refused)
    runs = [p.cell for p in plans if p.runnable and not p.store_state.startswith("finished")]
    sharing = plan_sharing(runs, share_token_budgets)
    for plan in plans:
        if not plan.runnable:
            plan.sharing = "generates nothing: cannot run"
        elif plan.store_state.startswith("finished"):
            plan.sharing = "generates nothing: finished in the store"
        else:
            plan.sharing = sharing.describe(plan.cell)
    return plans


def format_plan(plans: list[CellPlan]) -> str:
    lines = []
    for i, p in enumerate(plans, start=1):
        eta = f"{p.eta_s:.0f} s" if p.eta_s is not None else "unknown (no past run)"
        lines.append(f"[{i}] {p.cell.label}  id={p.cell.cell_id}")
        lines.append(f"    family={p.family}  backend={p.backend} ({p.backend_reason})")
        lines.append(f"    precision: vision={p.vision} language={p.language}  memory: {p.memory}")
        lines.append(f"    store: {p.store_state}  ETA: {eta}")
        if p.sharing:
            lines.append(f"    generation: {p.sharing}")
        lines += [f"    CANNOT RUN: {problem}" for problem in p.problems]
    bad = sum(not p.runnable for p in plans)
    lines.append(f"{len(plans)} cells, {len(plans) - bad} runnable, {bad} cannot run")
    shared = sum(p.sharing.startswith("shares") for p in plans)
    if shared:
        runs = sum(p.sharing.startswith(("shares", "generates itself")) for p in plans)
        lines.append(f"{runs - shared} generations for {runs} cells to run: {shared} cells share the "
                     "generation of a larger budget (generation.share_token_budgets: false turns this off)")
    return "\n".join(lines)


def format_search(search: SearchConfig, plans: list[CellPlan], n_images: int) -> list[str]:
    """The search strategy's lines of the dry run: under successive halving its rungs and the worst-case
    and expected images the generations caption (`sweep.search.halving.image_counts`)."""
    if search.strategy == "full" or n_images == 0:
        return [f"search: full (every cell captions all {n_images} images)"] if n_images else []
    from sweep.search.halving import image_counts, rung_sizes

    sizes = rung_sizes(n_images, search.rungs, search.first_rung, search.factor)
    runs = [p for p in plans if p.sharing.startswith(("shares", "generates itself"))]
    generations = sum(not p.sharing.startswith("shares") for p in runs)
    worst, expected = image_counts(sizes, generations, search.factor)
    return [
        f"search: pareto_halving over rungs {sizes} (images of one order, seed {search.seed}); a cell stops "
        f"when another is better on CIDEr at {search.confidence:.0%} and at least as cheap on "
        f"{', '.join(search.objectives)}",
        f"images captioned by {generations} generations: worst case {worst:,} (none stopped), expected "
        f"about {expected:,.0f} if 1/{search.factor:g} survive each rung (the real share depends on the "
        "cells)",
    ]
