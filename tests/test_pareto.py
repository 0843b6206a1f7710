"""Pareto front selection and plotting."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from sweep.pareto import mark_front, pareto_front, plot_front

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
    from sweep.report import cost_axes, mark_fronts, plot_fronts

    cpu = mark_fronts(_results("cpu_rss"))
    assert cost_axes(cpu)["memory"] == "weight_gb"
    assert ["memory" in p for p in cpu["pareto"]] == [True, True, False]
    gpu = mark_fronts(_results("gpu_allocated"))
    assert cost_axes(gpu)["memory"] == "peak_memory_gb"
    assert ["memory" in p for p in gpu["pareto"]] == [True, False, False]
    names = [p.name for p in plot_fronts(cpu, tmp_path)]
    assert "pareto_cider_vs_memory.png" in names and all((tmp_path / n).stat().st_size > 0 for n in names)
