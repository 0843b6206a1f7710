"""A self-contained HTML report of a sweep: ranked cells, Pareto front, plots, example captions."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from sweep.results.tables import shown

#: the ranked table's columns, headers from `sweep.results.tables.RESULTS_TABLE`
RANK_COLUMNS = shown(["label", "status", "backend", "weights", "cider", "bleu_4", "meteor", "rouge_l",
                      "latency_p50_s", "latency_kind", "seconds_per_image", "images_per_sec",
                      "preprocess_share", "warmup_batches", "cache_policy", "peak_memory_gb", "energy_kwh",
                      "pareto", "pareto_tied", "degenerate_output", "reason"],
                     html=True)
#: columns shown as `value [low, high]` where the results have `<key>_ci_low/high`
INTERVAL_COLUMNS = ("cider", "bleu_4", "meteor", "rouge_l", "latency_p50_s", "seconds_per_image")

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}
th{background:#f0f0f0}tr.front td{background:#fff6d5}tr.tied td{background:#fdf9ee}tr.failed td{color:#a00}
tr.pruned td{color:#666}
td.degenerate{color:#a00;font-weight:bold}.ci{color:#777;font-size:11px}
pre.pick{background:#f6f8fa;padding:8px;white-space:pre-wrap}
.note{background:#fdecea;padding:8px;border-left:4px solid #d33}img{max-width:48%;margin:4px}
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _value(row: pd.Series, key: str) -> str:
    if key == "degenerate_output":
        return "DEGENERATE" if row[key] == 1.0 else ""
    text = _cell(row[key])
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if key in INTERVAL_COLUMNS and isinstance(low, float) and isinstance(high, float) \
            and math.isfinite(low) and math.isfinite(high):
        text += f" <span class='ci'>[{low:.4g}, {high:.4g}]</span>"
    return text


def rank(results: pd.DataFrame) -> pd.DataFrame:
    """Successful cells by CIDEr (best first), then the pruned ones (successive halving: CIDEr over fewer
    images), failed cells last."""
    ok = results[results["status"] == "ok"].sort_values("cider", ascending=False, na_position="last")
    pruned = results[results["status"] == "pruned"].sort_values("cider", ascending=False, na_position="last")
    return pd.concat([ok, pruned, results[~results["status"].isin(["ok", "pruned"])]])


def build_html(title: str, results: pd.DataFrame, plots: list[Path],
               examples: dict[str, list[dict]], notes: list[str], ties: list[str] | None = None,
               recommendation: list[tuple[str, list[str]]] | None = None,
               interactive: str | None = None) -> str:
    """`ties`: the lines of `sweep.publish.report.tie_summary` (which cells cannot be told apart);
    `recommendation`: (title, lines) of `sweep.quality.pick.recommendation_sections`, the page's first
    section; `interactive`: the hoverable plots (`sweep.publish.interactive`), before the PNGs."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if recommendation:
        parts.append("<section id='recommendation'><h2>Which cell to use</h2>")
        for heading, lines in recommendation:
            parts.append(f"<h3>{html.escape(heading)}</h3><pre class='pick'>"
                         f"{html.escape(chr(10).join(lines))}</pre>")
        parts.append("<p>Try other constraints: <code>python -m sweep.pick &lt;output_dir&gt; "
                     "--max-memory-gb X --min-images-per-sec Y --max-latency-s Z "
                     "--max-kwh-per-1k-images W</code></p></section>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    cols = [(k, h) for k, h in RANK_COLUMNS if k in results]
    parts.append("<h2>Cells, ranked by CIDEr</h2><table id='cells'><tr><th>#</th>")
    parts += [f"<th>{h}</th>" for _, h in cols]
    parts.append("</tr>")
    for i, (_, row) in enumerate(rank(results).iterrows(), start=1):
        klass = "failed" if row["status"] == "failed" else "pruned" if row["status"] == "pruned" else (
            "front" if row.get("pareto") else "tied" if row.get("pareto_tied") else "")
        parts.append(f"<tr class='{klass}' data-cell-id='{html.escape(str(row['cell_id']))}'><td>{i}</td>")
        for key, _ in cols:
            value = _value(row, key)
            marked = " class='degenerate'" if key == "degenerate_output" and value else ""
            parts.append(f"<td{marked}>{value}</td>")
        parts.append("</tr>")
    parts.append("</table><p>Highlighted rows lie on a CIDEr-vs-cost Pareto front (the axes are named); "
                 "lightly highlighted rows are not on it but are not dominated with confidence either "
                 "(<i>tied with the front</i>). Brackets: 95% bootstrap interval over the images.</p>")
    if ties:
        parts.append("<h2>What is a tie</h2><ul id='ties'>")
        parts += [f"<li>{html.escape(line.strip())}</li>" for line in ties]
        parts.append("</ul>")
    parts.append("<h2>Pareto plots</h2>")
    if interactive:
        parts.append(f"<div id='interactive'>{interactive}</div>")
    for path in plots:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<img alt='{html.escape(Path(path).stem)}' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Example captions</h2>")
    labels = dict(zip(results["cell_id"], results["label"], strict=True))
    for cell_id, rows in examples.items():
        parts.append(f"<h3>{html.escape(str(labels.get(cell_id, cell_id)))}</h3><table class='examples'>"
                     "<tr><th>image</th><th>caption</th><th>human references</th></tr>")
        for ex in rows:
            refs = shown_references(ex["references"])
            parts.append(f"<tr><td>{ex['image_id']}</td><td>{html.escape(ex['caption'] or ex['error'])}</td>"
                         f"<td>{refs}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


#: references shown per example image: COCO has 5; a dataset with thousands per image (one had 1M in all)
#: would otherwise put every one into the report
REFERENCES_SHOWN = 5


def shown_references(references: list[str], cap: int = REFERENCES_SHOWN) -> str:
    """The first `cap` references, escaped, and how many more there are."""
    shown = "<br>".join(html.escape(r) for r in references[:cap])
    more = len(references) - cap
    return shown + (f"<br><i>… and {more} more</i>" if more > 0 else "")


def examples_from_tables(tables: dict[str, pd.DataFrame], references: dict[str, list[str]],
                         per_cell: int = 3) -> dict[str, list[dict]]:
    """The first few samples of each cell (the same images across cells, so they compare)."""
    out = {}
    for cell_id, table in tables.items():
        rows = table.head(per_cell)
        out[cell_id] = [
            {"image_id": int(r["image_id"]), "caption": str(r["caption"]), "error": str(r["error"]),
             "references": references.get(str(r["sample_id"]), [])}
            for _, r in rows.iterrows()
        ]
    return out
