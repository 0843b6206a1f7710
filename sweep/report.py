"""The sweep's results: the cell table, Pareto fronts, plots (pure apart from writing files)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweep.pareto import pareto_front, plot_front

QUALITY = "cider"
COSTS = {"latency": "latency_p50_s", "memory": "peak_memory_gb", "energy": "energy_kwh"}
RANDOM_NOTE = "random weights: these quality numbers test the plumbing, they are not results"


def front_pool(results: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Cells eligible for a quality front: real weights only, unless the sweep has none."""
    ok = results[results["status"] == "ok"]
    real = ok[ok["weights"] == "real"]
    if not real.empty:
        return real, None
    return ok, RANDOM_NOTE


def mark_fronts(results: pd.DataFrame) -> pd.DataFrame:
    """Add a `pareto` column naming the cost axes on whose CIDEr front each cell lies."""
    out = results.copy()
    out["pareto"] = ""
    pool, _ = front_pool(out)
    for axis, cost in COSTS.items():
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
    for axis, cost in COSTS.items():
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
