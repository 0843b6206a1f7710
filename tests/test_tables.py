"""The tables declared once (`sweep.results.tables`): rows built from a host's answer are as declared,
a batch's totals stand once per batch, the report's headers come from the declaration, and
docs/columns.md is the declaration's page. (Every table a real sweep writes is checked against the
declaration in the sweep tests: test_sweep_e2e, test_halving_sweep, test_budget_sharing_sweep,
test_video.)"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from actors.contract import BatchResult, BudgetResult, SampleResult, on_first
from actors.model_host import split_window
from sweep.execute.pipeline import caption_rows, derived_rows
from sweep.results import tables

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


def test_rows_built_from_a_host_answer_are_as_declared_with_totals_on_the_first_row():
    rows = caption_rows(answer())
    declared = [c.name for c in tables.CAPTION_TABLE]
    assert list(rows.columns) == [n for n in declared if n in rows]  # the declared order
    assert tables.check_table(rows, tables.CAPTION_TABLE) == [
        f"{c.name}: missing" for c in tables.CAPTION_TABLE if not c.when and c.name not in rows]
    assert list(rows["energy_kwh"]) == [0.3, 0.0, 0.0] and rows["emissions_kg"].sum() == 0.6
    assert (rows["batch_latency_sec"] == 2.0).all()  # a batch fact: what each image waited
    derived = derived_rows(answer(), 1, "lead")
    assert tables.check_table(derived, tables.CAPTION_TABLE) == tables.check_table(rows, tables.CAPTION_TABLE)
    assert math.isclose(derived["energy_kwh"].sum(), 0.15)  # apportioned by latency, still on row one


def test_a_batch_total_stays_once_per_batch_wherever_the_batch_is_cut():
    assert on_first(0.5, 3) == [0.5, 0.0, 0.0] and on_first(0.5, 0) == []
    rows = caption_rows(answer())
    kept = tables.keep_rows(rows, rows["sample_id"] != "s0")  # s0 was stored by an earlier attempt
    assert list(kept["sample_id"]) == ["s1", "s2"] and list(kept["energy_kwh"]) == [0.3, 0.0]
    window = split_window(answer(("", "", "", "")), [1, 3])
    assert [b.energy_kwh for b in window] == [0.3, 0.0]
    spread = tables.spread_batch_total(rows)
    assert all(math.isclose(v, 0.1) for v in spread)  # 0.3 kWh over the batch's three rows
    assert tables.spread_batch_total(rows.drop(columns="energy_kwh")).isna().all()


def test_check_table_names_what_disagrees():
    frame = pd.DataFrame({"cell_id": ["c"], "status": [3], "mystery": [1.0], "weight_bytes_vision": [2.0]})
    problems = tables.check_table(frame, tables.RESULTS_TABLE)
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
