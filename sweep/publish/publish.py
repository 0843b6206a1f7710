"""Publishing an executed plan: results.csv, pareto_front.csv, the plots, report.html, the MLflow parent run
and the summary printed at the end of a sweep."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.execute.phases import PhaseTimer
from sweep.execute.run_plan import Execution
from sweep.logs import brief
from sweep.plan.sweep_plan import SweepPlan
from sweep.publish.cell_extras import EXTRAS_LOGGED, log_cell_extras
from sweep.publish.summary import print_summary
from sweep.results.disk import EXIT_STORAGE
from sweep.results.store import atomic_write_bytes

REPORT_STAMP = ".report.sha256"  # what the plots and report.html in the output dir were drawn from

log = logging.getLogger(__name__)


@dataclass
class Published:
    """What publishing produced: the results and what is shown beside them, the files written."""

    results: Any  # pandas DataFrame, one row per cell (results.csv)
    ties: list[str]
    random_note: str | None
    warnings: list[str]
    tied: dict[str, list[str]]  # cell id -> the cells tied with it (every pair; results.csv's tied_with)
    picks: Any  # the cell to use per GPU size (`sweep.quality.pick.gpu_picks`)
    recommendation: list  # the report's "which cell to use" sections
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None
    # a full or read-only disk: the table is still printed, the store keeps the cells
    unwritten: str | None = None

    @property
    def counts(self) -> tuple[int, int]:
        """(failed, pruned) cells; a pruned cell is a result, not a failure."""
        status = self.results["status"]
        return int((status == "failed").sum()), int((status == "pruned").sum())


def publish_results(plan: SweepPlan, execution: Execution, timer: PhaseTimer,
                    log_path: Path | None = None) -> tuple[int, Any]:
    """results.csv, pareto_front.csv, the plots, report.html, the MLflow parent run and the summary
    (naming `log_path`, the sweep's log file); (exit code, results)."""
    out = published(plan, execution, timer)
    _write_files(plan, out, timer)
    from sweep.publish.notices import pixel_notes

    notes = [*execution.notes, *pixel_notes(out.results)]
    if out.unwritten:
        cells = plan.output_dir / "cells"
        notes.append(f"could not write the sweep's results ({out.unwritten}); the per-cell results are in "
                     f"{cells}: free space and re-run (nothing is recomputed) to write them")
    elif execution.tracker is not None:
        notes += _log_sweep_run(plan, execution, out, timer)
    print_summary(plan, execution, out, notes, log_path)
    n_failed, _ = out.counts
    return (EXIT_STORAGE if out.unwritten else 1 if n_failed else 0), out.results


def published(plan: SweepPlan, execution: Execution, timer: PhaseTimer) -> Published:
    """The results table: one row per cell, `cells_beside`, the intervals, paired differences, fronts and
    the degenerate-output guard from each ok cell's per-image table."""
    import pandas as pd

    from sweep.publish.report import (
        add_statistics,
        candidates,
        front_pool,
        load_tables,
        mark_fronts,
        tie_summary,
    )
    from sweep.publish.text_table import degenerate_notes
    from sweep.publish.ties import tied_with
    from sweep.quality.pick import gpu_picks, recommendation_sections
    from sweep.results.recorder import cells_beside

    outcomes = [execution.outcomes[c.cell_id] for c in plan.cells]
    results = pd.DataFrame([o.row() for o in outcomes])
    beside = cells_beside({o.cell.cell_id: o.span for o in outcomes},
                          {o.cell.cell_id: o.params.get("shared_generation", "") for o in outcomes})
    results["cells_beside"] = [beside[c.cell_id] for c in plan.cells]
    with timer.phase("scoring"):
        results, comparisons = add_statistics(results, load_tables(plan.output_dir, results))
        results = mark_fronts(results, comparisons)
        ties = tie_summary(results, comparisons)
        tied = tied_with(results, comparisons)  # every pair, in results.csv; the terminal may group them
        results["tied_with"] = ["; ".join(tied.get(cid, [])) for cid in results["cell_id"]]
        pool, memory_column = candidates(results)
        picks = gpu_picks(pool, comparisons, memory_column)
    _, random_note = front_pool(results)
    return Published(results, ties, random_note, degenerate_notes(results), tied, picks,
                     recommendation_sections(picks))


def _write_files(plan: SweepPlan, out: Published, timer: PhaseTimer) -> None:
    """results.csv, pareto_front.csv, then the plots and report.html, unless they were drawn from these
    very results already (a re-run of a stored grid keeps them: a second of matplotlib saved)."""
    from sweep.grid.cells import prompt_legend
    from sweep.publish.report import cost_axes, plot_fronts, write_html_report
    from sweep.publish.spreadsheet import spreadsheet_safe

    root, results = plan.output_dir, out.results
    title = f"Sweep report: {plan.grid.name}"
    notes = [*filter(None, [out.random_note]), *out.warnings]
    legend = prompt_legend(plan.cells)  # several prompts: the labels' /pN, in the report once
    notes += ["prompts: " + "; ".join(line.strip() for line in legend)] if legend else []
    out.report = root / "report.html"
    try:
        # text cells that would start a spreadsheet formula (a model named "=...") are escaped
        atomic_write_bytes(root / "results.csv", spreadsheet_safe(results).to_csv(index=False).encode())
        front = results[results["pareto"] != ""]
        atomic_write_bytes(root / "pareto_front.csv", spreadsheet_safe(front).to_csv(index=False).encode())
        with timer.phase("report"):
            stamp = report_stamp(results, title, notes,
                                 [*out.ties, *(line for _, lines in out.recommendation for line in lines)])
            out.plots = [root / f"pareto_cider_vs_{axis}.png" for axis in cost_axes(results)]
            drawn = all(p.is_file() for p in [*out.plots, out.report])
            if drawn and _read_text(root / REPORT_STAMP) == stamp:
                return
            out.plots = plot_fronts(results, root)
            out.report = write_html_report(root, title, results, out.plots,
                                           {s.sample_id: list(s.references) for s in plan.samples},
                                           notes, ties=out.ties, recommendation=out.recommendation)
            atomic_write_bytes(root / REPORT_STAMP, stamp.encode())
    except OSError as err:
        out.unwritten = f"{err.filename or root}: {err.strerror or err}"


def _log_sweep_run(plan: SweepPlan, execution: Execution, out: Published, timer: PhaseTimer) -> list[str]:
    """Each cell's extras onto its child run, the counts, the files and the picks onto the parent run; notes
    of what failed (the files have it all: a re-run logs it)."""
    from sweep.quality.pick import pick_tags

    tracker, root = execution.tracker, plan.output_dir
    n_failed, n_pruned = out.counts
    with timer.phase("mlflow"):
        notes = log_cell_extras(tracker, execution.outcomes, out.results, root / EXTRAS_LOGGED)
    try:
        with timer.phase("mlflow"):
            tracker.log_parent(
                metrics={"n_cells_ok": len(plan.cells) - n_failed - n_pruned, "n_cells_failed": n_failed,
                         "n_cells_pruned": n_pruned},
                artifacts=[*out.plots, root / "results.csv", root / "pareto_front.csv", out.report],
                tags=pick_tags(out.picks),
            )
            tracker.finish(ok=n_failed == 0)
    except Exception as err:
        log.info("MLflow logging of the sweep run failed", exc_info=True)  # the whole error: sweep.log
        notes.append(f"MLflow logging of the sweep run failed: {brief(err)}; re-run to log")
    return notes


def report_stamp(results: Any, title: str, notes: list[str], ties: list[str]) -> str:
    """sha256 of what the plots and the report show: the results (but `reused`, which says only whether
    this invocation computed a cell), the title, the notes and the tie lines."""
    shown = results.drop(columns=[c for c in ("reused",) if c in results])
    h = hashlib.sha256(shown.to_csv(index=False).encode())
    h.update(json.dumps([title, notes, ties]).encode())
    return h.hexdigest()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
