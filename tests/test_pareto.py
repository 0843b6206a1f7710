"""Pareto front selection and plotting."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from sweep.quality.pareto import mark_front, pareto_front, plot_front

NAN = math.nan


def test_dominance_quality_up_cost_down():
    points = [(0.9, 10.0), (0.8, 5.0), (0.7, 7.0), (0.95, 20.0), (0.5, 1.0), (0.9, 12.0)]
    # (0.7, 7) is beaten by (0.8, 5); (0.9, 12) by (0.9, 10): equal quality, higher cost.
    assert pareto_front(points) == [0, 1, 3, 4]


def test_nan_points_never_on_front_and_dominate_nothing():
    points = [(NAN, 0.0), (1.0, NAN), (0.5, 2.0), (NAN, NAN)]
    assert pareto_front(points) == [2]
    assert pareto_front([(NAN, 1.0)]) == []
    assert pareto_front([]) == []


def test_identical_points_are_both_on_front():
    points = [(0.8, 3.0), (0.8, 3.0), (0.7, 3.0)]
    assert pareto_front(points) == [0, 1]


def test_direction_flags():
    points = [(1.0, 1.0), (2.0, 2.0), (1.0, 2.0), (2.0, 1.0)]
    assert pareto_front(points) == [3]  # max first, min second
    assert pareto_front(points, maximize_first=False, minimize_second=True) == [0]
    assert pareto_front(points, maximize_first=True, minimize_second=False) == [1]
    assert pareto_front(points, maximize_first=False, minimize_second=False) == [2]


def test_mark_front_over_dicts_with_missing_values():
    rows = [
        {"cfg": "a", "cider": 1.0, "s": 10},
        {"cfg": "b", "cider": 0.5, "s": 2},
        {"cfg": "c", "cider": 0.4, "s": 3},
        {"cfg": "d", "s": 1},  # no quality: not comparable
        {"cfg": "e", "cider": 2.0, "s": None},
        {"cfg": "f", "cider": float("nan"), "s": 0.1},
    ]
    assert mark_front(rows, "cider", "s") == [True, True, False, False, False, False]
    # Minimising both: (s=2, cider=0.5) and (s=3, cider=0.4) trade off; (10, 1.0) loses to both.
    assert mark_front(rows, "s", "cider", maximize_quality=False) == [
        False,
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize("note", [None, "random weights: plumbing, not results"])
def test_plot_front_writes_png(tmp_path, note):
    rows = [
        {"cfg": "fp16-b8", "cider": 1.1, "sec": 40.0},
        {"cfg": "int8-b8", "cider": 1.0, "sec": 25.0},
        {"cfg": "nf4-b8", "cider": 0.7, "sec": 30.0},
        {"cfg": "nf4-b32", "cider": 0.9, "sec": 12.0},
        {"cfg": "failed", "cider": None, "sec": 5.0},
        {"cfg": "oom", "cider": 0.8, "sec": float("nan")},
    ]
    out = plot_front(rows, "cider", "sec", "cfg", tmp_path / "sub" / "front.png", "CIDEr vs time", note=note)
    assert out == tmp_path / "sub" / "front.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100


def test_plot_front_with_nothing_plottable(tmp_path):
    rows = [{"cfg": "x"}, {"cfg": "y", "cider": 1.0}]
    out = plot_front(rows, "cider", "sec", "cfg", tmp_path / "empty.png", "nothing")
    assert out.read_bytes()[:4] == b"\x89PNG"


def _results(kind: str):
    import pandas as pd

    # a: best quality, biggest weights; b: 4x smaller weights, less quality; c: dominated by b
    # peak memory (process RSS on CPU) says the opposite of the weights, as the framework dominates it
    return pd.DataFrame({
        "label": ["a", "b", "c"], "status": ["ok"] * 3, "weights": ["toy"] * 3,
        "cider": [2.0, 1.5, 1.0], "latency_p50_s": [0.1, 0.1, 0.1], "energy_kwh": [1e-6] * 3,
        "peak_memory_gb": [0.9, 1.1, 1.2], "weight_bytes": [8e5, 2e5, 3e5], "peak_memory_kind": [kind] * 3,
    })


def test_memory_front_uses_weights_on_cpu_and_peak_memory_on_gpu(tmp_path):
    from sweep.publish.report import cost_axes, mark_fronts, plot_fronts

    cpu = mark_fronts(_results("cpu_rss"))
    assert cost_axes(cpu)["memory"] == "weight_gb"
    assert ["memory" in p for p in cpu["pareto"]] == [True, True, False]
    gpu = mark_fronts(_results("gpu_allocated"))
    assert cost_axes(gpu)["memory"] == "peak_memory_gb"
    assert ["memory" in p for p in gpu["pareto"]] == [True, False, False]
    names = [p.name for p in plot_fronts(cpu, tmp_path)]
    assert "pareto_cider_vs_memory.png" in names and all((tmp_path / n).stat().st_size > 0 for n in names)


# Fronts with uncertainty: per-image tables (as scored cells store them) give paired intervals.

def _cell_table(cider, latency, seed: int = 0):
    import numpy as np
    import pandas as pd

    n = len(cider)
    return pd.DataFrame({"sample_id": [f"img{i:04d}" for i in range(n)], "error": "",
                         "caption": [f"caption {i}" for i in range(n)], "cider": cider,
                         "batch_latency_sec": latency,
                         "processing_time_sec": np.asarray(latency) / 4})


def _cells(specs: dict):
    """specs: label -> (per-image cider, per-image latency, peak GB, kWh): results rows, tables by cell id."""
    import numpy as np
    import pandas as pd

    tables, rows = {}, []
    for label, (cider, latency, gb, kwh) in specs.items():
        tables[f"id-{label}"] = _cell_table(cider, latency)
        rows.append({"cell_id": f"id-{label}", "label": label, "status": "ok", "weights": "toy",
                     "cider": float(np.mean(cider)), "latency_p50_s": float(np.median(latency)),
                     "peak_memory_gb": gb, "energy_kwh": kwh, "peak_memory_kind": "gpu_allocated"})
    return pd.DataFrame(rows), tables


def _noise(seed: int, n: int = 200, scale: float = 0.1):
    import numpy as np

    return np.random.default_rng(seed).normal(0, scale, n)


def _base(n: int = 200):
    import numpy as np

    return np.random.default_rng(99).gamma(2.0, 0.5, n)  # how hard each image is, shared by every cell


def _latency(seed: int, n: int = 200):
    import numpy as np

    return np.random.default_rng(seed).lognormal(-2.0, 0.3, n)


def test_a_clear_winner_leaves_the_loser_untied():
    from sweep.publish.report import mark_fronts
    from sweep.quality.statistics import Comparisons

    latency = _latency(1)
    results, tables = _cells({"win": (_base() + 0.5 + _noise(1), latency, 1.0, 1e-6),
                              "lose": (_base() + _noise(2), latency, 1.0, 1e-6)})
    marked = mark_fronts(results, Comparisons(tables)).set_index("label")
    assert marked.at["win", "pareto"] == marked.at["win", "pareto_tied"] == "latency,memory,energy"
    assert marked.at["lose", "pareto"] == "" and marked.at["lose", "pareto_tied"] == ""


def test_two_noisy_near_equal_cells_are_both_tied():
    from sweep.publish.report import mark_fronts, tie_summary
    from sweep.quality.statistics import Comparisons

    latency = _latency(1)
    results, tables = _cells({"a": (_base() + _noise(3, scale=0.3), latency, 1.0, 1e-6),
                              "b": (_base() - 0.01 + _noise(4, scale=0.3), latency * 1.02, 1.2, 2e-6)})
    marked = mark_fronts(results, Comparisons(tables)).set_index("label")
    assert marked.at["b", "cider"] < marked.at["a", "cider"]  # b: worse and dearer on every axis, as points
    assert marked.at["a", "pareto"] == marked.at["a", "pareto_tied"] == "latency,memory,energy"
    assert marked.at["b", "pareto"] == ""
    assert marked.at["b", "pareto_tied"] == "latency,memory,energy"  # but a cannot be told apart from it
    text = "\n".join(tie_summary(marked.reset_index(), Comparisons(tables)))
    assert "top two: a vs b" in text and ": tie;" in text and "images would separate them" in text
    assert "a: tie with b" in text


def test_latency_counts_as_cheaper_only_with_confidence():
    from sweep.publish.report import mark_fronts
    from sweep.quality.statistics import Comparisons

    latency = _latency(5)
    slower = 1.01 * latency[::-1]  # the same distribution, 1% slower as a point: noise, not a difference
    results, tables = _cells({"fast": (_base() + 0.5 + _noise(1), latency, 1.0, 1e-6),
                              "slow": (_base() + _noise(2), slower, 1.5, 2e-6)})
    marked = mark_fronts(results, Comparisons(tables)).set_index("label")
    assert marked.at["slow", "pareto"] == ""  # dominated as points on every axis
    assert marked.at["slow", "pareto_tied"] == "latency"  # its latency may be the better one
    diff = Comparisons(tables).difference("id-fast", "id-slow", "latency_p50_s")
    assert diff.tie and diff.estimate < 0


def test_without_per_image_tables_the_fronts_are_points():
    from sweep.publish.report import mark_fronts, tie_summary
    from sweep.quality.statistics import Comparisons

    latency = _latency(1)
    results, tables = _cells({"a": (_base() + _noise(3, scale=0.3), latency, 1.0, 1e-6),
                              "b": (_base() - 0.01 + _noise(4, scale=0.3), latency * 1.02, 1.2, 2e-6)})
    old_store = {cid: t.drop(columns=["cider"]) for cid, t in tables.items()}
    for comparisons in (None, Comparisons({}), Comparisons(old_store)):
        marked = mark_fronts(results, comparisons)
        assert list(marked["pareto_tied"]) == list(marked["pareto"]) == ["latency,memory,energy", ""]
    assert "not judged" in tie_summary(results, None)[0]
    # one cell without a table: its pairs fall back to points, the others keep their intervals
    marked = mark_fronts(results, Comparisons({"id-a": tables["id-a"]}))
    assert list(marked["pareto_tied"]) == ["latency,memory,energy", ""]


def test_plots_draw_intervals_and_ties(tmp_path):
    from sweep.publish.report import add_statistics, mark_fronts, plot_fronts

    latency = _latency(1)
    results, tables = _cells({"a": (_base() + _noise(3, scale=0.3), latency, 1.0, 1e-6),
                              "b": (_base() - 0.01 + _noise(4, scale=0.3), latency * 1.02, 1.2, 2e-6),
                              "c": (_base() - 0.6 + _noise(5), latency * 1.5, 2.0, 3e-6)})
    with_stats, comparisons = add_statistics(results, tables)
    assert with_stats["cider_ci_low"].notna().all() and with_stats["latency_p50_s_ci_high"].notna().all()
    marked = mark_fronts(with_stats, comparisons)
    assert list(marked["pareto_tied"]) == ["latency,memory,energy", "latency,memory,energy", ""]
    with_bars = plot_fronts(marked, tmp_path / "ci")
    without = plot_fronts(mark_fronts(results), tmp_path / "points")
    for a, b in zip(with_bars, without, strict=True):
        assert a.read_bytes()[:4] == b"\x89PNG" and a.read_bytes() != b.read_bytes()


def test_plot_front_error_bars_on_rows_that_have_them(tmp_path):
    rows = [
        {"cfg": "a", "cider": 1.1, "sec": 40.0, "lo": 1.0, "hi": 1.2, "s_lo": 35.0, "s_hi": 45.0},
        {"cfg": "b", "cider": 1.0, "sec": 25.0, "lo": 0.8, "hi": 1.15},  # no cost interval
        {"cfg": "c", "cider": 0.9, "sec": 30.0},  # no interval at all, tied
    ]
    out = plot_front(rows, "cider", "sec", "cfg", tmp_path / "f.png", "t", quality_ci=("lo", "hi"),
                     cost_ci=("s_lo", "s_hi"), tied=[False, False, True])
    with Image.open(out) as img:
        assert img.format == "PNG"
