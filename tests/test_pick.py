"""The recommendation: best cell under constraints, its ties, relative costs, why the others are out."""

import math

import numpy as np
import pandas as pd
import pytest

from sweep.publish.report import candidates
from sweep.quality.pick import constraints, format_pick, gpu_picks, pick, pick_tags, recommendation_sections
from sweep.quality.statistics import Comparisons

N = 60


def recommend(results, comparisons, limits):
    rows, memory = candidates(results)
    return pick(rows, comparisons, limits, memory)


def _table(cider: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": [str(i) for i in range(N)], "cider": cider, "error": ""})


@pytest.fixture
def sweep():
    """Four cells: big (best), big-int8 (tied with big, half the memory), small (worse with confidence,
    much cheaper), slow (tied, but slow)."""
    rng = np.random.default_rng(0)
    big = rng.normal(1.0, 0.4, N) + 0.3
    alternate = np.where(np.arange(N) % 2 == 0, 0.1, -0.1)  # differences of mean ~0, spread 0.1: a tie
    tables = {"big": _table(big), "big-int8": _table(big - 0.002 + alternate),
              "small": _table(big - 0.3 + rng.normal(0, 0.02, N)),
              "slow": _table(big - 0.004 + np.roll(alternate, 1))}
    costs = {"big": (20.0, 4.0, 0.5, 0.010), "big-int8": (10.0, 3.0, 0.6, 0.012),
             "small": (2.0, 20.0, 0.1, 0.002), "slow": (9.0, 0.5, 3.0, 0.050)}
    rows = []
    for cid, (gb, ips, lat, kwh) in costs.items():
        rows.append({"cell_id": cid, "label": cid, "status": "ok", "weights": "real",
                     "cider": float(tables[cid]["cider"].mean()), "peak_memory_gb": gb,
                     "peak_memory_kind": "gpu_peak", "images_per_sec": ips, "latency_p50_s": lat,
                     "energy_kwh": kwh, "n_samples": float(N), "weight_bytes": gb * 1e9 / 2})
    rows.append({"cell_id": "broken", "label": "broken", "status": "failed", "weights": "real",
                 "cider": math.nan})
    return pd.DataFrame(rows), Comparisons(tables)


def test_no_constraint_picks_the_best_and_lists_its_ties_with_relative_costs(sweep):
    results, comparisons = sweep
    answer = recommend(results, comparisons, [])
    assert answer.best["label"] == "big"
    ties = {t.label: t for t in answer.ties}
    assert set(ties) == {"big-int8", "slow"}  # small is worse with confidence
    assert ties["big-int8"].relative_costs["memory_gb"] == pytest.approx(0.5)
    assert ties["slow"].relative_costs["images_per_sec"] == pytest.approx(0.125)
    assert all(t.difference.low < 0 < t.difference.high for t in answer.ties)
    text = "\n".join(format_pick(answer))
    assert "choice: big" in text and "big-int8" in text and "memory 0.5x" in text


def test_a_memory_limit_excludes_and_says_why(sweep):
    results, comparisons = sweep
    answer = recommend(results, comparisons, constraints(max_memory_gb=12))
    assert answer.best["label"] == "big-int8"
    assert [label for label, _ in answer.excluded] == ["big"]
    assert "max-memory-gb <= 12: memory (GB) is 20" in answer.excluded[0][1]
    assert {t.label for t in answer.ties} == {"slow"}


def test_every_constraint_together(sweep):
    results, comparisons = sweep
    answer = recommend(results, comparisons, constraints(max_memory_gb=12, min_images_per_sec=2,
                                                         max_latency_s=1, max_kwh_per_1k_images=0.5))
    # slow: 0.5 img/s; its kWh per 1k images = 0.05 / 60 * 1000 = 0.83
    assert answer.best["label"] == "big-int8" and answer.ties == []
    reasons = dict(answer.excluded)
    assert "min-images-per-sec >= 2" in reasons["slow"] or "max-latency-s" in reasons["slow"]
    assert answer.runner_up is not None and answer.runner_up[0] == "small"
    assert not answer.runner_up[1].tie and answer.more_images_to_separate == 0


def test_no_cell_meets_names_the_closest_and_what_it_breaks(sweep):
    results, comparisons = sweep
    answer = recommend(results, comparisons, constraints(max_memory_gb=1.5))
    assert answer.best is None
    assert answer.closest[0] == "small" and "max-memory-gb <= 1.5: memory (GB) is 2" in answer.closest[1]
    lines = format_pick(answer)
    assert lines[1] == "no cell meets the constraints" and "closest: small" in lines[2]


def test_more_images_to_separate_the_top_two_when_tied(sweep):
    results, comparisons = sweep
    answer = recommend(results, comparisons, [])
    label, diff = answer.runner_up
    assert label == "big-int8" and diff.tie
    assert answer.more_images_to_separate == pytest.approx(diff.images_to_separate() - diff.n)
    assert answer.more_images_to_separate > 0
    assert "more images would separate them" in "\n".join(format_pick(answer))


def test_cpu_runs_read_the_weights_size_for_memory(sweep):
    results, comparisons = sweep
    results = results.assign(peak_memory_kind="process_rss")  # no GPU memory measured
    answer = recommend(results, comparisons, constraints(max_memory_gb=6))
    assert answer.best["label"] == "big-int8"  # weights 5 GB; big's are 10
    assert answer.best["costs"]["memory_gb"] == pytest.approx(5.0)


def test_gpu_sizes_and_mlflow_tags(sweep):
    results, comparisons = sweep
    picks = gpu_picks(*_rows_memory(results, comparisons))
    assert list(picks) == ["any", "16gb", "24gb", "80gb"]
    tags = pick_tags(picks)
    assert tags["pick_any"] == "big" and tags["pick_16gb"] == "big-int8" and tags["pick_80gb"] == "big"
    assert tags["pick_any_ties"] == "big-int8, slow"
    assert int(tags["pick_any_more_images_to_separate_top_two"]) > 0
    sections = recommendation_sections(picks)
    titles = ["No constraint", *(f"Fits {s} GB of GPU memory" for s in (16, 24, 80))]
    assert [t for t, _ in sections] == titles
    assert sections[1][1][1].startswith("choice: big-int8")
    assert sections[3][1] == ["every cell fits: the same choice as with no constraint (big)"]


def _rows_memory(results, comparisons):
    rows, memory = candidates(results)
    return rows, comparisons, memory


def test_without_per_image_scores_ties_are_not_judged(sweep):
    results, _ = sweep
    answer = recommend(results, Comparisons({}), [])
    assert answer.best["label"] == "big" and not answer.judged and answer.ties == []
    assert "ties: not judged" in "\n".join(format_pick(answer))


def test_cli_refuses_a_folder_without_results(tmp_path, capsys):
    from sweep.pick import main

    assert main([str(tmp_path)]) == 2
    assert "no results.csv" in capsys.readouterr().err
