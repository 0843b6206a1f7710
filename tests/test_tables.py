"""The tables declared once (`sweep.results.tables`): rows built from a host's answer are as declared,
a batch's facts and totals stand once in the batch table and are joined onto images by one function
(`sweep.results.batches.per_image`), an older store is read as today's, the report's headers come from
the declaration, and docs/columns.md is the declaration's page. (Every table a real sweep writes is
checked against the declaration in the sweep tests: test_sweep_e2e, test_halving_sweep,
test_budget_sharing_sweep, test_video.)"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from actors.contract import BatchResult, BudgetResult, SampleResult, share_of_total
from actors.host_window import split_window
from sweep.execute.pipeline import caption_rows, derived_rows
from sweep.results import tables
from sweep.results.batches import of_rows, per_image
from sweep.results.store import ResultStore
from sweep.results.table_check import check_table

REPO = Path(__file__).resolve().parents[1]


def answer(errors=("", "", "bad image")) -> BatchResult:
    samples = [SampleResult(f"s{i}", "a cat" if not e else "", 2 if not e else 0, e, 0.1, 4, 3)
               for i, e in enumerate(errors)]
    ok = sum(not e for e in errors)
    return BatchResult(samples=samples, latency_sec=2.0, captioned=ok, start_ts=100.0, end_ts=102.0,
                       actor_id="h:1", node_id="n", peak_memory_bytes=10, peak_memory_kind="cpu_rss",
                       energy_kwh=0.3, emissions_kg=0.6, model_cells_before=0,
                       budgets={1: BudgetResult(1, ["a"] * len(errors), [1] * len(errors), 1.0,
                                                "decode_step_times")})


def test_rows_built_from_a_host_answer_are_as_declared_with_the_batch_once():
    built = caption_rows(answer())
    declared = [c.name for c in tables.CAPTION_TABLE]
    assert list(built.images.columns) == [n for n in declared if n in built.images]  # the declared order
    assert check_table(built.images, tables.CAPTION_TABLE) == [
        f"{c.name}: missing" for c in tables.CAPTION_TABLE if not c.when and c.name not in built.images]
    batch = pd.DataFrame([built.batch])
    assert list(batch.columns) == [c.name for c in tables.BATCH_TABLE if c.name in batch]
    assert check_table(batch, tables.BATCH_TABLE) == ["timestamp: missing", "attempt: missing"]
    assert not set(batch.columns) - {"batch_id"} & set(built.images.columns)  # no batch fact on a row
    assert (built.images["batch_id"] == built.batch["batch_id"]).all()
    assert built.batch["energy_kwh"] == 0.3 and built.batch["batch_latency_sec"] == 2.0
    derived = derived_rows(answer(), 1, "lead")
    assert math.isclose(derived.batch["energy_kwh"], 0.15)  # apportioned by latency
    assert check_table(derived.images, tables.CAPTION_TABLE) == \
        check_table(built.images, tables.CAPTION_TABLE)


def test_per_image_joins_a_batchs_facts_and_shares_its_totals_over_its_images():
    first, second = caption_rows(answer()), caption_rows(answer(("",)))
    second.batch.update(energy_kwh=float("nan"), batch_latency_sec=1.0)
    images = pd.concat([first.images, second.images], ignore_index=True)
    batches = pd.DataFrame([first.batch, second.batch])
    view = per_image(images, batches, shares=True)
    assert list(view["batch_latency_sec"]) == [2.0, 2.0, 2.0, 1.0]  # what each image waited
    assert all(math.isclose(v, 0.1) for v in view["energy_per_image"][:3])  # 0.3 kWh over 3 rows
    assert math.isnan(view["energy_per_image"].iloc[3])  # not measured: no share either
    assert list(view["emissions_per_image"][:3]) == pytest.approx([0.2] * 3) and "energy_kwh" not in view
    assert "energy_per_image" not in per_image(images, batches)  # shares only when asked
    kept = per_image(images.iloc[1:3], batches, shares=True)  # a batch resumed in part: what it kept
    assert list(kept["energy_per_image"]) == pytest.approx([0.15, 0.15])
    # a window cut into batches: its totals by the batches' samples (`share_of_total`, the same rule)
    window = split_window(answer(("", "", "", "")), [1, 3])
    assert [b.energy_kwh for b in window] == pytest.approx([0.075, 0.225]) and share_of_total(0.3, 1, 0) == 0
    assert math.isnan(share_of_total(float("nan"), 1, 2))
    assert list(of_rows(batches, images.iloc[::-1])["batch_id"]) == [second.batch["batch_id"],
                                                                      first.batch["batch_id"]]


def test_a_store_of_the_older_layout_is_read_as_todays(tmp_path):
    """Batch facts on every caption row, totals on a batch's first row (0.0 on the others): converted
    in place when read, nothing lost, the same per-image samples and cell totals."""
    first, second = caption_rows(answer()), caption_rows(answer(("", "")))
    second.batch.update(batch_start_ts=103.0, batch_end_ts=104.0, energy_kwh=float("nan"))
    second.images["sample_id"] = ["s3", "s4"]
    old = pd.concat([per_image(b.images, pd.DataFrame([b.batch])).drop(columns="batch_id").assign(
        **{t: [b.batch[t]] + [0.0] * (len(b.images) - 1) for t in ("energy_kwh", "emissions_kg",
                                                                    "preprocess_sec")})
        for b in (first, second)], ignore_index=True)
    old["timestamp"], old["attempt"] = "2026-01-01T00:00:00+00:00", "a1"
    store = ResultStore(tmp_path)
    store.finish_cell("c", old.iloc[:3], {})
    store.append_part("c", old.iloc[3:])  # a part of a later batch, not consolidated yet
    captions = store.read_rows("c")
    batches = store.read_batches("c")
    assert "batch_latency_sec" not in captions and captions["batch_id"].nunique() == 2
    assert len(batches) == 2 and math.isclose(batches["energy_kwh"].iloc[0], 0.3)
    assert math.isnan(batches["energy_kwh"].iloc[1])  # not measured stays not measured
    assert check_table(batches, tables.BATCH_TABLE) == []
    # the cell's own columns (cell_id, ...) this synthetic table never had aside, it is as declared
    problems = check_table(store.read_caption_table("c"), tables.CAPTION_TABLE)
    assert problems and all(p.endswith("missing") for p in problems)
    view = store.read_captions("c")
    assert list(view["batch_latency_sec"]) == list(old.iloc[:3]["batch_latency_sec"])
    assert list(view["sample_id"]) == ["s0", "s1", "s2"] and (view["attempt"] == "a1").all()
    again = ResultStore(tmp_path)
    assert again.read_batches("c").equals(batches)  # converted once: the same ids when read again


def test_check_table_names_what_disagrees():
    frame = pd.DataFrame({"cell_id": ["c"], "status": [3], "mystery": [1.0], "weight_bytes_vision": [2.0]})
    problems = check_table(frame, tables.RESULTS_TABLE)
    assert "mystery: not declared" in problems and "status: int64, declared str" in problems
    assert "label: missing" in problems and not any("weight_bytes_vision" in p for p in problems)


def test_the_report_headers_and_result_columns_come_from_the_declaration():
    from sweep.publish.html_report import RANK_COLUMNS
    from sweep.publish.report import TABLE_COLUMNS
    from sweep.quality.scoring import METRIC_KEYS

    declared = tables.columns(tables.RESULTS_TABLE)
    for key, header in [*TABLE_COLUMNS, *RANK_COLUMNS]:
        assert key in declared and header in (declared[key].header, declared[key].title, key)
    assert dict(TABLE_COLUMNS)["cider"] == "CIDEr [95% interval]" and dict(RANK_COLUMNS)["cider"] == "CIDEr"
    assert set(tables.RESULT_METRICS) <= set(declared) and METRIC_KEYS == tables.CORPUS_QUALITY


def test_docs_columns_page_is_generated_from_the_declaration():
    page = (REPO / "docs" / "columns.md").read_text()
    assert page == tables.columns_markdown(), "run: python -m sweep.results.tables > docs/columns.md"
