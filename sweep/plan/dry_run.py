"""`--dry-run`: the plan the run would execute (`sweep.plan.sweep_plan.SweepPlan`), in words: what each
cell would do, from local information only (no GPU, no download, no Ray)."""

from __future__ import annotations

from sweep.grid.cells import Cell, prompt_legend
from sweep.grid.config import SearchConfig
from sweep.plan.cell_facts import (  # noqa: F401  (their home is cell_facts; callers import them here too)
    cell_config,
    estimated_weight_bytes,
    eta_from_store,
    memory_refusals,
    target_gpu_bytes,
)
from sweep.plan.sweep_plan import CellPlan, PlanSettings, SweepPlan, build_plan
from sweep.results.store import ResultStore


def plan_cells(cells: list[Cell], store: ResultStore, sample_ids: set[str],
               gpu_bytes: int | None = None, image_side: int | None = None,
               share_token_budgets: bool = True) -> list[CellPlan]:
    """The cells' part of `build_plan(describe=True)`, as the run would plan them."""
    settings = PlanSettings(gpu_bytes, image_side, share_token_budgets)
    return list(build_plan(cells, store, sample_ids, settings, describe=True).entries.values())


def format_sweep_plan(plan: SweepPlan, n_images: int | None) -> str:
    """What `--dry-run` prints of a plan: every cell, the counts, the search's lines. `n_images` None:
    video scenes, detected at run time."""
    count = f"{n_images} images" if n_images is not None else "video scenes (detected at run time)"
    name = plan.grid.name if plan.grid is not None else "?"
    lines = [f"sweep '{name}': {len(plan.cells)} cells x {count} (dry run)"]
    legend = prompt_legend(plan.cells)  # several prompts: the labels' /pN, said once
    lines += ["prompts (the labels' /pN):", *legend] if legend else []
    if plan.fresh:
        lines.append("--fresh: the stored results of these cells are archived under cells-archive/ and "
                     "every cell is computed again")
    lines.append(format_plan(list(plan.entries.values())))
    if plan.grid is not None:
        lines += format_search(plan.grid.search, list(plan.entries.values()), n_images or 0, plan.rungs)
    return "\n".join(lines)


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


def format_search(search: SearchConfig, plans: list[CellPlan], n_images: int,
                  rungs: list[int] | None = None) -> list[str]:
    """The search strategy's lines of the dry run: under successive halving its rungs and the worst-case
    and expected images the generations caption (`sweep.search.halving.image_counts`)."""
    if search.strategy == "full" or n_images == 0:
        return [f"search: full (every cell captions all {n_images} images)"] if n_images else []
    from sweep.search.halving import image_counts, rung_sizes

    # the plan's rungs (the run's); computed here for a list of cells without their plan
    sizes = rungs or rung_sizes(n_images, search.rungs, search.first_rung, search.factor)
    runs = [p for p in plans if p.sharing.startswith(("shares", "generates itself"))]
    generations = sum(not p.sharing.startswith("shares") for p in runs)
    worst, expected = image_counts(sizes, generations, search.factor)
    held = search.synchronous_first_rung and len(sizes) > 1
    # sweep.search.scheduler: with memory an objective, only a generation of no more memory can stop one
    waits = (f"ascending estimated weights; a generation waits at the first rung ({sizes[0]} images) only "
             "while one still to come may have no more memory" if "memory" in search.objectives else
             f"every generation captions the first rung ({sizes[0]} images) before any goes further")
    order = [f"order: {waits}, then the best CIDEr there goes on first"] if held else []
    return [
        f"search: pareto_halving over rungs {sizes} (images of one order, seed {search.seed}); a cell stops "
        f"when another is better on CIDEr at {search.confidence:.0%} and at least as cheap on "
        f"{', '.join(search.objectives)}",
        f"images captioned by {generations} generations: worst case {worst:,} (none stopped), expected "
        f"about {expected:,.0f} if 1/{search.factor:g} survive each rung (the real share depends on the "
        "cells)",
        *order,
    ]
