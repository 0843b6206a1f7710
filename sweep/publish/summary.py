"""The summary a sweep prints at its end: the results table, ties, notes and warnings, where its files and
MLflow runs are, and the cells pruned or failed with why."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_summary(plan: Any, execution: Any, out: Any, notes: list[str], log_path: Path | None) -> None:
    """`plan` a SweepPlan, `execution` its Execution, `out` what `sweep.publish.publish` produced."""
    from sweep.grid.cells import prompt_legend
    from sweep.publish.text_table import error_row_lines, format_table
    from sweep.publish.ties import terminal_ties

    results, root = out.results, plan.output_dir
    print()
    legend = prompt_legend(plan.cells)  # several prompts: the labels' /pN, said once
    for line in ["prompts (the labels' /pN):", *legend] if legend else []:
        print(line)
    print(format_table(results))
    print()
    for line in terminal_ties(out.ties, results, out.tied):
        print(line)
    choice = out.picks["any"].best
    if choice is not None:  # the whole answer, and for 16/24/80 GB, opens report.html
        tied_labels = ", ".join(t.label for t in out.picks["any"].ties)
        print(f"choice (no constraint): {choice['label']}" + (f"; tied with it: {tied_labels}" if tied_labels
              else "") + f"  (under constraints: python -m sweep.pick {root} --max-memory-gb X ...)")
    if out.random_note:
        print(f"NOTE: {out.random_note}.")
    for warning in out.warnings:
        print(f"WARNING: {warning}")
    for note in notes:
        print(f"note: {note}")
    for line in error_row_lines(root, results):  # cells with images they could not caption: the first why
        print(line)
    _print_where(plan, execution, out, log_path)
    _print_cells(results, "pruned", "pruned by successive halving (re-run with search.strategy: full to "
                 "complete them from where they stopped)", len(plan.cells))
    _print_cells(results, "failed", "failed", len(plan.cells))


def _print_where(plan: Any, execution: Any, out: Any, log_path: Path | None) -> None:
    root = plan.output_dir
    if out.unwritten:
        print(f"NOT WRITTEN: results.csv, plots and report in {root} ({out.unwritten})")
    else:
        print(f"results:   {root / 'results.csv'}  (per-cell caption tables under {root / 'cells'})")
        print(f"plots:     {', '.join(p.name for p in out.plots)} in {root}")
        print(f"report:    {out.report}  (rebuild: python -m sweep.publish.report {root})")
    uri, tracker = execution.tracking_uri, execution.tracker
    parent = tracker.parent_id if tracker else "not logged"
    print(f"MLflow:    {uri}  (experiment '{plan.grid.tracking.experiment}', parent run {parent})")
    if uri.startswith("sqlite:"):
        print(f"           mlflow ui --backend-store-uri {uri}")
    if log_path is not None:
        print(f"log:       {log_path}  (Ray, Tune, MLflow and tokenizer lines; --verbose shows them here)")


def _print_cells(results: Any, status: str, what: str, n_cells: int) -> None:
    """The cells of one status with their reasons, under a count line."""
    rows = results[results["status"] == status]
    if rows.empty:
        return
    print(f"{len(rows)} of {n_cells} cells {what}:")
    for _, row in rows.iterrows():
        print(f"  {row['label']}: {row['reason']}")
