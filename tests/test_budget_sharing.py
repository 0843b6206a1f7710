"""Token-budget sharing (issue 16), driver side, without Ray or a model: which cells share a generation
(a decision table), the rows and costs a derived cell gets from a synthetic BatchResult, a group's trial
writing and finishing every cell of the group, the recorder recording (or failing) the derived cells with
the lead, and the dry-run's words."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from actors.contract import BatchResult, BudgetResult, CellStart, LoadReport, SampleResult
from sweep.execute.measure import SHARED_PEAK, cost_kinds, summarize_costs
from sweep.execute.pipeline import MissingBudget, batch_tables, caption_rows, derived_rows
from sweep.grid.cells import Cell
from sweep.grid.config import ModelSpec
from sweep.plan.budgets import ALONE, CUSTOM, OFF, plan_sharing
from sweep.results.batches import per_image
from sweep.results.store import ResultStore

ZOO_SMALL = str(Path(__file__).resolve().parents[1] / "zoo" / "shapes-llava-small")


def cell(tokens: int, **overrides) -> Cell:
    fields = dict(model=ModelSpec(id="tiny:llava"), precision="fp32", max_new_tokens=tokens,
                  prompt="Describe.", num_beams=1, do_sample=False, temperature=1.0, top_p=1.0,
                  min_new_tokens=None, repetition_penalty=1.0, backend="auto", batch_size=8,
                  gpus_per_actor=1.0, replicas=1, dataset_fingerprint="fp")
    fields.update(overrides)
    return Cell(**fields)


def budgets(*tokens: int, **overrides) -> list[Cell]:
    return [cell(t, **overrides) for t in tokens]


# (case, cells, share_token_budgets, expected per cell: "lead", "<- i" (derived from cell i), or words
# of the reason the cell generates itself)
TABLE = [
    ("greedy one beam: the largest budget leads", budgets(4, 8, 16), True, ["<- 2", "<- 2", "lead"]),
    ("order of the grid does not matter", budgets(16, 4, 8), True, ["lead", "<- 0", "<- 0"]),
    ("sharing turned off", budgets(4, 8), False, [OFF, OFF]),
    ("a single budget", budgets(8), True, [ALONE]),
    ("sampling", budgets(4, 8, do_sample=True), True, ["sampling", "sampling"]),
    ("beam search", budgets(4, 8, num_beams=3), True, ["beam search (num_beams 3)"] * 2),
    ("family default beams, family known from model.family (llava: 1)",
     budgets(4, 8, num_beams=None, model=ModelSpec(id="org/hub-model", family="llava")), True,
     ["<- 1", "lead"]),
    ("family default beams, family from tiny:<family> (instructblip: 5)",
     budgets(4, 8, num_beams=None, model=ModelSpec(id="tiny:instructblip")), True,
     ["instructblip family's default is num_beams 5"] * 2),
    ("family default beams, family from a local config.json (the zoo's llava)",
     budgets(4, 8, num_beams=None, model=ModelSpec(id=ZOO_SMALL)), True, ["<- 1", "lead"]),
    ("family default beams, family unknown on the driver",
     budgets(4, 8, num_beams=None, model=ModelSpec(id="org/not-here")), True, ["family unknown"] * 2),
    ("unknown family, but beams and minimum set: nothing left to the family",
     budgets(4, 8, model=ModelSpec(id="org/not-here"), min_new_tokens=0), True, ["<- 1", "lead"]),
    ("custom loader", budgets(4, 8, model=ModelSpec(id="m", loader="pkg.mod:build")), True, [CUSTOM] * 2),
    ("different precisions: one group each",
     [cell(4), cell(8), cell(4, precision="int8"), cell(8, precision="int8")], True,
     ["<- 1", "lead", "<- 3", "lead"]),
    ("different prompts", [cell(4), cell(8, prompt="Other.")], True, [ALONE, ALONE]),
    ("different repetition penalty", [cell(4), cell(8, repetition_penalty=1.2)], True, [ALONE, ALONE]),
    ("different backend", [cell(4), cell(8, backend="hf")], True, [ALONE, ALONE]),
    ("different batch size", [cell(4), cell(8, batch_size=4)], True, [ALONE, ALONE]),
    ("different placement", [cell(4), cell(8, replicas=2)], True, [ALONE, ALONE]),
    ("different model", [cell(4), cell(8, model=ModelSpec(id="tiny:qwen2_vl"))], True, [ALONE, ALONE]),
    # the grid's min_new_tokens 6 is capped at each budget: t4 has a minimum of its own
    ("min_new_tokens above the smallest budget",
     [cell(4, min_new_tokens=4), cell(8, min_new_tokens=6), cell(16, min_new_tokens=6)], True,
     ["min_new_tokens 4 differs", "<- 2", "lead"]),
    ("min_new_tokens at most the smallest budget",
     [cell(4, min_new_tokens=2), cell(8, min_new_tokens=2)], True, ["<- 1", "lead"]),
]


@pytest.mark.parametrize(("case", "cells", "enabled", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_sharing_table(case, cells, enabled, expected):
    sharing = plan_sharing(cells, enabled)
    ids = [c.cell_id for c in cells]
    for i, (c, want) in enumerate(zip(cells, expected, strict=True)):
        text = sharing.describe(c)
        if want == "lead":
            assert c.cell_id in sharing.groups, case
            assert text.startswith("generates itself: the largest budget"), text
        elif want.startswith("<- "):
            lead = cells[int(want[3:])]
            assert sharing.lead_of[c.cell_id] == lead.cell_id, (i, case)
            assert text == f"shares the generation of {lead.label}"
        else:
            assert c.cell_id not in sharing.lead_of and c.cell_id not in sharing.groups, (i, case)
            assert text.startswith("generates itself: ") and want in text, text
    trials = sharing.trial_cells(cells)
    assert [c.cell_id for c in trials] == [i for i in ids if i not in sharing.lead_of]
    for group in sharing.groups.values():  # the lead's generation answers every smaller budget
        assert group.budgets == tuple(sorted(c.max_new_tokens for c in group.derived))
        assert all(c.max_new_tokens < group.lead.max_new_tokens for c in group.derived)


def test_group_budgets_and_the_lead_settings():
    sharing = plan_sharing(budgets(4, 16, 8))
    (group,) = sharing.groups.values()
    assert group.lead.max_new_tokens == 16 and group.budgets == (4, 8)
    assert [c.max_new_tokens for c in group.cells] == [16, 8, 4]
    assert sharing.derived_of(group.lead.cell_id) == group.derived and sharing.derived_of("other") == ()


# --- the rows and costs of a derived cell, from a synthetic BatchResult -----------------------------------

def batch(start: float = 100.0, latency: float = 2.0, actor: str = "h:1", ids=("a", "b", "c"),
          errors=("", "", "OSError: x"), budgets_answered: dict | None = None) -> BatchResult:
    samples = [SampleResult(sid, f"a long caption of {sid}" if not err else "", 0 if err else 16, err,
                            0.0 if err else latency / 2, 64, 64)
               for sid, err in zip(ids, errors, strict=True)]
    if budgets_answered is None:
        budgets_answered = {
            4: BudgetResult(4, ["a long", "a long", ""], [4, 4, 0], latency / 4, "decode_step_times"),
            8: BudgetResult(8, ["a long caption", "a long caption", ""], [8, 7, 0], latency / 2,
                            "decode_step_times"),
        }
    return BatchResult(samples=samples, latency_sec=latency, captioned=sum(not e for e in errors),
                       start_ts=start, end_ts=start + latency, actor_id=actor, node_id="n",
                       peak_memory_bytes=1000, peak_memory_kind="cpu_rss", energy_kwh=0.4, emissions_kg=0.2,
                       model_cells_before=0, budgets=budgets_answered)


def test_derived_rows_take_their_budget_from_the_shared_generation():
    result = batch()
    derived = derived_rows(result, 4, "lead-id")
    rows, facts = per_image(derived.images, pd.DataFrame([derived.batch])), derived.batch
    assert rows["caption"].tolist() == ["a long", "a long", ""]
    assert rows["generated_tokens"].tolist() == [4, 4, 0]
    assert rows["error"].tolist() == ["", "", "OSError: x"]
    assert rows["batch_latency_sec"].tolist() == [0.5] * 3  # until every sequence stopped or reached 4
    assert rows["processing_time_sec"].tolist() == [0.25, 0.25, 0.0]  # latency / captioned images
    assert rows["batch_start_ts"].tolist() == [100.0] * 3 and rows["batch_end_ts"].tolist() == [100.5] * 3
    # energy apportioned by latency: 0.5 s of the batch's 2 s, once in the batch's row
    assert facts["energy_kwh"] == pytest.approx(0.1) and facts["emissions_kg"] == pytest.approx(0.05)
    assert (rows["peak_memory_bytes"] == 1000).all() and (rows["peak_memory_kind"] == "cpu_rss").all()
    assert (rows["shared_generation"] == "lead-id").all() and (rows["shared_batch_latency_sec"] == 2.0).all()
    assert (rows["budget_measured"] == "decode_step_times").all()
    lead = caption_rows(result)
    assert lead.images["caption"].iloc[0] == "a long caption of a" and lead.batch["energy_kwh"] == 0.4
    tables = batch_tables(result, "lead-id", (4, 8))
    assert set(tables) == {None, 4, 8} and tables[8].images["generated_tokens"].tolist() == [8, 7, 0]
    # one host answer, one batch id in every cell it serves
    assert len({t.batch["batch_id"] for t in tables.values()} | set(tables[4].images["batch_id"])) == 1


def test_a_host_that_does_not_answer_a_budget_fails_the_batch_loudly():
    result = batch(budgets_answered={})
    with pytest.raises(MissingBudget, match="no budget 4 .*share_token_budgets: false"):
        batch_tables(result, "lead-id", (4, 8))
    wrong = batch(budgets_answered={4: BudgetResult(4, ["x"], [1], 0.1, "decode_step_times")})
    with pytest.raises(MissingBudget, match="1 captions and 1 token counts for a batch of 3"):
        derived_rows(wrong, 4, "lead-id")
    # a batch of decode errors only was never generated: its derived rows are empty rows, no budget needed
    errors = batch(errors=("OSError: a", "OSError: b", "OSError: c"), budgets_answered={})
    rows = derived_rows(errors, 4, "lead-id")
    assert rows.images["caption"].tolist() == ["", "", ""] and rows.batch["energy_kwh"] == 0.0


REPORTS = {host: {"load_seconds": 2.0, "weight_bytes": 100} for host in ("h:1", "h:2")}


def _tables(results: list[BatchResult], budget: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images with their batches' facts, batch table) of one cell's batches."""
    parts = [caption_rows(r) if budget is None else derived_rows(r, budget, "lead-id") for r in results]
    images = pd.concat([p.images for p in parts], ignore_index=True)
    batches = pd.DataFrame([{**p.batch, "attempt": "x"} for p in parts])
    return per_image(images, batches), batches


def _table(results: list[BatchResult], budget: int | None) -> pd.DataFrame:
    return _tables(results, budget)[0]


def _costs(results: list[BatchResult], budget: int | None) -> dict:
    return summarize_costs(*_tables(results, budget), 9.0, REPORTS)


def test_derived_costs_follow_the_budget_latency_not_the_shared_generation():
    # one host, two batches back to back with a 1 s gap: 100-102 and 103-105
    results = [batch(100.0, ids=("a", "b", "c")), batch(103.0, ids=("d", "e", "f"))]
    lead = _costs(results, None)
    t4 = _costs(results, 4)
    assert lead["images_per_sec"] == pytest.approx(4 / 5.0)  # 4 captioned over 100..105
    # 4 tokens needed 0.5 s of each 2 s batch: the window is 5 s less 2 x 1.5 s
    assert t4["images_per_sec"] == pytest.approx(4 / 2.0)
    assert t4["tokens_per_sec"] == pytest.approx(16 / 2.0) and t4["mean_generated_tokens"] == 4.0
    assert t4["latency_p50_s"] == 0.5 and lead["latency_p50_s"] == 2.0
    assert t4["seconds_per_image"] == pytest.approx(0.25)
    assert t4["energy_kwh"] == pytest.approx(0.2) and lead["energy_kwh"] == pytest.approx(0.8)
    assert t4["peak_memory_bytes"] == lead["peak_memory_bytes"] == 1000
    # two hosts in parallel: the time saved is spread over them
    parallel = [batch(100.0, actor="h:1", ids=("a", "b", "c")),
                batch(100.0, actor="h:2", ids=("d", "e", "f"))]
    assert _costs(parallel, 4)["images_per_sec"] == pytest.approx(4 / 0.5)


def test_cost_kinds_say_what_was_measured_and_what_apportioned():
    results = [batch()]
    own = cost_kinds(_table(results, None))
    assert own == {"shared_generation": "", "energy_kind": "measured per batch",
                   "latency_kind": "batch_wall", "peak_memory_kind": "cpu_rss", "cache_policy": "",
                   "preprocess_where": "host"}
    derived = cost_kinds(_table(results, 4))
    assert derived["shared_generation"] == "lead-id" and derived["latency_kind"] == "decode_step_times"
    assert derived["energy_kind"] == "apportioned by decode-step time of a shared generation"
    assert derived["peak_memory_kind"] == "cpu_rss" + SHARED_PEAK and "upper bound" in SHARED_PEAK
    fallback = batch(budgets_answered={4: BudgetResult(4, ["a", "b", ""], [1, 1, 0], 0.7, "own_generation")})
    assert cost_kinds(_table([fallback], 4))["latency_kind"] == "own_generation"


# --- a group's trial: every cell of the group written, finished, with its own loads and costs -------------

SAMPLES = [SimpleNamespace(sample_id=s, image_id=i, video_id=None) for i, s in enumerate("abcdef")]
REPORT = LoadReport("hf", "test", "llava", "cpu", 1.5, 100)


class FakeCaptioning:
    """Stands for `caption_samples`: answers each batch of 3 with a synthetic BatchResult."""

    def __init__(self, fail_after: int | None = None, error: str = ""):
        self.calls: list[tuple[list[str], tuple[int, ...]]] = []
        self.fail_after = fail_after
        self.error = error  # every sample's decode error ("" : all captioned)

    def __call__(self, cell, samples, settings, on_batch, host_pool, on_start=None, budgets=()):
        self.calls.append(([s.sample_id for s in samples], budgets))
        on_start([CellStart("h:1", "n", REPORT, {"max_new_tokens": cell.max_new_tokens, "num_beams": 1,
                                                 "min_new_tokens": 6}, 0)])
        for k in range(0, len(samples), 3):
            if self.fail_after is not None and k >= self.fail_after:
                raise RuntimeError("host died")
            ids = tuple(s.sample_id for s in samples[k:k + 3])
            answered = {t: BudgetResult(t, [f"{sid} {t}" for sid in ids], [t] * len(ids), 0.1 * t,
                                        "decode_step_times") for t in budgets}
            result = batch(100.0 + k, latency=0.1 * cell.max_new_tokens, ids=ids,
                           errors=(self.error,) * len(ids), budgets_answered=answered)
            on_batch(batch_tables(result, cell.cell_id, tuple(sorted(budgets))))
        return len(samples)


def test_a_group_trial_writes_and_finishes_every_cell_of_the_group(tmp_path, monkeypatch):
    from sweep.execute import trials

    store = ResultStore(tmp_path)
    lead, *derived = budgets(16, 8, 4)
    fake = FakeCaptioning()
    monkeypatch.setattr(trials, "caption_samples", fake)
    costs = trials.run_cell(lead, SAMPLES, None, store, None, derived=tuple(derived))
    assert fake.calls == [(list("abcdef"), (8, 4))]  # one generation for the three cells
    wanted = {s.sample_id for s in SAMPLES}
    for member in (lead, *derived):
        finished = store.finished_costs(member.cell_id, wanted)
        assert finished is not None and finished["n_samples"] == 6
        table = store.read_captions(member.cell_id)
        assert (table["max_new_tokens"] == member.max_new_tokens).all()
        generation = store.read_loads(member.cell_id)["generation"]
        assert generation["max_new_tokens"] == member.max_new_tokens
        assert generation["min_new_tokens"] == min(6, member.max_new_tokens)
        assert list(store.read_loads(member.cell_id)["reports"]) == ["h:1"]
    t4 = store.read_captions(derived[1].cell_id)
    assert t4["caption"].tolist() == [f"{s} 4" for s in "abcdef"] and (t4["generated_tokens"] == 4).all()
    assert t4["batch_latency_sec"].tolist() == pytest.approx([0.4] * 6)
    # NaN-aware: the fake host measures no preprocessing, so its preprocess costs are NaN both ways
    assert costs == pytest.approx(store.finished_costs(lead.cell_id, wanted), nan_ok=True)
    assert store.finished_costs(derived[1].cell_id, wanted)["latency_p50_s"] == pytest.approx(0.4)
    assert "shared_generation" not in store.read_captions(lead.cell_id)


def test_a_cell_whose_every_sample_failed_is_a_failed_cell(tmp_path, monkeypatch):
    from sweep.execute import trials

    store = ResultStore(tmp_path)
    monkeypatch.setattr(trials, "caption_samples", FakeCaptioning(error="FileNotFoundError: gone.jpg"))
    with pytest.raises(RuntimeError, match=r"every sample failed \(6 of 6\); the first: FileNotFoundError"):
        trials.run_cell(cell(8), SAMPLES, None, store, None)
    assert store.finished_costs(cell(8).cell_id, {s.sample_id for s in SAMPLES}) is None


def test_a_half_finished_group_resumes_what_its_members_lack(tmp_path, monkeypatch):
    from sweep.execute import trials

    store = ResultStore(tmp_path)
    lead, small = budgets(16, 4)
    monkeypatch.setattr(trials, "caption_samples", FakeCaptioning(fail_after=3))
    with pytest.raises(RuntimeError, match="host died"):
        trials.run_cell(lead, SAMPLES, None, store, None, derived=(small,))
    assert store.done_sample_ids(lead.cell_id) == store.done_sample_ids(small.cell_id) == set("abc")
    fake = FakeCaptioning()
    monkeypatch.setattr(trials, "caption_samples", fake)
    trials.run_cell(lead, SAMPLES, None, store, None, derived=(small,))
    assert fake.calls == [(list("def"), (4,))]
    for member in (lead, small):
        costs = store.finished_costs(member.cell_id, {s.sample_id for s in SAMPLES})
        assert costs is not None and costs["resumed_samples"] == 3.0
        assert store.read_captions(member.cell_id)["sample_id"].tolist() == list("abcdef")


# --- the recorder: derived cells recorded with their lead, failed with its reason --------------------------

class FakeScorer:
    def score_images(self, predictions, references, document_frequencies=None):
        from sweep.quality.scoring import PER_IMAGE_COLUMNS

        per_image = pd.DataFrame({c: [0.5] * len(predictions) for c in PER_IMAGE_COLUMNS},
                                 index=list(predictions))
        return SimpleNamespace(per_image=per_image, corpus={"cider": 0.5})


def _recorder(tmp_path, cells, derived):
    from sweep.execute.progress import SweepProgress
    from sweep.results.recorder import SweepRecorder

    samples = [SimpleNamespace(sample_id=s.sample_id, references=["a ref"]) for s in SAMPLES]
    progress = SweepProgress(len(cells), len(samples), stream=open(tmp_path / "progress.log", "w"))
    return SweepRecorder(cells, samples, ResultStore(tmp_path), FakeScorer(), None, progress,
                         document_frequencies="scored_subset", derived=derived)


def test_the_recorder_records_derived_cells_when_the_lead_completes(tmp_path, monkeypatch):
    from sweep.execute import trials
    from sweep.execute.callbacks import CellCallback

    lead, *derived = budgets(16, 8, 4)
    monkeypatch.setattr(trials, "caption_samples", FakeCaptioning())
    trials.run_cell(lead, SAMPLES, None, ResultStore(tmp_path), None, derived=tuple(derived))
    recorder = _recorder(tmp_path, [lead, *derived], {lead.cell_id: tuple(c.cell_id for c in derived)})
    callback = CellCallback(recorder)
    trial = SimpleNamespace(config={"cell_id": lead.cell_id}, last_result={})
    callback.on_trial_start(0, [], trial)
    assert recorder.progress.running == {c.cell_id for c in (lead, *derived)}
    callback.on_trial_complete(0, [], trial)
    recorder.drain()
    assert recorder.progress.done == {c.cell_id for c in (lead, *derived)} and not recorder.progress.running
    outcomes = recorder.outcomes
    assert all(outcomes[c.cell_id].status == "ok" for c in (lead, *derived))
    assert outcomes[lead.cell_id].params["shared_generation"] == ""
    assert outcomes[lead.cell_id].params["energy_kind"] == "measured per batch"
    for c in derived:
        params, row = outcomes[c.cell_id].params, outcomes[c.cell_id].row()
        assert params["shared_generation"] == lead.cell_id == row["shared_generation"]
        assert params["max_new_tokens"] == str(c.max_new_tokens) and params["min_new_tokens"] == str(
            min(6, c.max_new_tokens))
        assert params["latency_kind"] == "decode_step_times"
        assert params["peak_memory_kind"].endswith(SHARED_PEAK)
        assert row["energy_kind"].startswith("apportioned") and math.isfinite(row["latency_p50_s"])


def test_a_failed_shared_generation_fails_its_derived_cells_with_the_same_reason(tmp_path):
    from sweep.execute.callbacks import CellCallback

    lead, small = budgets(16, 4)
    store = ResultStore(tmp_path)
    for c in (lead, small):
        store.write_failure(c.cell_id, "oom: CUDA out of memory at batch size 1", "trace")
    recorder = _recorder(tmp_path, [lead, small], {lead.cell_id: (small.cell_id,)})
    CellCallback(recorder).on_trial_error(0, [], SimpleNamespace(config={"cell_id": lead.cell_id}))
    recorder.drain()
    for c in (lead, small):
        outcome = recorder.outcomes[c.cell_id]
        assert outcome.status == "failed" and outcome.reason == "oom: CUDA out of memory at batch size 1"
    assert recorder.outcomes[small.cell_id].params["shared_generation"] == lead.cell_id
    assert recorder.progress.failed == {lead.cell_id, small.cell_id}


# --- the dry run ----------------------------------------------------------------------------------------

def test_dry_run_says_which_cells_share_and_why_others_do_not(tmp_path):
    from sweep.plan.dry_run import format_plan, plan_cells

    cells = [*budgets(4, 16), *budgets(4, 8, num_beams=2)]
    text = format_plan(plan_cells(cells, ResultStore(tmp_path), {"a"}))
    assert f"generation: shares the generation of {cells[1].label}" in text
    assert "generation: generates itself: the largest budget of its group, also serving t4" in text
    assert text.count("generation: generates itself: beam search (num_beams 2)") == 2
    assert "3 generations for 4 cells to run: 1 cells share" in text
    off = format_plan(plan_cells(cells, ResultStore(tmp_path), {"a"}, share_token_budgets=False))
    assert off.count(f"generates itself: {OFF}") == 4 and "share the generation" not in off
