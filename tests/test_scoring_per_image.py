"""Per-image quality and CIDEr's document frequencies from the whole reference set (issue 15, items 1-2).

The slow tests run on the full COCO val2017 references (5,000 images, 25,014 captions), human
leave-one-out: per image the first reference is the prediction and the other four its references.
`pytest -s` prints the measured numbers and the scoring time of one 5,000-image cell, before (what
`CaptionScorer.score` ran until now: pycocoevalcap's corpus scorers) and after (`score_images`).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import grid_dict
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.grid.cells import expand_cells
from sweep.grid.config import GridError, parse_grid
from sweep.quality import scoring
from sweep.quality.scoring import (
    BLEU_COLUMNS,
    PER_IMAGE_COLUMNS,
    CaptionScorer,
    CellScores,
    DocumentFrequencies,
    bleu_statistics,
    cider_d,
    corpus_scores,
    leave_one_out,
    reference_set_frequencies,
)
from sweep.quality.scoring import references as references_module
from sweep.results import cell_scoring as recorder_module  # where the recorder's scoring lives
from sweep.results.recorder import SweepRecorder
from sweep.results.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"

# The figures of issue 15, measured there with the project's corpus scorer (pycocoevalcap) over all 5,000
# val2017 images, leave-one-out.
FULL_SET = {"cider": 0.887, "bleu_4": 0.196, "meteor": 0.242, "rouge_l": 0.472}


def _table(hyps: list[str], refs: list[list[str]], df: DocumentFrequencies | None = None) -> pd.DataFrame:
    """Per-image columns from the pure functions (METEOR and ROUGE-L are placeholders here)."""
    rows = [bleu_statistics(h, r) for h, r in zip(hyps, refs, strict=True)]
    table = pd.DataFrame(rows, columns=list(BLEU_COLUMNS))
    table["cider"] = cider_d(hyps, refs, df)
    table["meteor"] = 0.5
    table["rouge_l"] = 0.25
    return table


# Tokenized captions with the cases that matter: repeated n-grams (clipping), an empty and a one-word
# hypothesis (CIDEr's length is counted in bigrams), references of different lengths ("closest" length
# with a tie), a hypothesis shorter than every reference (brevity penalty), no overlap at all.
HYPS = ["a dog on a couch a dog", "", "cat", "a red bus on the street", "two birds sit on a wire",
        "the the the the", "a plate of food on a wooden table", "zebra"]
REFS = [["a dog lies on a red couch", "a brown dog on a sofa"], ["a man riding a horse", "a horse"],
        ["a cat sitting on a mat", "cat on mat"], ["a red bus drives down the street", "a bus"],
        ["two birds on a wire", "birds perched on a power line", "two small birds"],
        ["the cat is on the mat"], ["a plate with food on a table", "food on a plate", "a wooden table"],
        ["a giraffe eating leaves", "a tall giraffe"]]


def test_cider_d_per_image_equals_pycocoevalcap():
    gts = {i: refs for i, refs in enumerate(REFS)}
    res = {i: [h] for i, h in enumerate(HYPS)}
    corpus, per_image = Cider().compute_score(gts, res)
    ours = cider_d(HYPS, REFS)  # document frequencies from these references, as pycocoevalcap
    np.testing.assert_allclose(ours, per_image, rtol=0, atol=1e-12)
    assert float(np.mean(ours)) == pytest.approx(corpus, abs=1e-12)
    # given document frequencies: the same corpus as the default gives the same numbers
    df = DocumentFrequencies.from_tokenized(REFS)
    assert (df.n_images, df.n_references) == (len(REFS), sum(map(len, REFS)))
    np.testing.assert_allclose(cider_d(HYPS, REFS, df), per_image, rtol=0, atol=1e-12)
    # a larger corpus changes the idf, not what is being compared
    bigger = DocumentFrequencies.from_tokenized([*REFS, ["a dog on a mat"], ["a red car"]])
    assert cider_d(HYPS, REFS, bigger) != pytest.approx(ours)


def test_corpus_bleu_from_statistics_equals_pycocoevalcap_for_any_subset():
    gts = {i: refs for i, refs in enumerate(REFS)}
    res = {i: [h] for i, h in enumerate(HYPS)}
    table = _table(HYPS, REFS)
    for rows in (range(len(HYPS)), [0, 3, 4], [1], [2, 7], [5, 6]):
        rows = list(rows)
        expected, _ = Bleu(4).compute_score({i: gts[i] for i in rows}, {i: res[i] for i in rows}, verbose=0)
        got = corpus_scores(table.iloc[rows])
        assert [got[f"bleu_{k}"] for k in range(1, 5)] == expected, rows  # exactly: the same arithmetic
    stats = bleu_statistics("a b c", ["a b", "a b c d"])  # |3-2| == |3-4|: pycocoevalcap takes the shorter
    assert stats["bleu_reflen"] == 2 and stats["bleu_testlen"] == 3 and stats["bleu_guess_3"] == 1


def test_corpus_scores_means_skip_unscored_rows_and_need_the_columns():
    table = _table(HYPS, REFS)
    table["meteor"] = np.linspace(0.1, 0.8, len(table))
    table["rouge_l"] = np.linspace(0.2, 0.9, len(table))
    out = corpus_scores(table)
    assert list(out) == list(scoring.METRIC_KEYS) and all(type(v) is float for v in out.values())
    assert out["cider"] == pytest.approx(table["cider"].mean())
    assert out["meteor"] == pytest.approx(table["meteor"].mean())
    assert out["rouge_l"] == pytest.approx(table["rouge_l"].mean())
    with_gaps = pd.concat([table, pd.DataFrame([{c: math.nan for c in PER_IMAGE_COLUMNS}] * 3)],
                          ignore_index=True)
    assert corpus_scores(with_gaps) == out  # NaN rows (errors, samples without references) are left out
    assert all(math.isnan(v) for v in corpus_scores(with_gaps.iloc[len(table):]).values())
    with pytest.raises(KeyError, match="bleu_testlen"):
        corpus_scores(table.drop(columns=["bleu_testlen"]))


def _coco_file(path: Path, captions: dict[int, list[str]]) -> Path:
    anns = [{"id": 10 * image_id + j, "image_id": image_id, "caption": c}
            for image_id, caps in captions.items() for j, c in enumerate(caps)]
    path.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg"} for i in captions],
                                "annotations": anns}))
    return path


def test_reference_set_frequencies_cached_by_content(tmp_path, monkeypatch):
    calls = []

    def fake_tokenize(captions):
        calls.append(sum(len(v) for v in captions.values()))
        return {k: [" ".join(c.lower().replace(".", " ").split()) for c in v] for k, v in captions.items()}

    monkeypatch.setattr(references_module, "tokenize", fake_tokenize)
    captions = _coco_file(tmp_path / "caps.json",
                          {1: ["A dog.", "a dog on grass"], 2: ["A cat"], 3: ["a dog"]})
    cache = tmp_path / "df-cache"
    df = reference_set_frequencies(captions, cache)
    assert calls == [4] and (df.n_images, df.n_references) == (3, 4)
    assert df.counts["a dog"] == 2 and df.counts["a"] == 3 and df.counts["dog on grass"] == 1
    assert df.key == scoring.file_sha256(captions) and len(list(cache.iterdir())) == 1
    again = reference_set_frequencies(captions, cache)  # read from the cache, not tokenized again
    assert calls == [4] and again == df
    _coco_file(captions, {1: ["a dog"], 2: ["a cat"]})  # other content: other key, recomputed
    assert reference_set_frequencies(captions, cache).n_images == 2 and calls == [4, 2]
    for path in cache.iterdir():
        path.write_bytes(b"not gzip")  # a damaged cache is recomputed, not trusted
    assert reference_set_frequencies(captions, cache).n_images == 2 and calls == [4, 2, 2]
    assert reference_set_frequencies(captions, cache).n_images == 2 and calls == [4, 2, 2]


def test_document_frequency_setting_is_validated(coco_mini, tmp_path):
    grid = parse_grid(grid_dict(coco_mini, tmp_path))
    assert grid.scoring.document_frequencies == "reference_set"
    grid = parse_grid(grid_dict(coco_mini, tmp_path, scoring={"document_frequencies": "scored_subset"}))
    assert grid.scoring.document_frequencies == "scored_subset"
    with pytest.raises(GridError) as info:
        parse_grid(grid_dict(coco_mini, tmp_path, scoring={"document_frequencies": "corpus", "idf": 1}))
    problems = dict(info.value.problems)
    assert "'reference_set'" in problems["scoring.document_frequencies"]
    assert "'scored_subset'" in problems["scoring.document_frequencies"]
    assert problems["scoring.idf"] == "unknown field"


# ---- the recorder: per-image columns in captions.parquet, the setting logged, scores.json read back ----

class FakeScorer:
    """score_images from the pure functions on whitespace tokens (no JVM); fails when told to."""

    def __init__(self):
        self.calls: list[DocumentFrequencies | None] = []
        self.notes: list[str] = []
        self.refuse = False

    def score_images(self, predictions, references, document_frequencies=None):
        assert not self.refuse, "scored again although scores.json holds this cell's scores"
        self.calls.append(document_frequencies)
        ids = list(predictions)
        table = _table([predictions[i].lower() for i in ids],
                       [[r.lower() for r in references[i]] for i in ids], document_frequencies)
        table.index = pd.Index(ids, dtype=object)
        return CellScores(table, corpus_scores(table), "fake")


class FakeTracker:
    def __init__(self):
        self.params: dict[str, dict] = {}

    def log_cell(self, cell_id, label, params, metrics, artifacts, failed_reason=None, span=None):
        self.params[cell_id] = params
        return f"run-{cell_id}"

    def find_cell_run(self, cell_id):
        return f"run-{cell_id}" if cell_id in self.params else None


def _shapes_cell(tmp_path: Path, limit: int = 8):
    dataset = {"captions": str(SHAPES / "captions.json"), "images": str(SHAPES / "images"), "limit": limit,
               "image_max_side": 64}
    grid = parse_grid({"name": "per-image", "output_dir": str(tmp_path / "out"), "dataset": dataset,
                       "models": [{"id": "m", "loader": "fault_models:counting"}]})
    samples = load_coco_samples(grid.dataset)
    cell = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))[0]
    store = ResultStore(grid.output_dir)
    captions = [s.references[1] for s in samples]
    table = pd.DataFrame({"sample_id": [s.sample_id for s in samples], "caption": captions,
                          "error": [""] * (len(samples) - 1) + ["decode failed"],
                          "peak_memory_kind": "rss", "batch_end_ts": 100.0})
    store.begin_cell(cell)
    store.finish_cell(cell.cell_id, table, {"latency_p50_s": 0.1})
    return grid, samples, cell, store


def test_recorder_stores_per_image_columns_logs_the_setting_and_reads_scores_back(tmp_path, monkeypatch):
    grid, samples, cell, store = _shapes_cell(tmp_path)
    df = DocumentFrequencies.from_tokenized([[r.lower() for r in s.references] for s in samples], "fake", "k")
    frequencies = []
    monkeypatch.setattr(recorder_module, "reference_set_frequencies",
                        lambda path, cache, **_: frequencies.append((path, cache)) or df)

    def recorder(scorer, tracker, **kw):
        return SweepRecorder([cell], samples, store, scorer, tracker, **kw)

    scorer, tracker = FakeScorer(), FakeTracker()
    rec = recorder(scorer, tracker, document_frequencies=grid.scoring.document_frequencies,
                   reference_captions=grid.dataset.captions)
    outcome = rec.record(cell.cell_id, {"latency_p50_s": 0.1})
    assert frequencies == [(grid.dataset.captions, store.root / "df-cache")] and scorer.calls == [df]
    assert tracker.params[cell.cell_id]["cider_document_frequencies"] == "reference_set"
    assert outcome.row()["cider_document_frequencies"] == "reference_set"
    assert any("whole reference set" in note for note in rec.notes)

    table = store.read_captions(cell.cell_id)
    assert set(PER_IMAGE_COLUMNS) <= set(table.columns)
    assert table[list(PER_IMAGE_COLUMNS)].iloc[-1].isna().all()  # the error row is not scored
    assert table[list(PER_IMAGE_COLUMNS)].iloc[:-1].notna().all().all()
    assert table["cider"].mean() == pytest.approx(outcome.metrics["cider"], abs=1e-12)
    assert corpus_scores(table)["bleu_4"] == outcome.metrics["bleu_4"]
    assert outcome.metrics["n_scored"] == len(samples) - 1
    assert store.read_scores(cell.cell_id) is not None  # written after the table: still valid

    # a re-run of the finished grid reads the scores back: nothing scored, no document frequencies
    scorer.refuse = True
    again = recorder(scorer, FakeTracker(), document_frequencies="reference_set",
                     reference_captions=grid.dataset.captions).record(cell.cell_id, {}, from_store=True)
    assert len(frequencies) == 1 and again.reused
    assert {k: again.metrics[k] for k in scoring.METRIC_KEYS} == {k: outcome.metrics[k]
                                                                   for k in scoring.METRIC_KEYS}

    # another setting is another scoring: the stored scores are not taken for it
    scorer.refuse = False
    classic_tracker = FakeTracker()
    classic = recorder(scorer, classic_tracker, document_frequencies="scored_subset",
                       reference_captions=grid.dataset.captions).record(cell.cell_id, {}, from_store=True)
    assert scorer.calls == [df, None] and len(frequencies) == 1
    assert classic.row()["cider_document_frequencies"] == "scored_subset"
    assert classic_tracker.params[cell.cell_id]["cider_document_frequencies"] == "scored_subset"
    assert store.read_captions(cell.cell_id)["cider"].mean() == pytest.approx(classic.metrics["cider"])

    # no captions file (video): scored_subset, and the run says so
    video = recorder(FakeScorer(), FakeTracker(), document_frequencies="reference_set")
    assert video.df_mode == "scored_subset" and any("no captions file" in n for n in video.notes)
    with pytest.raises(ValueError, match="document_frequencies"):
        recorder(FakeScorer(), None, document_frequencies="corpus")


def test_scores_of_a_table_without_per_image_columns_are_recomputed(tmp_path, monkeypatch):
    # a cell scored before per-image columns existed: its scores.json is newer than the table but the
    # table lacks the columns, so it is scored again and the columns are written
    grid, samples, cell, store = _shapes_cell(tmp_path)
    store.write_scores(cell.cell_id, {"cider": 1.0})
    monkeypatch.setattr(recorder_module, "reference_set_frequencies", lambda path, cache, **_: None)
    scorer = FakeScorer()
    rec = SweepRecorder([cell], samples, store, scorer, None, document_frequencies="scored_subset")
    outcome = rec.record(cell.cell_id, {}, from_store=True)
    assert scorer.calls == [None] and outcome.metrics["cider"] != 1.0
    assert "cider" in store.read_captions(cell.cell_id)


def test_a_cell_with_nothing_to_score_gets_nan_columns(tmp_path):
    grid, samples, cell, store = _shapes_cell(tmp_path)
    scorer = FakeScorer()
    scorer.refuse = True  # nothing may reach the scorer
    rec = SweepRecorder([cell], samples, store, scorer, None)  # no captions file: scored_subset
    table = pd.DataFrame({"sample_id": ["scene-0", "scene-1"], "caption": ["a bike", ""],
                          "error": ["", "unreadable video"]})  # no references for these samples
    scored, scores = rec.score(table)
    assert scored[list(PER_IMAGE_COLUMNS)].isna().all().all() and len(scored) == 2
    assert all(math.isnan(scores[k]) for k in scoring.METRIC_KEYS)


@pytest.mark.slow
def test_recorder_with_the_real_scorer_and_reference_set(tmp_path):
    grid, samples, cell, store = _shapes_cell(tmp_path, limit=20)
    with CaptionScorer(spice=False) as scorer:
        rec = SweepRecorder([cell], samples, store, scorer, None,
                            document_frequencies="reference_set", reference_captions=grid.dataset.captions)
        outcome = rec.record(cell.cell_id, {})
    table = store.read_captions(cell.cell_id)
    assert table["cider"].mean() == pytest.approx(outcome.metrics["cider"], abs=1e-12)
    assert corpus_scores(table) == pytest.approx({k: outcome.metrics[k] for k in scoring.METRIC_KEYS})
    cache = list((store.root / "df-cache").iterdir())
    df = DocumentFrequencies.from_bytes(cache[0].read_bytes())
    assert len(cache) == 1 and df.n_images == 50  # the whole test split, not the 20 scored images


# ---- the full val2017 references, leave-one-out ----

@pytest.fixture(scope="module")
def val2017(coco_val2017_captions: Path):
    """Leave-one-out on all 5,000 images: raw predictions/references, tokenized once, and the
    document frequencies of the leave-one-out references (this evaluation's whole reference set)."""
    refs = scoring.coco_references(json.loads(coco_val2017_captions.read_text()))
    predictions, references = leave_one_out(refs)
    tok = scoring.tokenize({**{("res", k): [v] for k, v in predictions.items()},
                            **{("gts", k): v for k, v in references.items()}})
    ids = sorted(predictions)
    res = {i: tok[("res", i)] for i in ids}
    gts = {i: tok[("gts", i)] for i in ids}
    df = DocumentFrequencies.from_tokenized([gts[i] for i in ids], source="val2017 leave-one-out references")
    values = cider_d([res[i][0] for i in ids], [gts[i] for i in ids], df)
    per_image_cider = dict(zip(ids, values, strict=True))
    return {"ids": ids, "predictions": predictions, "references": references, "res": res, "gts": gts,
            "df": df, "cider": per_image_cider}


@pytest.fixture(scope="module")
def scorer():
    with CaptionScorer(spice=False) as s:
        s.score({1: "a dog"}, {1: ["a dog", "a brown dog"]})  # start METEOR's JVM outside the timings
        yield s


@pytest.fixture(scope="module")
def full_scores(val2017, scorer) -> dict:
    """One 5,000-image cell scored by score_images with whole-set document frequencies, and, timed right
    before it on the same warm JVM, the corpus scores as CaptionScorer.score computed them until now."""
    start = time.perf_counter()
    classic = scorer.pycocoevalcap_scores(val2017["predictions"], val2017["references"])
    before = time.perf_counter() - start
    start = time.perf_counter()
    result = scorer.score_images(val2017["predictions"], val2017["references"], val2017["df"])
    after = time.perf_counter() - start
    return {"result": result, "classic": classic, "before_s": before, "after_s": after}


@pytest.mark.slow
def test_whole_set_cider_equals_pycocoevalcap_at_full_val2017(val2017):
    ids, res, gts = val2017["ids"], val2017["res"], val2017["gts"]
    corpus, per_image = Cider().compute_score(gts, res)  # its document frequencies: these same references
    ours = np.array([val2017["cider"][i] for i in ids])
    print(f"\nCIDEr-D at 5,000 images: ours {ours.mean():.12f}, pycocoevalcap {corpus:.12f}, "
          f"max per-image difference {np.abs(ours - per_image).max():.2e}")
    assert abs(ours.mean() - corpus) < 1e-9
    assert np.abs(ours - per_image).max() < 1e-9
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    table = _table([res[i][0] for i in ids], [gts[i] for i in ids], val2017["df"])
    got = corpus_scores(table)
    assert max(abs(got[f"bleu_{k}"] - bleu[k - 1]) for k in range(1, 5)) < 1e-9


@pytest.mark.slow
def test_reference_set_of_the_val2017_file_is_every_reference_tokenized_once(coco_val2017_captions, tmp_path):
    start = time.perf_counter()
    df = reference_set_frequencies(coco_val2017_captions, tmp_path)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = reference_set_frequencies(coco_val2017_captions, tmp_path)
    cached = time.perf_counter() - start
    size = sum(p.stat().st_size for p in tmp_path.iterdir()) / 1e6
    print(f"\nreference set of val2017: {df.describe()}: {first:.1f} s to tokenize, {cached:.2f} s from the "
          f"cache ({size:.1f} MB)")
    assert (df.n_images, df.n_references) == (5000, 25014) and again == df


@pytest.mark.slow
def test_human_leave_one_out_full_set_figures_and_scoring_time(val2017, full_scores):
    result, classic = full_scores["result"], full_scores["classic"]
    before, after = full_scores["before_s"], full_scores["after_s"]
    ids = list(val2017["predictions"])
    out = result.corpus
    print("\nhuman leave-one-out, 5,000 val2017 images (per-image scores, whole-set document frequencies):")
    for key in scoring.METRIC_KEYS:
        print(f"  {key:8s} {out[key]:.4f}   pycocoevalcap corpus {classic[key]:.4f}")
    print(f"scoring time of one 5,000-image cell: before (corpus scores) {before:.1f} s, "
          f"after (per-image + corpus) {after:.1f} s")

    assert len(result.per_image) == 5000 and result.per_image.notna().all().all()
    assert list(result.per_image.index) == ids
    assert abs(out["cider"] - FULL_SET["cider"]) <= 0.01  # the figure
    assert abs(out["cider"] - classic["cider"]) < 1e-9  # at the full set both document frequencies agree
    for k in range(1, 5):
        assert abs(out[f"bleu_{k}"] - classic[f"bleu_{k}"]) < 1e-9
    assert abs(out["rouge_l"] - classic["rouge_l"]) < 1e-9
    # BLEU-4, ROUGE-L and pycocoevalcap's corpus METEOR are deterministic functions of the data and the
    # tokenizer: the issue gives them to 3 decimals, so they agree to its rounding (0.0005) plus margin.
    assert abs(out["bleu_4"] - FULL_SET["bleu_4"]) <= 0.001
    assert abs(out["rouge_l"] - FULL_SET["rouge_l"]) <= 0.001
    assert abs(classic["meteor"] - FULL_SET["meteor"]) <= 0.001
    # The cell's METEOR is the mean of per-image METEOR, not pycocoevalcap's corpus METEOR (which pools
    # the matching statistics before its fragmentation penalty). Measured here: 0.2478 against 0.2421
    # (+0.006, see the printout); 0.01 bounds that, and a misaligned or broken segment score would move
    # the mean far more (shuffled captions score ~0.08).
    assert abs(out["meteor"] - FULL_SET["meteor"]) <= 0.01
    assert out["meteor"] == pytest.approx(result.per_image["meteor"].mean(), abs=1e-12)


def _bootstrap_mean(values: np.ndarray, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.slow
def test_subset_with_whole_set_frequencies_is_unbiased_and_classic_reads_high(val2017, coco_mini):
    ids, res, gts = val2017["ids"], val2017["res"], val2017["gts"]
    full = float(np.mean([val2017["cider"][i] for i in ids]))
    print(f"\nCIDEr-D, human leave-one-out: all 5,000 images {full:.3f}")
    for seed in range(5):  # printed for the README; seed 0 is asserted
        subset = random.Random(seed).sample(ids, 80)
        values = np.array([val2017["cider"][i] for i in subset])  # whole-set document frequencies
        low, high = _bootstrap_mean(values)
        classic = float(np.mean(cider_d([res[i][0] for i in subset], [gts[i] for i in subset])))
        print(f"  80 images, seed {seed}: whole-set DF {values.mean():.3f} (95% bootstrap [{low:.3f}, "
              f"{high:.3f}]), scored-subset DF {classic:.3f} ({classic / values.mean() - 1:+.0%} on the "
              f"same images, {classic / full - 1:+.0%} on the full set)")
        if seed == 0:
            assert low <= full <= high
            # the classic document frequencies inflate the same captions: +9% to +18% over 30 seeds
            assert classic > 1.05 * values.mean() and classic > full
    mini = sorted(scoring.coco_references(json.loads((coco_mini / "captions_val2017.json").read_text())))
    classic = float(np.mean(cider_d([res[i][0] for i in mini], [gts[i] for i in mini])))
    whole = float(np.mean([val2017["cider"][i] for i in mini]))
    print(f"  coco-mini's {len(mini)} images: scored-subset DF {classic:.3f}, val2017 DF {whole:.3f}")
    assert classic > whole


@pytest.mark.slow
def test_corpus_scores_of_a_random_half_equal_a_fresh_score_of_it(val2017, scorer, full_scores):
    result = full_scores["result"]
    half = sorted(random.Random(1).sample(val2017["ids"], 2500))
    from_columns = corpus_scores(result.per_image.loc[half])
    fresh = scorer.score_images({i: val2017["predictions"][i] for i in half},
                                {i: val2017["references"][i] for i in half}, val2017["df"])
    res, gts = val2017["res"], val2017["gts"]
    bleu, _ = Bleu(4).compute_score({i: gts[i] for i in half}, {i: res[i] for i in half}, verbose=0)
    for k in range(1, 5):
        assert from_columns[f"bleu_{k}"] == fresh.corpus[f"bleu_{k}"] == bleu[k - 1]
    cider = np.mean(cider_d([res[i][0] for i in half], [gts[i] for i in half], val2017["df"]))
    for key in ("cider", "meteor", "rouge_l"):
        assert from_columns[key] == pytest.approx(fresh.corpus[key], abs=1e-12), key
    assert from_columns["cider"] == pytest.approx(cider, abs=1e-12)
    own = np.mean(cider_d([res[i][0] for i in half], [gts[i] for i in half]))  # the half's own DF
    assert abs(from_columns["cider"] - own) > 1e-4
