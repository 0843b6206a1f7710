"""Plots a person reads: on quickstart-like results no two labels overlap and every label stays inside the
plot; the cells not named beside their point are listed in a numbered table."""

import itertools

import numpy as np
import pandas as pd

from sweep.publish.report import cost_axes, mark_fronts, plot_fronts


def quickstart_like() -> pd.DataFrame:
    """18 cells as `search_spaces/quickstart_trained.yaml` gives them (2 toy models x fp32/int8/nf4 x 4/8/16
    tokens): the 4-token cells share one CIDEr and nearly one latency (one tight cluster), and the longest
    labels sit at the right edge, as in the quickstart's plots."""
    rng = np.random.default_rng(1)
    rows = []
    for model, base_cider, base_lat, weights in (("shapes-llava-small", 0.8, 0.020, 2.1e5),
                                                 ("shapes-llava-base", 1.1, 0.035, 4.3e5)):
        for precision, lat_x, w_x in (("fp32", 1.0, 1.0), ("int8", 1.6, 0.3), ("nf4", 1.4, 0.2)):
            for tokens in (4, 8, 16):
                cider = base_cider * (0.8 if tokens == 8 else 1)
                cider = 0.05 + rng.normal(0, 0.002) if tokens == 4 else cider
                latency = base_lat * lat_x * (0.4 if tokens == 4 else tokens / 16) + rng.normal(0, 0.0005)
                rows.append({"cell_id": f"{model}-{precision}-{tokens}",
                             "label": f"{model}/{precision}/t{tokens}",
                             "status": "ok", "weights": "toy", "cider": cider + rng.normal(0, 0.01),
                             "cider_ci_low": cider - 0.1, "cider_ci_high": cider + 0.1,
                             "latency_p50_s": latency, "peak_memory_gb": 0.61 + rng.normal(0, 0.001),
                             "peak_memory_kind": "process_rss", "energy_kwh": latency * 1e-4,
                             "weight_bytes": weights * w_x, "images_per_sec": 1 / latency, "n_samples": 50.0})
    return pd.DataFrame(rows)


def _saved_figures(monkeypatch) -> list:
    """Record each figure as it is saved to PNG (its renderer holds the extents of what the file shows)."""
    from matplotlib.figure import Figure

    saved, original = [], Figure.savefig

    def record(fig, *args, **kwargs):
        original(fig, *args, **kwargs)
        saved.append(fig)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def _boxes(fig, gid: str) -> list:
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(lambda a: a.get_gid() == gid)
            if t.get_text()]


def test_quickstart_plots_have_no_overlapping_labels_inside_the_figure(tmp_path, monkeypatch):
    from PIL import Image

    saved = _saved_figures(monkeypatch)
    results = mark_fronts(quickstart_like())
    paths = plot_fronts(results, tmp_path)
    assert len(saved) == len(paths) == len(cost_axes(results)) == 3
    for fig, path in zip(saved, paths, strict=True):
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        with Image.open(path) as png:  # the figure measured is the file written
            assert png.size == tuple(int(v) for v in fig.bbox.size)
        labels, table = _boxes(fig, "cell-label"), _boxes(fig, "cell-table")
        assert labels, path.name
        plot_area, page = ax.get_window_extent(renderer), fig.bbox
        others = [ax.get_legend().get_window_extent(renderer), ax.title.get_window_extent(renderer),
                  *(t.get_window_extent(renderer) for t in ax.get_xticklabels() + ax.get_yticklabels()
                    if t.get_text())]
        for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
            assert not box_a.overlaps(box_b), f"{path.name}: '{a}' overlaps '{b}'"
        for text, box in labels:
            inside = plot_area.contains(box.x0, box.y0) and plot_area.contains(box.x1, box.y1)
            assert inside, (path.name, text)
            assert not any(box.overlaps(o) for o in others), (path.name, text)
        for text, box in table:
            assert page.contains(box.x0, box.y0) and page.contains(box.x1, box.y1), (path.name, text)
        # every cell is named: beside its point, or by its number in the table under the plot
        named = {t for t, _ in labels} | {t.split(": ", 1)[1].removesuffix(" (crowded: not marked)")
                                          for t, _ in table}
        assert set(results["label"]) <= named, path.name
        numbers = {t for t, _ in labels if t.isdigit()}
        assert {t.split(":")[0] for t, _ in table if "crowded" not in t} == numbers


def test_front_cells_are_named_beside_their_point(tmp_path, monkeypatch):
    saved = _saved_figures(monkeypatch)
    results = mark_fronts(quickstart_like())
    plot_fronts(results, tmp_path)
    for fig, axis in zip(saved, cost_axes(results), strict=True):
        on_front = {r["label"] for _, r in results.iterrows() if axis in r["pareto"].split(",")}
        assert on_front and on_front <= {t for t, _ in _boxes(fig, "cell-label")}, axis
