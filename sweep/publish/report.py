"""The sweep's results: Pareto fronts, intervals and ties, plots, report.html (pure apart from writing files);
the printed table is `sweep.publish.text_table`."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweep.publish.text_table import TABLE_COLUMNS, as_float, degenerate_notes, format_table
from sweep.quality.frontier import (
    AT_MOST_AS_DEAR,
    OBJECTIVES,
    QUALITY,
    WEIGHTS_MEMORY,
    beats,
    confident_front,
    cost_axes,
    pareto_front,
    tied,
)
from sweep.quality.pareto import plot_front
from sweep.quality.statistics import CI_METRICS, Comparisons, Difference, ci_columns
from sweep.quality.statistics import COSTS as CI_COSTS
from sweep.results.tables import RESULT_METRICS

# the printed table (`sweep.publish.text_table`) is part of what a report offers
__all__ = ["TABLE_COLUMNS", "cost_axes", "format_table", "mark_fronts", "plot_fronts", "rebuild",
           "tie_summary"]
RANDOM_NOTE = "random weights: these quality numbers test the plumbing, they are not results"
TOY_NOTE = "toy models trained on synthetic shapes: a real trade-off, on a toy task, not a VLM result"


def front_pool(results: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Cells eligible for a quality front: real weights only; else the project's toy models; else
    (plumbing runs) random weights, with a note saying what the numbers are."""
    ok = results[results["status"] == "ok"]
    for kind, note in (("real", None), ("toy", TOY_NOTE)):
        chosen = ok[ok["weights"] == kind]
        if not chosen.empty:
            return chosen, note
    return ok, RANDOM_NOTE


def candidates(results: pd.DataFrame) -> tuple[list[dict], str]:
    """The cells a recommendation (`sweep.quality.pick`) chooses among, the pool of the fronts, and the
    memory column a memory limit reads (`sweep.quality.frontier.memory_column`)."""
    if WEIGHTS_MEMORY not in results and "weight_bytes" in results:
        results = results.assign(**{WEIGHTS_MEMORY: results["weight_bytes"] / 1e9})
    pool, _ = front_pool(results)
    return pool.to_dict("records"), cost_axes(results)["memory"]


def _confidently_beats(j: int, i: int, pool: pd.DataFrame, cost: str,
                       comparisons: Comparisons | None) -> bool:
    """Does pool cell j beat cell i with confidence on quality while at least as cheap on `cost`
    (`sweep.quality.frontier.beats`, rule AT_MOST_AS_DEAR)? A paired cost interval where the cost has
    per-image samples (latency p50), else points; a pair without per-image scores: points."""
    point_j = (float(pool[QUALITY].iat[j]), float(pool[cost].iat[j]))
    point_i = (float(pool[QUALITY].iat[i]), float(pool[cost].iat[i]))
    if comparisons is None or "cell_id" not in pool:
        return beats(None, None, point_j, point_i, AT_MOST_AS_DEAR)
    a, b = pool["cell_id"].iat[j], pool["cell_id"].iat[i]
    paired = next((o.paired for o in OBJECTIVES.values() if o.column == cost and o.paired), None)
    cost_diff = comparisons.difference(a, b, paired) if paired else None
    return beats(comparisons.difference(a, b, QUALITY), cost_diff, point_j, point_i, AT_MOST_AS_DEAR)


def mark_fronts(results: pd.DataFrame, comparisons: Comparisons | None = None) -> pd.DataFrame:
    """Add `pareto` (the cost axes on whose CIDEr front each cell lies) and `pareto_tied` (the axes on
    which it is not dominated with confidence: `sweep.quality.frontier`, rule AT_MOST_AS_DEAR; every
    front cell is tied too).

    `comparisons`: paired differences between cells (`sweep.quality.statistics.Comparisons`, by cell
    id); without
    them (old stores, cells without per-image scores) the fronts are points and `pareto_tied` = `pareto`."""
    out = results.copy()
    out["pareto"] = ""
    out["pareto_tied"] = ""
    if "weight_bytes" in out:
        out[WEIGHTS_MEMORY] = out["weight_bytes"] / 1e9
    pool, _ = front_pool(out)
    for axis, cost in cost_axes(out).items():
        if pool.empty or cost not in pool:
            continue
        points = list(zip(pool[QUALITY].astype(float), pool[cost].astype(float), strict=True))
        front = pareto_front(points)
        usable = [i for i, (q, c) in enumerate(points) if not (math.isnan(q) or math.isnan(c))]
        sub = pool.iloc[usable]
        tied = {usable[k] for k in confident_front(len(usable), lambda j, i, s=sub, c=cost:
                                                     _confidently_beats(j, i, s, c, comparisons))}
        for column, chosen in (("pareto", set(front)), ("pareto_tied", tied | set(front))):
            for i in sorted(chosen):
                idx = pool.index[i]
                out.at[idx, column] = ",".join(filter(None, [out.at[idx, column], axis]))
    return out


def plot_fronts(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per cost axis; failed cells carry no numbers, so the plot lists them as not plotted.
    Intervals are drawn where the results have them (`<metric>_ci_low/high`), ties apart from the rest."""
    pool, note = front_pool(results)
    failed = results[results["status"] != "ok"][["label"]]
    rows = pool.to_dict("records") + failed.to_dict("records")
    paths = []
    for axis, cost in cost_axes(results).items():
        path = out_dir / f"pareto_cider_vs_{axis}.png"
        tied = [axis in str(r.get("pareto_tied") or "").split(",") for r in rows]
        cost_ci = ci_columns(cost) if cost in CI_COSTS else None
        notes = [note] if note else []
        if any(math.isfinite(as_float(r.get(QUALITY + "_ci_low"))) for r in rows):
            notes.append("bars: each cell's own 95% interval; ties are judged on paired differences over the "
                         "same images, which are narrower")
            if cost not in CI_COSTS:
                notes.append(f"{cost} has no per-image samples: no interval on that axis")
        plot_front(rows, QUALITY, cost, "label", path, title=f"CIDEr vs {cost}",
                   note="; ".join(notes) or None, quality_ci=ci_columns(QUALITY), cost_ci=cost_ci, tied=tied)
        paths.append(path)
    return paths


def load_tables(out_dir: Path, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The stored caption tables of the ok and pruned cells, by cell id (cells without one are left out)."""
    from sweep.results.store import ResultStore

    store = ResultStore(out_dir)
    # pruned cells too: their partial metrics (over the images they saw) keep their intervals
    ok = results[results["status"].isin(["ok", "pruned"])]["cell_id"] if "status" in results \
        else results["cell_id"]
    return {cid: store.read_captions(cid) for cid in ok if store.captions_path(cid).is_file()}


def add_statistics(results: pd.DataFrame,
                   tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, Comparisons]:
    """`<metric>_ci_low/high` (`sweep.quality.statistics.CI_METRICS`) and `degenerate_output` per cell
    from its caption table (NaN for cells without one), and the paired comparisons between the cells."""
    from sweep.quality.statistics import cell_intervals, degenerate_output

    out = results.copy()
    columns = [c for m in CI_METRICS for c in ci_columns(m)]
    per_cell = {cid: {**cell_intervals(table), "degenerate_output": degenerate_output(table)}
                for cid, table in tables.items()}
    for column in [*columns, "degenerate_output"]:
        out[column] = [per_cell.get(cid, {}).get(column, math.nan) for cid in out["cell_id"]]
    return out, Comparisons(tables)


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _difference_text(diff: Difference) -> str:
    verdict = "tie" if tied(diff) else ("better" if diff.low > 0 else "worse")
    interval = f"[{_signed(diff.low)}, {_signed(diff.high)}]"
    return f"CIDEr {_signed(diff.estimate)} {interval} over {diff.n} images: {verdict}"


def tie_summary(results: pd.DataFrame, comparisons: Comparisons | None) -> list[str]:
    """In words: which cells cannot be told apart by CIDEr at this sample size (a tie: the paired 95%
    interval of their difference includes zero), and about how many images would separate the top two."""
    pool, _ = front_pool(results)
    pool = pool[pool[QUALITY].astype(float).notna()].sort_values(QUALITY, ascending=False, kind="stable")
    ids = [cid for cid in pool["cell_id"] if comparisons is not None and cid in comparisons]
    labels = dict(zip(results["cell_id"], results["label"], strict=True))
    if len(ids) < 2:
        return ["ties: not judged (fewer than two cells with per-image scores: intervals need the per-image "
                "columns of captions.parquet)"]
    lines = ["ties (paired bootstrap of the CIDEr difference, 95% interval; a tie: the interval includes 0, "
             "the two cells cannot be told apart at this sample size):"]
    a, b = ids[0], ids[1]
    diff = comparisons.difference(a, b)
    if diff is not None:
        need = diff.images_to_separate()
        if math.isinf(need):
            size = "no number of images separates them (the same CIDEr)"
        elif tied(diff):
            size = f"about {math.ceil(need):,} images would separate them (n*(h/d)^2, h the half-width)"
        else:
            size = f"separated at {diff.n} images (about {math.ceil(need):,} would have sufficed)"
        lines.append(f"  top two: {labels[a]} vs {labels[b]}: {_difference_text(diff)}; {size}")
    for k, a in enumerate(ids):
        partners = []
        for b in ids[k + 1:]:
            diff = comparisons.difference(a, b)
            if diff is not None and tied(diff):
                partners.append(f"{labels[b]} ({_signed(diff.estimate)})")
        if partners:
            lines.append(f"  {labels[a]}: tie with " + ", ".join(partners))
    if len(lines) == 2:
        lines.append("  no tie: every pair of cells is separated at this sample size")
    return lines


def write_html_report(out_dir: Path, title: str, results: pd.DataFrame, plots: list[Path],
                      references: dict[str, list[str]], notes: list[str],
                      ties: list[str] | None = None,
                      recommendation: list[tuple[str, list[str]]] | None = None) -> Path:
    """report.html in the output dir, built from the stored caption tables; `recommendation` first
    (`sweep.quality.pick.recommendation_sections`), hoverable plots beside the PNGs."""
    from sweep.publish.html_report import build_html, examples_from_tables
    from sweep.publish.interactive import interactive_plots

    tables = load_tables(out_dir, results) if "cell_id" in results else {}
    pool, _ = front_pool(results)
    interactive = interactive_plots(pool.to_dict("records"), cost_axes(results), QUALITY)
    page = build_html(title, results, plots, examples_from_tables(tables, references), notes, ties=ties,
                      recommendation=recommendation, interactive=interactive)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def rebuild(out_dir: Path) -> Path:
    """`python -m sweep.publish.report <output dir>`: plots and report.html again from what the run stored."""
    import json

    from sweep.publish.spreadsheet import read_back

    results = read_back(pd.read_csv(out_dir / "results.csv", keep_default_na=True))  # formula cells unescaped
    for col in ("pareto", "pareto_tied", "reason", "backend", "weights"):
        if col in results:
            results[col] = results[col].astype(object).fillna("")
    # a results.csv of failed cells only, written before every row had the metric columns (issue 19, 8)
    for col in RESULT_METRICS:
        if col not in results:
            results[col] = math.nan
    for col in ("pareto", "pareto_tied", "reason", "backend", "weights", "peak_memory_kind", "latency_kind"):
        if col not in results:
            results[col] = ""
    references = json.loads((out_dir / "samples.json").read_text())["references"]
    plots = plot_fronts(results, out_dir)
    from sweep.quality.pick import gpu_picks, recommendation_sections

    _, note = front_pool(results)
    comparisons = Comparisons(load_tables(out_dir, results))
    ties = tie_summary(results, comparisons)
    rows, memory = candidates(results)
    picks = recommendation_sections(gpu_picks(rows, comparisons, memory))
    return write_html_report(out_dir, f"Sweep report: {out_dir.name}", results, plots, references,
                             [*filter(None, [note]), *degenerate_notes(results)], ties=ties,
                             recommendation=picks)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sweep.publish.report",
                                     description="Rebuild the plots and report.html of a finished sweep.")
    parser.add_argument("output_dir", type=Path, help="the sweep's output_dir (holds results.csv)")
    args = parser.parse_args(argv)
    if not (args.output_dir / "results.csv").is_file():
        print(f"{args.output_dir}: no results.csv here; pass a sweep's output_dir", flush=True)
        return 2
    print(rebuild(args.output_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
