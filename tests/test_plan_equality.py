"""One plan (issue 25): `--dry-run` prints the very `SweepPlan` the run executes. Over the same grids and
stores (finished, resumed, sampled, `--fresh`, refused, shared budgets, halving rungs) the dry run's plan
and the run's make the same decisions, and the decisions are the run's: what the engine reads back,
refuses and runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_engine import _finish, _grid  # the engine tests' grid: two budgets of a small zoo model, 6 images

from sweep.engine import plan_sweep
from sweep.plan.dry_run import format_sweep_plan
from sweep.plan.sweep_plan import READ_BACK, REFUSED, RUN, dry_run_plan
from sweep.results.store import ResultStore
from sweep.run import main

COSTS = {"latency_p50_s": 0.1}


def _both(tmp_path: Path, stored: int | None = None, fresh: bool = False, **overrides):
    """The dry run's plan and the run's over one grid and store: the first cell (t4) holds `stored` of the
    six samples. The dry run first: the run archives what --fresh replaces."""
    grid, samples, cells = _grid(tmp_path, **overrides)
    if stored is not None:
        _finish(ResultStore(tmp_path), cells[0], samples[:stored], COSTS)
    dry = dry_run_plan(grid, cells, samples, fresh)
    run = plan_sweep(grid, cells, samples, fresh)
    assert dry.decisions() == run.decisions()
    return dry, run, cells


def _status(plan, cells) -> list[str]:
    return [plan.entries[c.cell_id].status for c in cells]


def test_finished_cells_are_read_back_by_both(tmp_path):
    dry, run, cells = _both(tmp_path, stored=6)
    assert _status(run, cells) == [READ_BACK, RUN]
    assert run.finished == {cells[0].cell_id: {"latency_p50_s": 0.1}} and run.todo == [cells[1]]
    text = format_sweep_plan(dry, 6)
    assert "store: finished (read back, not recomputed)" in text
    # a finished cell generates nothing, so the other budget has no one to share with
    assert "generates nothing: finished in the store" in text and "share the generation" not in text


def test_a_half_finished_cell_resumes_in_both(tmp_path):
    dry, run, cells = _both(tmp_path, stored=3)
    assert _status(run, cells) == [RUN, RUN] and run.entries[cells[0].cell_id].stored == 3
    assert "store: 3/6 samples stored (resumes)" in format_sweep_plan(dry, 6)


def test_sampled_cells_are_never_read_back(tmp_path):
    dry, run, cells = _both(tmp_path, stored=6, generation={"do_sample": True})
    assert _status(run, cells) == [RUN, RUN] and not run.finished  # the run's rule: never silently reused
    text = format_sweep_plan(dry, 6)
    assert "finished (read back" not in text and "sampled (do_sample: true)" in text
    assert text.count("generates itself: sampling") == 2


def test_fresh_recomputes_every_cell_in_both(tmp_path):
    dry, run, cells = _both(tmp_path, stored=6, fresh=True)
    assert _status(run, cells) == [RUN, RUN] and not run.finished
    assert [e.archived for e in run.entries.values()] == [True, False]
    assert run.archived is not None and (run.archived / cells[0].cell_id / "costs.json").is_file()
    text = format_sweep_plan(dry, 6)
    assert "finished (read back" not in text and "new (--fresh: its stored results are archived" in text


def test_a_finished_cell_too_large_for_the_gpu_is_read_back_the_others_refused(tmp_path):
    dry, run, cells = _both(tmp_path, stored=6, resources={"gpu_memory_gb": 0.01})
    assert _status(run, cells) == [READ_BACK, REFUSED]
    assert list(run.refused) == [cells[1].cell_id] and "GB" in run.refused[cells[1].cell_id]
    assert dry.entries[cells[0].cell_id].runnable  # nothing is loaded for it: it cannot fail to fit
    assert not dry.entries[cells[1].cell_id].runnable and not dry.runnable
    assert format_sweep_plan(dry, 6).count("CANNOT RUN: oom (estimated)") == 1


def test_shared_budgets_are_grouped_alike(tmp_path):
    dry, run, cells = _both(tmp_path)
    small, large = cells  # t4 is answered from the generation of t8
    assert run.entries[small.cell_id].lead == large.cell_id and run.sharing.lead_of == {
        small.cell_id: large.cell_id}
    assert "1 generations for 2 cells to run: 1 cells share" in format_sweep_plan(dry, 6)
    off_dry, off_run, _ = _both(tmp_path / "off", generation={"share_token_budgets": False})
    assert not off_run.sharing.lead_of and not off_dry.sharing.lead_of


def test_halving_rungs_are_the_plans(tmp_path):
    dry, run, _ = _both(tmp_path, search={"strategy": "pareto_halving", "first_rung": 2})
    assert run.rungs == [2, 4, 6]
    assert "search: pareto_halving over rungs [2, 4, 6]" in format_sweep_plan(dry, 6)
    _, full, _ = _both(tmp_path / "full")
    assert full.rungs is None


def test_the_dry_run_writes_nothing(tmp_path):
    grid, samples, cells = _grid(tmp_path / "out")
    _finish(ResultStore(tmp_path / "out"), cells[0], samples, COSTS)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    dry_run_plan(grid, cells, samples, fresh=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("fresh", [False, True])
def test_the_cli_prints_the_plan_with_fresh(tmp_path, capsys, fresh):
    grid, samples, cells = _grid(tmp_path / "out")
    _finish(ResultStore(tmp_path / "out"), cells[0], samples, COSTS)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid.model_dump(mode="json")))
    assert main([str(path), "--dry-run", *(["--fresh"] if fresh else [])]) == 0
    text = capsys.readouterr().out
    assert ("store: finished (read back, not recomputed)" in text) is not fresh
    assert ("--fresh: the stored results of these cells are archived" in text) is fresh
