"""Caption metrics: the human-reference sanity check on coco-mini plus edge cases."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

from sweep.quality import scoring
from sweep.quality.scoring import CaptionScorer, leave_one_out, mean_caption_length, spice_available
from sweep.quality.scoring import spice as spice_module


@pytest.fixture(scope="module")
def scorer():
    # One scorer for the module: METEOR's JVM takes ~8 s to start.
    with CaptionScorer() as s:
        yield s


@pytest.fixture(scope="module")
def coco_refs(coco_mini: Path) -> dict[int, list[str]]:
    data = json.loads((coco_mini / "captions_val2017.json").read_text())
    refs: dict[int, list[str]] = defaultdict(list)
    for ann in sorted(data["annotations"], key=lambda a: a["id"]):
        refs[ann["image_id"]].append(ann["caption"])
    return dict(refs)


@pytest.mark.slow  # METEOR's JVM
def test_leave_one_out_beats_shuffled_on_coco_mini(scorer, coco_refs):
    preds, refs = leave_one_out(coco_refs)
    ids = sorted(preds)
    # Deterministic shuffle: each image gets the held-out caption of the previous image (roll by 1).
    shuffled = {ids[i]: preds[ids[i - 1]] for i in range(len(ids))}

    loo = scorer.score(preds, refs)
    shuf = scorer.score(shuffled, refs)
    print(f"\n{len(ids)} images, leave-one-out vs shuffled:")
    for key in scoring.METRIC_KEYS:
        print(f"  {key:8s} loo={loo[key]:.4f} shuffled={shuf[key]:.4f}")
    print("  notes:", scorer.notes)

    for result in (loo, shuf):
        assert set(scoring.METRIC_KEYS) <= set(result)
        assert all(math.isfinite(v) for v in result.values())
    assert loo["cider"] > 3 * shuf["cider"]
    assert loo["cider"] > 0.5  # human captions of COCO score around 1 CIDEr leave-one-out
    for key in ("bleu_4", "meteor", "rouge_l"):
        assert loo[key] > shuf[key], key


@pytest.mark.slow  # METEOR's JVM
def test_result_keys_and_types(scorer):
    out = scorer.score({"a": "a dog on a red couch"}, {"a": ["a dog lies on a red couch", "a brown dog"]})
    expected = list(scoring.METRIC_KEYS) + (["spice"] if spice_available() else [])
    assert list(out) == expected
    assert all(type(v) is float for v in out.values())


@pytest.mark.slow  # METEOR's JVM
def test_empty_and_punctuation_only_captions_do_not_crash(scorer):
    preds = {1: "", 2: "...", 3: "a cat sitting on a mat"}
    refs = {1: ["a dog running", ""], 2: ["a bus on a street"], 3: ["a cat sits on a mat"]}
    out = scorer.score(preds, refs)
    assert all(math.isfinite(v) for v in out.values())
    assert 0.0 < out["meteor"] < 1.0  # only image 3 can contribute
    assert any("2 of 3 predictions empty" in note for note in scorer.notes)
    assert scorer.call_notes == ["2 of 3 predictions empty after tokenization (scored 0)"]  # about this call
    # The scorer (and its METEOR process) keeps working afterwards.
    again = scorer.score({3: "a cat sitting on a mat"}, refs)
    assert again["meteor"] > out["meteor"]


@pytest.mark.slow  # METEOR's JVM
def test_line_breaks_inside_captions_keep_ids_aligned(scorer):
    # A \u2028 or \r would split the tokenizer's line-per-caption stream and shift captions across ids.
    refs = {
        "x": ["a man\u2028riding a horse"],
        "y": ["two\rbirds on a wire"],
        "z": ["a plate of food on a table"],
    }
    preds = {"x": "a man riding a horse", "y": "two birds on a wire", "z": "a plate of\nfood on a table"}
    out = scorer.score(preds, refs)
    assert out["bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert out["rouge_l"] == pytest.approx(1.0)


@pytest.mark.slow  # METEOR's JVM
def test_mixed_id_types_and_only_predicted_ids_scored(scorer):
    refs = {1: ["a red bus"], "2": ["a green tree"], 3: ["this id has no prediction"]}
    out = scorer.score({1: "a red bus", "2": "a green tree"}, refs)
    assert out["rouge_l"] == pytest.approx(1.0)


@pytest.mark.slow  # METEOR's JVM
def test_missing_reference_id_raises(scorer):
    with pytest.raises(ValueError, match="'img-7'"):
        scorer.score({"img-7": "a dog"}, {"img-1": ["a dog"]})


def test_bad_inputs_raise():
    s = CaptionScorer()  # validation happens before any JVM starts
    with pytest.raises(ValueError, match="no predictions"):
        s.score({}, {1: ["a dog"]})
    with pytest.raises(ValueError, match="empty reference list"):
        s.score({1: "a dog"}, {1: []})
    with pytest.raises(TypeError):
        s.score({1: "a dog"}, {1: "a dog"})  # a bare string, not a list of references
    s.close()
    s.close()  # idempotent, and fine with no METEOR ever started


@pytest.mark.slow  # METEOR's JVM
def test_spice_skipped_with_note_when_jars_absent(scorer, tmp_path, monkeypatch):
    assert not spice_available(tmp_path)
    monkeypatch.setattr(spice_module, "SPICE_LIB_DIR", tmp_path)
    out = scorer.score({1: "a dog"}, {1: ["a dog", "a puppy"]})
    assert "spice" not in out
    assert any(n.startswith("SPICE skipped") and str(tmp_path) in n for n in scorer.notes)


def test_spice_available_only_checks_files(tmp_path):
    for jar in scoring.SPICE_JARS:
        (tmp_path / jar).write_bytes(b"")
    assert spice_available(tmp_path)  # java is on PATH wherever these tests run
    (tmp_path / scoring.SPICE_JARS[1]).unlink()
    assert not spice_available(tmp_path)


def test_leave_one_out_is_pure():
    refs = {5: ["first", "second", "third"], 6: ["alpha", "beta"]}
    preds, rest = leave_one_out(refs)
    assert preds == {5: "first", 6: "alpha"}
    assert rest == {5: ["second", "third"], 6: ["beta"]}
    assert refs == {5: ["first", "second", "third"], 6: ["alpha", "beta"]}
    with pytest.raises(ValueError, match="7"):
        leave_one_out({7: ["only one"]})


def test_mean_caption_length():
    assert mean_caption_length(["a dog", "a big red bus", ""]) == pytest.approx(2.0)
    assert mean_caption_length(iter(["one  two\tthree"])) == 3.0
    assert math.isnan(mean_caption_length([]))


@pytest.mark.slow  # METEOR's JVM
def test_scorers_of_one_process_share_one_meteor_jvm_and_a_dead_one_is_replaced():
    from sweep.quality.scoring import meteor

    def pid(s: CaptionScorer) -> int:
        return s._meteor._meteor.meteor_p.pid

    refs = {1: ["a dog on the grass", "a brown dog"]}
    with CaptionScorer(spice=False) as first:
        first.score({1: "a dog"}, refs)
        jvm = pid(first)
    with CaptionScorer(spice=False) as second:  # the closed scorer's JVM, not a second start
        assert second.score({1: "a dog"}, refs)["meteor"] > 0 and pid(second) == jvm
    meteor._idle[0].meteor_p.kill()  # the idle JVM dies: the next scorer starts a fresh one
    meteor._idle[0].meteor_p.wait()
    with CaptionScorer(spice=False) as third:
        assert third.score({1: "a dog"}, refs)["meteor"] > 0 and pid(third) != jvm
        idle = third._meteor._meteor.meteor_p
    meteor.stop_idle_meteor()
    assert idle.poll() is not None and not meteor._idle
