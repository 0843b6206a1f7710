"""One `SweepPlan` for `--dry-run` and the run: what each cell of an invocation will do, decided from the
grid, the sample ids and the result store alone (`build_plan`, which writes nothing). The dry run prints
it (`sweep.plan.dry_run.format_sweep_plan`); the run (`plan_sweep`) archives what `--fresh` replaces,
writes the samples' references and hands the same plan to `sweep.execute.run_plan.execute_plan`.

A cell is one of:
- `read back`: finished in the store over exactly these samples (not sampled, not `--fresh`): its stored
  costs are recorded, nothing is generated;
- `refused`: estimated not to fit the target GPU (`sweep.plan.memory`), or a precision the target cannot
  run (`sweep.plan.precisions`: fp8 without an fp8 kernel, a pre-quantized checkpoint no backend loads),
  failed before any load;
- `pruned`: stopped at a rung by successive halving in an earlier run under the same search settings
  (`sweep.results.pruned`): read back as the result it is, not run again;
- `run`: a trial on Ray, which captions what the store lacks (`stored` samples are resumed, none under
  `--fresh`), or whose cell is answered from the generation of a larger budget (`lead`, token-budget
  sharing among the cells to run: `sweep.plan.budgets`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sweep.data.sources import Sample
from sweep.grid.cells import Cell
from sweep.grid.config import GridConfig, SearchConfig
from sweep.plan.budgets import Sharing, plan_sharing
from sweep.plan.cell_facts import describe_cell, eta_from_store, memory_refusals, target_gpu_bytes
from sweep.plan.precisions import precision_refusals
from sweep.results.inputs import check_store_paths
from sweep.results.pruned import stored_prunes
from sweep.results.store import ResultStore

READ_BACK, REFUSED, RUN, PRUNED = "read back", "refused", "run", "pruned"
NOTHING = {READ_BACK: "generates nothing: finished in the store", REFUSED: "generates nothing: cannot run",
           PRUNED: "generates nothing: pruned by successive halving (search.strategy: full completes it)"}
SAMPLED = "sampled (do_sample: true): never read back by the plan"


@dataclass
class CellPlan:
    """One cell's part of the plan: its status and what the dry run shows of it."""

    cell: Cell
    status: str = RUN
    costs: dict | None = None  # read back: the stored costs recorded for it
    stored: int = 0  # this sweep's samples already in the store (a run resumes after them)
    n_samples: int = 0
    archived: bool = False  # --fresh: its stored results go to cells-archive/, none reused
    sharing: str = ""  # token-budget sharing: "shares the generation of ..." or "generates itself: ..."
    lead: str = ""  # the cell whose generation answers this one (token-budget sharing)
    problems: list[str] = field(default_factory=list)  # refused, or (dry run) what will fail its load
    prune: Any = None  # pruned: why (sweep.results.pruned.StoredPrune), read back as a result
    # what the dry run shows besides (filled by `build_plan(describe=True)`)
    family: str = "?"
    backend: str = "?"
    backend_reason: str = ""
    vision: str = ""
    language: str = ""
    memory: str = "unknown"
    eta_s: float | None = None

    @property
    def runnable(self) -> bool:
        return not self.problems

    @property
    def store_state(self) -> str:
        if self.status == READ_BACK:
            return "finished (read back, not recomputed)"
        if self.status == PRUNED:
            return f"pruned at {self.prune.n_images} images (read back as pruned, not run again)"
        if self.archived:
            return "new (--fresh: its stored results are archived, not reused)"
        if self.cell is not None and self.cell.do_sample and self.stored and self.stored == self.n_samples:
            return f"{SAMPLED}; its trial finds all {self.stored} samples stored"
        if self.stored:
            return f"{self.stored}/{self.n_samples} samples stored (resumes)"
        return "new"

    def decision(self) -> tuple:
        """What the run acts on (the dry run's descriptive fields aside)."""
        return (self.cell.cell_id, self.status, self.costs, self.stored, self.archived, self.lead,
                self.sharing, self.problems[:1] if self.status == REFUSED else [])


@dataclass
class PlanSettings:
    """What the plan needs of the grid: the target GPU (a callable: finding this machine's GPU imports torch,
    which a grid whose every cell is stored never needs), the image side, budget sharing, the search."""

    gpu_bytes: int | None | Callable[[], int | None] = None
    image_side: int | None = None
    share_token_budgets: bool = True
    search: SearchConfig | None = None
    accelerator_type: str | None = None  # the target of the precision refusals (fp8 needs capability 8.9)

    @classmethod
    def from_grid(cls, grid: GridConfig) -> PlanSettings:
        res = grid.resources
        return cls(lambda: target_gpu_bytes(res.accelerator_type, res.gpu_memory_gb),
                   grid.dataset.image_max_side, grid.generation.share_token_budgets, grid.search,
                   res.accelerator_type)

    def gpu(self) -> int | None:
        return self.gpu_bytes() if callable(self.gpu_bytes) else self.gpu_bytes


@dataclass
class SweepPlan:
    """What an invocation will do: one `CellPlan` per cell (in the grid's order), the budget sharing among
    the cells to run, and the rungs of successive halving (image counts; None under a full search)."""

    cells: list[Cell]
    store: ResultStore
    entries: dict[str, CellPlan]
    sharing: Sharing = field(default_factory=Sharing)
    rungs: list[int] | None = None
    fresh: bool = False
    grid: GridConfig | None = None
    samples: list[Sample] = field(default_factory=list)
    archived: Path | None = None  # --fresh: where the run moved earlier results

    @property
    def output_dir(self) -> Path:
        return self.store.root

    @property
    def finished(self) -> dict[str, dict]:
        """Cell id -> stored costs, for the cells read back."""
        return {i: e.costs for i, e in self.entries.items() if e.status == READ_BACK and e.costs is not None}

    @property
    def pruned(self) -> dict[str, Any]:
        """Cell id -> why successive halving pruned it in an earlier run (`sweep.results.pruned`)."""
        return {i: e.prune for i, e in self.entries.items() if e.status == PRUNED}

    @property
    def refused(self) -> dict[str, str]:
        """Cell id -> why it cannot fit the GPU."""
        return {i: e.problems[0] for i, e in self.entries.items() if e.status == REFUSED}

    @property
    def todo(self) -> list[Cell]:
        """The cells to run on Ray (derived cells of a shared budget included)."""
        return [e.cell for e in self.entries.values() if e.status == RUN]

    @property
    def runnable(self) -> bool:
        return all(e.runnable for e in self.entries.values())

    def decisions(self) -> tuple:
        """Everything the run acts on, comparable between two plans."""
        return tuple(e.decision() for e in self.entries.values()), self.rungs, self.fresh


def reusable(cell: Cell, store: ResultStore, wanted: set[str]) -> dict | None:
    """Costs of a cell the store already finished; sampled generation is never silently reused."""
    if cell.do_sample:
        return None
    return store.finished_costs(cell.cell_id, wanted)


def _halving_rungs(search: SearchConfig | None, n_images: int) -> list[int] | None:
    if search is None or search.strategy != "pareto_halving" or n_images == 0:
        return None
    from sweep.search.halving import rung_sizes

    return rung_sizes(n_images, search.rungs, search.first_rung, search.factor)


def build_plan(cells: list[Cell], store: ResultStore, sample_ids: set[str], settings: PlanSettings,
               fresh: bool = False, describe: bool = False) -> SweepPlan:
    """The plan: read back what the store finished (nothing under `fresh`), refuse the rest that cannot fit
    the GPU, run the others, grouping the runs one generation serves (only among them: a finished cell is
    read back and a new budget generates on its own). `describe`: add the dry run's facts (family, backend,
    memory, ETA, load problems). Reads the store and local config.json files; writes nothing."""
    entries = {c.cell_id: _cell_entry(c, store, sample_ids, fresh) for c in cells}
    if settings.search is not None and not fresh:  # a pruned cell is a result: read back, not run again
        runs = [e.cell for e in entries.values() if e.status == RUN]
        for cell_id, prune in stored_prunes(settings.search, store, runs).items():
            entries[cell_id].status, entries[cell_id].prune = PRUNED, prune
    todo = [e.cell for e in entries.values() if e.status == RUN]
    gpu = settings.gpu() if todo or describe else None
    refused = {**precision_refusals(todo, settings.accelerator_type),
               **memory_refusals(todo, gpu, settings.image_side)} if todo else {}
    for cell_id, reason in refused.items():
        entries[cell_id].status, entries[cell_id].problems = REFUSED, [reason]
    runs = [e.cell for e in entries.values() if e.status == RUN]
    sharing = plan_sharing(runs, settings.share_token_budgets)
    for entry in entries.values():
        entry.lead = sharing.lead_of.get(entry.cell.cell_id, "")
        entry.sharing = NOTHING.get(entry.status) or sharing.describe(entry.cell)
        if describe:
            _describe(entry, store, gpu, settings.image_side)
    return SweepPlan(cells, store, entries, sharing, _halving_rungs(settings.search, len(sample_ids)), fresh)


def _cell_entry(cell: Cell, store: ResultStore, sample_ids: set[str], fresh: bool) -> CellPlan:
    entry = CellPlan(cell, n_samples=len(sample_ids))
    if fresh:  # the run archives the cell's directory first: nothing stored is left to read back or resume
        entry.archived = store.cell_dir(cell.cell_id).exists()
        return entry
    entry.stored = len(store.done_sample_ids(cell.cell_id) & sample_ids)
    entry.costs = reusable(cell, store, sample_ids)
    if entry.costs is not None:
        entry.status = READ_BACK
    return entry


def _describe(entry: CellPlan, store: ResultStore, gpu: int | None, image_side: int | None) -> None:
    facts = describe_cell(entry.cell, gpu, image_side)
    problems = facts.pop("problems")
    if entry.status == RUN:  # a cell read back or refused loads nothing: its load cannot fail
        entry.problems += problems
    for key, value in facts.items():
        setattr(entry, key, value)
    entry.eta_s = eta_from_store(store, entry.cell, entry.n_samples - entry.stored)


def archive_cells(store: ResultStore, cells: list[Cell]) -> Path | None:
    """--fresh: move this grid's cells out of the way, keeping them."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = store.root / "cells-archive" / stamp
    moved = False
    for cell in cells:
        src = store.cell_dir(cell.cell_id)
        if src.exists():
            target.mkdir(parents=True, exist_ok=True)
            src.rename(target / cell.cell_id)
            moved = True
    return target if moved else None


def write_samples(out: Path, samples: list[Sample]) -> None:
    """samples.json: the samples' references and image ids, for `python -m sweep.publish.report`."""
    out.joinpath("samples.json").write_text(json.dumps({
        "references": {s.sample_id: list(s.references) for s in samples},
        "image_ids": {s.sample_id: s.image_id for s in samples},
    }))


def plan_sweep(grid: GridConfig, cells: list[Cell], samples: list[Sample], fresh: bool = False,
               describe: bool = False) -> SweepPlan:
    """The run's plan (`build_plan` over the grid's output dir), then what it needs before any work:
    `--fresh` archives the grid's cells, samples.json is written. Starts nothing."""
    check_store_paths(grid)  # before samples.json is written: never over an input
    out = grid.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out)
    plan = build_plan(cells, store, {s.sample_id for s in samples}, PlanSettings.from_grid(grid), fresh,
                      describe)
    plan.grid, plan.samples = grid, samples
    if fresh:
        plan.archived = archive_cells(store, cells)
    write_samples(out, samples)
    return plan


def dry_run_plan(grid: GridConfig, cells: list[Cell], samples: list[Sample] | None,
                 fresh: bool = False) -> SweepPlan:
    """`--dry-run`'s plan: the run's, with the dry run's facts, over the output dir as it is (nothing
    written, nothing archived). Video scenes are detected at run time: no samples yet."""
    store = ResultStore(grid.output_dir.resolve())
    ids = {s.sample_id for s in samples} if samples is not None else set()
    plan = build_plan(cells, store, ids, PlanSettings.from_grid(grid), fresh, describe=True)
    plan.grid, plan.samples = grid, list(samples or [])
    return plan

