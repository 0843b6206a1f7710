"""report.html in a real headless Chromium: the recommendation comes first, the interactive plots render
(an SVG per cost axis, a point per cell) and hovering a point shows its cell, interval and costs.
The screenshot is kept in the test's tmp dir (report-hover.png)."""

import html
import json
import os
import re
import shutil
import subprocess

import pytest
from test_plot_labels import quickstart_like

from sweep.publish.report import candidates, mark_fronts, write_html_report
from sweep.quality.pick import gpu_picks, recommendation_sections

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Appended to a copy of the report: hover the first point of the first plot, then write what the page
# shows into the DOM, which --dump-dom prints.
PROBE = """<script>
window.addEventListener('load', function(){
  var circles = document.querySelectorAll('svg.pareto circle[data-cell]');
  var first = circles[0];
  first.dispatchEvent(new MouseEvent('mouseenter'));
  var tip = document.getElementById('plot-tip');
  var box = first.getBoundingClientRect();
  var out = {svgs: document.querySelectorAll('svg.pareto').length, circles: circles.length,
             width: box.width, tipShown: getComputedStyle(tip).display, tip: tip.innerText,
             firstSection: document.querySelector('h2').innerText};
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("no headless Chromium in CI: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("no chromium on PATH (apt-get install -y chromium): the report's browser test needs one")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=3000", "--window-size=1400,2400"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_renders_and_hover_shows_the_cell(tmp_path):
    browser = _browser()
    results = mark_fronts(quickstart_like())
    rows, memory = candidates(results)
    sections = recommendation_sections(gpu_picks(rows, None, memory))
    report = write_html_report(tmp_path, "Sweep report: quickstart-like", results, [], {}, [], ties=[],
                               recommendation=sections)
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _run(browser, "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["firstSection"] == "Which cell to use"
    assert seen["svgs"] == 3 and seen["circles"] == 3 * len(results) and seen["width"] > 0
    assert seen["tipShown"] == "block"
    assert "cider:" in seen["tip"] and "95% interval" in seen["tip"] and "latency_p50_s:" in seen["tip"]
    assert any(label in seen["tip"] for label in results["label"]), seen["tip"]
    shot = tmp_path / "report-hover.png"
    done = _run(browser, f"--screenshot={shot}", probe.as_uri())
    assert done.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000, done.stderr[-2000:]
