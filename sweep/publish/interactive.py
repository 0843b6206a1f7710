"""The report's interactive quality-vs-cost plots: inline SVG and a few lines of JavaScript, no library and
no network (the report stays one self-contained file). Hovering a point shows its cell, its CIDEr with
the 95% interval, and its costs."""

from __future__ import annotations

import html
import math

from sweep.publish.text_table import as_float

WIDTH, HEIGHT = 560, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 36, 28, 48
COLOURS = {"front": "#d62728", "tied": "#ff7f0e", "": "#999999"}

SCRIPT = """
(function(){
  var tip = document.getElementById('plot-tip');
  document.querySelectorAll('svg.pareto circle[data-cell]').forEach(function(c){
    c.addEventListener('mouseenter', function(e){
      tip.innerHTML = c.getAttribute('data-tip');
      tip.style.display = 'block';
      var r = c.getBoundingClientRect();
      tip.style.left = (window.scrollX + r.right + 8) + 'px';
      tip.style.top = (window.scrollY + r.top - 8) + 'px';
      c.setAttribute('r', 7);
    });
    c.addEventListener('mouseleave', function(){ tip.style.display = 'none'; c.setAttribute('r', 5); });
  });
})();
"""
STYLE = ("#plot-tip{position:absolute;display:none;background:#fff;border:1px solid #888;padding:6px;"
         "font-size:12px;box-shadow:2px 2px 4px #0003;pointer-events:none;max-width:360px}"
         "svg.pareto{border:1px solid #ddd;margin:4px;background:#fff}svg.pareto text{font-size:11px}")


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * k / (n - 1) for k in range(n)]


def _kind(row: dict, axis: str) -> str:
    if axis in str(row.get("pareto") or "").split(","):
        return "front"
    return "tied" if axis in str(row.get("pareto_tied") or "").split(",") else ""


def _tip(row: dict, quality: str, costs: dict[str, str]) -> str:
    low, high = as_float(row.get(f"{quality}_ci_low")), as_float(row.get(f"{quality}_ci_high"))
    interval = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) and math.isfinite(high) else ""
    lines = [f"<b>{html.escape(str(row.get('label')))}</b>",
             f"{quality}: {as_float(row.get(quality)):.3f}{interval} (95% interval)"]
    for column in dict.fromkeys([*costs.values(), "images_per_sec"]):
        value = as_float(row.get(column))
        if math.isfinite(value):
            lines.append(f"{html.escape(column)}: {value:.4g}")
    return "<br>".join(lines)


def _svg(rows: list[dict], quality: str, axis: str, cost: str, costs: dict[str, str]) -> str:
    points = [(r, as_float(r.get(cost)), as_float(r.get(quality))) for r in rows]
    points = [(r, x, y) for r, x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not points:
        return f"<p>{html.escape(quality)} vs {html.escape(cost)}: no cell has both values</p>"
    xs = [p[1] for p in points]
    bounds = (f"{quality}_ci_low", f"{quality}_ci_high")  # the interval bars stay inside the plot too
    ys = [v for r, _, y in points for v in (y, *(as_float(r.get(b)) for b in bounds)) if math.isfinite(v)]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad_x, pad_y = (x1 - x0) * 0.05 or abs(x0) * 0.05 or 1.0, (y1 - y0) * 0.08 or abs(y0) * 0.05 or 1.0
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def sy(y: float) -> float:
        return HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    parts = [f"<svg class='pareto' data-axis='{axis}' width='{WIDTH}' height='{HEIGHT}' "
             f"viewBox='0 0 {WIDTH} {HEIGHT}' xmlns='http://www.w3.org/2000/svg'>"]
    for t in _ticks(x0, x1):
        parts.append(f"<line x1='{sx(t):.1f}' x2='{sx(t):.1f}' y1='{TOP}' y2='{HEIGHT - BOTTOM}' "
                     "stroke='#eee'/>"
                     f"<text x='{sx(t):.1f}' y='{HEIGHT - BOTTOM + 14}' text-anchor='middle'>{t:.3g}</text>")
    for t in _ticks(y0, y1):
        parts.append(f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{sy(t):.1f}' y2='{sy(t):.1f}' "
                     "stroke='#eee'/>"
                     f"<text x='{LEFT - 4}' y='{sy(t) + 4:.1f}' text-anchor='end'>{t:.3g}</text>")
    parts.append(f"<text x='{(LEFT + WIDTH - RIGHT) / 2}' y='16' text-anchor='middle' font-weight='bold'>"
                 f"{html.escape(quality)} vs {html.escape(axis)}</text>")
    parts.append(f"<text x='{(LEFT + WIDTH - RIGHT) / 2}' y='{HEIGHT - 10}' text-anchor='middle'>"
                 f"{html.escape(cost)} (lower is better)</text>"
                 f"<text transform='translate(14,{(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)' "
                 f"text-anchor='middle'>{html.escape(quality)} (higher is better)</text>")
    front = sorted((x, y) for r, x, y in points if _kind(r, axis) == "front")
    if len(front) > 1:  # best quality within a cost budget: a step that changes at front points
        path = [f"M{sx(front[0][0]):.1f},{sy(front[0][1]):.1f}"]
        for (_, ya), (xb, yb) in zip(front, front[1:], strict=False):
            path.append(f"L{sx(xb):.1f},{sy(ya):.1f}L{sx(xb):.1f},{sy(yb):.1f}")
        parts.append(f"<path d='{''.join(path)}' fill='none' stroke='{COLOURS['front']}' "
                     "stroke-width='1.5'/>")
    for row, x, y in sorted(points, key=lambda p: ("", "tied", "front").index(_kind(p[0], axis))):
        low, high = as_float(row.get(f"{quality}_ci_low")), as_float(row.get(f"{quality}_ci_high"))
        if math.isfinite(low) and math.isfinite(high):
            parts.append(f"<line x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='{sy(low):.1f}' y2='{sy(high):.1f}' "
                         "stroke='#bbb'/>")
        tip = html.escape(_tip(row, quality, costs), quote=True)
        parts.append(f"<circle data-cell='{html.escape(str(row.get('cell_id')), quote=True)}' "
                     f"data-tip='{tip}' cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='5' "
                     f"fill='{COLOURS[_kind(row, axis)]}' stroke='#333' stroke-width='0.5'>"
                     f"<title>{html.escape(str(row.get('label')))}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def interactive_plots(rows: list[dict], costs: dict[str, str], quality: str = "cider") -> str:
    """One SVG per cost axis (`costs`: axis -> column) of the plotted `rows` (ok cells), with the hover
    script. Red: on the Pareto front; orange: tied with it; grey: dominated."""
    parts = [f"<style>{STYLE}</style><div id='plot-tip'></div>",
             "<p>Hover a point: its cell, its CIDEr with the 95% interval, its costs. Red: on the Pareto "
             "front; orange: tied with the front; grey: dominated. Bars: 95% interval.</p>"]
    parts += [_svg(rows, quality, axis, cost, costs) for axis, cost in costs.items()]
    parts.append(f"<script>{SCRIPT}</script>")
    return "".join(parts)

