"""The sweep's results: the cell table, Pareto fronts, plots (pure apart from writing files)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweep.pareto import pareto_front, plot_front

QUALITY = "cider"
COSTS = {"latency": "latency_p50_s", "memory": "peak_memory_gb", "energy": "energy_kwh"}
# Without a GPU, a cell's peak memory is its process's RSS: mostly the framework (torch alone is ~0.5 GB),
# the same for every model and precision. There the memory front is drawn over the model's weight bytes.
CPU_MEMORY_COST = "weight_gb"
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


def cost_axes(results: pd.DataFrame) -> dict[str, str]:
    """Cost axis -> column: peak memory where a cell measured GPU memory, else the weights' size."""
    kinds = results.get("peak_memory_kind", pd.Series(dtype=str)).fillna("").astype(str)
    on_gpu = kinds.str.startswith("gpu").any()
    return {**COSTS, "memory": COSTS["memory"] if on_gpu or kinds.eq("").all() else CPU_MEMORY_COST}


def mark_fronts(results: pd.DataFrame) -> pd.DataFrame:
    """Add a `pareto` column naming the cost axes on whose CIDEr front each cell lies."""
    out = results.copy()
    out["pareto"] = ""
    if "weight_bytes" in out:
        out[CPU_MEMORY_COST] = out["weight_bytes"] / 1e9
    pool, _ = front_pool(out)
    for axis, cost in cost_axes(out).items():
        if pool.empty or cost not in pool:
            continue
        points = list(zip(pool[QUALITY].astype(float), pool[cost].astype(float), strict=True))
        for i in pareto_front(points):
            idx = pool.index[i]
            out.at[idx, "pareto"] = ",".join(filter(None, [out.at[idx, "pareto"], axis]))
    return out


def plot_fronts(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per cost axis; failed cells carry no numbers, so the plot lists them as not plotted."""
    pool, note = front_pool(results)
    failed = results[results["status"] != "ok"][["label"]]
    rows = pool.to_dict("records") + failed.to_dict("records")
    paths = []
    for axis, cost in cost_axes(results).items():
        path = out_dir / f"pareto_cider_vs_{axis}.png"
        plot_front(rows, QUALITY, cost, "label", path, title=f"CIDEr vs {cost}", note=note)
        paths.append(path)
    return paths


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


TABLE_COLUMNS = [
    ("label", "cell"), ("status", "status"), ("backend", "backend"), ("weights", "weights"),
    ("cider", "CIDEr"), ("bleu_4", "BLEU-4"), ("meteor", "METEOR"), ("rouge_l", "ROUGE-L"),
    ("mean_caption_words", "words"), ("latency_p50_s", "lat p50 s"), ("images_per_sec", "img/s"),
    ("peak_memory_gb", "peak GB"), ("energy_kwh", "kWh"), ("pareto", "pareto front"),
]


def format_table(results: pd.DataFrame) -> str:
    """A plain-text table (no control characters: it reads the same in a terminal and a job log)."""
    cols = [(k, h) for k, h in TABLE_COLUMNS if k in results]
    cells = [[h for _, h in cols]]
    for _, row in results.iterrows():
        cells.append([_fmt(row[k]) if k in row else "" for k, _ in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_html_report(out_dir: Path, title: str, results: pd.DataFrame, plots: list[Path],
                      references: dict[str, list[str]], notes: list[str]) -> Path:
    """report.html in the output dir, built from the stored caption tables."""
    from sweep.html_report import build_html, examples_from_tables
    from sweep.store import ResultStore

    store = ResultStore(out_dir)
    tables = {cid: store.read_captions(cid) for cid in results["cell_id"]
              if store.captions_path(cid).is_file()}
    page = build_html(title, results, plots, examples_from_tables(tables, references), notes)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def rebuild(out_dir: Path) -> Path:
    """`python -m sweep.report <output dir>`: plots and report.html again from what the run stored."""
    import json

    results = pd.read_csv(out_dir / "results.csv", keep_default_na=True)
    for col in ("pareto", "reason", "backend", "weights"):
        if col in results:
            results[col] = results[col].fillna("")
    references = json.loads((out_dir / "samples.json").read_text())["references"]
    plots = plot_fronts(results, out_dir)
    _, note = front_pool(results)
    return write_html_report(out_dir, f"Sweep report: {out_dir.name}", results, plots, references,
                             [note] if note else [])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sweep.report",
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
