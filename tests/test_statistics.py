"""Bootstrap intervals over images, paired differences, BLEU from per-image statistics, degenerate output."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from sweep.quality import statistics as st


def synthetic_table(n: int, seed: int = 0, cider_shift: float = 0.0, base: np.ndarray | None = None,
                    noise: float = 0.3) -> pd.DataFrame:
    """A caption table with the per-image columns of a scored cell (values drawn, not scored)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 0.5, n) if base is None else base
    testlen = rng.integers(6, 14, n)
    table = pd.DataFrame({
        "sample_id": [f"img{i:05d}" for i in range(n)],
        "error": "",
        "caption": [f"caption {i}" for i in range(n)],
        "cider": base + cider_shift + rng.normal(0, noise, n),
        "meteor": rng.uniform(0.1, 0.4, n),
        "rouge_l": rng.uniform(0.3, 0.7, n),
        "batch_latency_sec": rng.lognormal(-2.0, 0.3, n),
        "processing_time_sec": rng.lognormal(-4.0, 0.3, n),
        "bleu_testlen": testlen.astype(float),
        "bleu_reflen": rng.integers(6, 14, n).astype(float),
    })
    for k in range(1, 5):
        guess = np.maximum(testlen - k + 1, 0)
        table[f"bleu_guess_{k}"] = guess.astype(float)
        table[f"bleu_correct_{k}"] = rng.binomial(guess, 0.6 / k).astype(float)
    return table


def direct_bleu(rows: pd.DataFrame, order: int = 4) -> float:
    """Corpus BLEU written out as pycocoevalcap's BleuScorer.compute_score does it, one number at a time."""
    testlen, reflen = float(rows["bleu_testlen"].sum()), float(rows["bleu_reflen"].sum())
    bleu = 1.0
    for k in range(1, order + 1):
        correct, guess = float(rows[f"bleu_correct_{k}"].sum()), float(rows[f"bleu_guess_{k}"].sum())
        bleu *= (correct + 1e-15) / (guess + 1e-9)
    bleu **= 1.0 / order
    ratio = (testlen + 1e-15) / (reflen + 1e-9)
    return bleu * math.exp(1 - 1 / ratio) if ratio < 1 else bleu


def test_bleu_4_from_statistics_matches_a_direct_computation():
    table = synthetic_table(300, seed=3)
    assert st.point_value(table, "bleu_4") == pytest.approx(direct_bleu(table), rel=1e-12)
    short = table.assign(bleu_reflen=table["bleu_testlen"] + 3)  # brevity penalty applies
    assert st.point_value(short, "bleu_4") == pytest.approx(direct_bleu(short), rel=1e-12)
    assert direct_bleu(short) < direct_bleu(table)
    # each resample's BLEU is the corpus BLEU of the images it drew
    idx = np.random.default_rng(st.SEED).integers(0, len(table), size=(st.N_RESAMPLES, len(table)))
    draws = st.resampled(st.resample_counts(len(table)), table, "bleu_4")
    for r in range(3):
        assert draws[r] == pytest.approx(direct_bleu(table.iloc[idx[r]]), rel=1e-12)


def test_bleu_4_from_statistics_matches_pycocoevalcap_on_real_sentences():
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    hyps = ["a red circle on the left", "two shapes : a blue square and a green triangle",
            "a small circle", "a large purple box near the bottom of the image"]
    refs = [["a red circle at the left", "one red circle on the left side"],
            ["two shapes : a blue box and a green triangle", "a blue square and a green triangle"],
            ["a little yellow circle in the middle", "a small yellow circle"],
            ["a huge purple box near the bottom", "a large purple square at the bottom"]]
    scorer = BleuScorer(n=4)
    for hyp, ref in zip(hyps, refs, strict=True):
        scorer += (hyp, ref)
    corpus, _ = scorer.compute_score(option="closest")
    rows = []
    for comps in scorer.ctest:
        reflen = min((abs(r - comps["testlen"]), r) for r in comps["reflen"])[1]  # "closest"
        row = {"bleu_testlen": comps["testlen"], "bleu_reflen": reflen}
        row.update({f"bleu_guess_{k + 1}": comps["guess"][k] for k in range(4)})
        row.update({f"bleu_correct_{k + 1}": comps["correct"][k] for k in range(4)})
        rows.append(row)
    stats = pd.DataFrame(rows, dtype=float)
    sums = stats[list(st.BLEU_COLUMNS)].sum().to_numpy()
    for order in range(1, 5):
        value = st.corpus_bleu(sums[0], sums[1], sums[2:6], sums[6:10], order=order)
        assert float(value) == pytest.approx(corpus[order - 1], rel=1e-12)


def test_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    # per-image CIDEr ~ Gamma(2, 0.5): true mean 1.0; per-image seconds ~ Gamma(2, 0.01): true mean 0.02
    trials, n, hits, hits_cost = 200, 120, 0, 0
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        cider, seconds = rng.gamma(2.0, 0.5, n), rng.gamma(2.0, 0.01, n)
        table = pd.DataFrame({"sample_id": [str(i) for i in range(n)], "error": "", "cider": cider,
                              "processing_time_sec": seconds})
        ci = st.cell_intervals(table, seed=trial, metrics=("cider", "seconds_per_image"))
        hits += ci["cider_ci_low"] <= 1.0 <= ci["cider_ci_high"]
        hits_cost += ci["seconds_per_image_ci_low"] <= 0.02 <= ci["seconds_per_image_ci_high"]
    print(f"\ncoverage of nominal 95% intervals over {trials} data sets of {n} images: "
          f"CIDEr {hits / trials:.1%}, seconds per image {hits_cost / trials:.1%}")
    # a percentile bootstrap of a skewed mean undercovers a little at this n; 0.88-0.99 is "about 95%"
    assert 0.88 <= hits / trials <= 0.99
    assert 0.88 <= hits_cost / trials <= 0.99


def test_seeded_bootstrap_is_reproducible_and_independent_of_row_order():
    table = synthetic_table(200, seed=1)
    first = st.cell_intervals(table, seed=7)
    assert st.cell_intervals(table, seed=7) == first
    assert st.cell_intervals(table.sample(frac=1.0, random_state=3), seed=7) == first
    assert st.cell_intervals(table, seed=8) != first
    assert set(first) == {c for m in st.CI_METRICS for c in st.ci_columns(m)}
    for metric in st.CI_METRICS:
        low, high = (first[c] for c in st.ci_columns(metric))
        assert low < st.point_value(table, metric) < high, metric


def test_latency_p50_interval_is_the_median_of_each_resample():
    table = synthetic_table(101, seed=2)
    latency = table["batch_latency_sec"].to_numpy()
    assert st.point_value(table, "latency_p50_s") == np.percentile(latency, 50)
    idx = np.random.default_rng(st.SEED).integers(0, len(table), size=(st.N_RESAMPLES, len(table)))
    draws = st.resampled(st.resample_counts(len(table)), table, "latency_p50_s")
    assert np.allclose(draws, np.percentile(latency[idx], 50, axis=1), rtol=0, atol=1e-15)


def test_error_rows_and_unscored_rows_are_left_out_of_the_values():
    table = synthetic_table(60, seed=4)
    table.loc[:9, "error"] = "decode failed"
    table.loc[:9, ["cider", "batch_latency_sec", "processing_time_sec"]] = np.nan
    table.loc[10:14, "batch_latency_sec"] = 99.0  # an error row's timing would be ignored too
    table.loc[10:14, "error"] = "timeout"
    table.loc[10:14, "cider"] = np.nan
    assert st.point_value(table, "cider") == pytest.approx(table["cider"].iloc[15:].mean())
    assert st.point_value(table, "latency_p50_s") == np.median(table["batch_latency_sec"].iloc[15:])
    ci = st.cell_intervals(table)
    assert ci["latency_p50_s_ci_high"] < 99.0
    assert math.isnan(st.cell_intervals(table.drop(columns=["meteor"]))["meteor_ci_low"])  # no column: NaN


def test_paired_difference_of_a_cell_with_itself_is_exactly_zero():
    table = synthetic_table(500, seed=5)
    for metric in st.CI_METRICS:
        diff = st.paired_difference(table, table.sample(frac=1.0, random_state=1), metric)
        assert (diff.estimate, diff.low, diff.high, diff.n) == (0.0, 0.0, 0.0, 500), metric
        assert diff.tie


def test_paired_difference_is_narrower_than_the_cells_own_intervals_and_aligned_by_sample_id():
    n = 400
    base = np.random.default_rng(9).gamma(2.0, 0.5, n)  # image difficulty, shared by both cells
    a = synthetic_table(n, seed=10, base=base, cider_shift=0.1, noise=0.1)
    b = synthetic_table(n, seed=11, base=base, noise=0.1)
    diff = st.paired_difference(a, b)
    ci_a, ci_b = st.cell_intervals(a), st.cell_intervals(b)
    assert diff.low > 0 and not diff.tie  # 0.1 apart, separated by pairing
    assert ci_a["cider_ci_low"] < ci_b["cider_ci_high"]  # ... though the two intervals overlap
    assert diff.half_width < (ci_a["cider_ci_high"] - ci_a["cider_ci_low"]) / 2
    assert diff.estimate == pytest.approx(a["cider"].mean() - b["cider"].mean())
    # b's rows in another order and one image b failed on: aligned on the images both scored
    b_missing = b.iloc[::-1].copy()
    b_missing.loc[b_missing["sample_id"] == "img00003", ["cider", "error"]] = [np.nan, "oom"]
    partial = st.paired_difference(a, b_missing)
    assert partial.n == n - 1
    keep = a["sample_id"] != "img00003"
    assert partial.estimate == pytest.approx(a["cider"][keep].mean() - b["cider"][keep].mean())
    flipped = st.paired_difference(b, a)
    expected = (-diff.estimate, -diff.high, -diff.low)
    assert (flipped.estimate, flipped.low, flipped.high) == pytest.approx(expected)
    assert st.paired_difference(a, b.drop(columns=["cider"])) is None


def test_images_to_separate_follows_the_half_width():
    diff = st.Difference("cider", estimate=0.05, low=-0.05, high=0.15, n=100)
    assert diff.tie and diff.half_width == pytest.approx(0.1)
    assert diff.images_to_separate() == pytest.approx(400)  # half the width needs 4x the images
    assert math.isinf(st.Difference("cider", 0.0, -0.1, 0.1, 100).images_to_separate())
    assert not st.Difference("cider", 0.3, 0.1, 0.5, 100).tie


def test_comparisons_cache_and_flip():
    tables = {"a": synthetic_table(100, seed=1, cider_shift=0.5), "b": synthetic_table(100, seed=2)}
    comparisons = st.Comparisons(tables)
    ab, ba = comparisons.difference("a", "b"), comparisons.difference("b", "a")
    assert ab.low > 0 and (ba.estimate, ba.low, ba.high) == (-ab.estimate, -ab.high, -ab.low)
    assert comparisons.difference("a", "missing") is None and "a" in comparisons and "c" not in comparisons


def test_one_cell_of_5000_images_in_well_under_a_second():
    table = synthetic_table(5000, seed=6)
    st.cell_intervals(table.head(50))  # warm up imports and BLAS
    start = time.perf_counter()
    ci = st.cell_intervals(table)
    cell_s = time.perf_counter() - start
    start = time.perf_counter()
    st.paired_difference(table, synthetic_table(5000, seed=7))
    pair_s = time.perf_counter() - start
    tables = {f"c{k}": synthetic_table(5000, seed=20 + k) for k in range(18)}
    start = time.perf_counter()
    comparisons = st.Comparisons(tables)
    pairs = [comparisons.difference(a, b) for a in tables for b in tables if a < b]
    all_s = time.perf_counter() - start
    print(f"\nbootstrap at 5000 images x {st.N_RESAMPLES} resamples: one cell's {len(st.CI_METRICS)} "
          f"intervals {cell_s:.3f} s, one paired CIDEr difference {pair_s:.3f} s, "
          f"all {len(pairs)} pairs of 18 cells {all_s:.3f} s")
    assert all(math.isfinite(v) for v in ci.values()) and all(p is not None for p in pairs)
    assert cell_s < 5.0 and pair_s < 5.0  # the target is 1 s; a shared CI machine gets slack
    assert all_s < 20.0


def test_degenerate_output_flags_identical_captions_only():
    same = pd.DataFrame({"sample_id": [str(i) for i in range(20)], "error": "",
                         "caption": ["A red circle"] * 19 + ["a red  circle "]})
    assert st.degenerate_output(same) == 1.0  # case and spacing do not make a caption different
    varied = same.assign(caption=[f"a {c} circle" for c in ["red", "blue", "green", "pink", "gray"] * 4])
    assert st.degenerate_output(varied) == 0.0
    nine_of_ten = pd.DataFrame({"sample_id": list("abcdefghij"), "error": "",
                                "caption": ["x"] * 9 + ["y"]})
    assert st.degenerate_output(nine_of_ten) == 1.0
    assert st.degenerate_output(nine_of_ten.assign(caption=["x"] * 8 + ["y", "z"])) == 0.0
    assert st.degenerate_output(same.head(4)) == 0.0  # too few images to tell
    empty = same.assign(caption="")
    assert st.degenerate_output(empty) == 1.0  # empty captions for every image are degenerate too
    # error rows carry no caption: they neither make nor break the flag
    errors = varied.assign(caption=["a red circle"] * 6 + [""] * 14, error=[""] * 6 + ["decode failed"] * 14)
    assert st.degenerate_output(errors) == 1.0


def test_point_values_agree_with_the_scorers_corpus_scores():
    scoring = pytest.importorskip("sweep.quality.scoring")
    if not hasattr(scoring, "corpus_scores"):
        pytest.skip("sweep.quality.scoring.corpus_scores not there yet")
    table = synthetic_table(250, seed=8)
    table.loc[:4, ["cider", "meteor", "rouge_l", *st.BLEU_COLUMNS]] = np.nan  # not scored
    corpus = scoring.corpus_scores(table)
    for metric in ("cider", "meteor", "rouge_l", "bleu_4"):
        assert st.point_value(table, metric) == pytest.approx(corpus[metric], rel=1e-12), metric
