"""benchmarks/compare_results.py: two sweeps' outputs compared to the last digit, timings ignored."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("compare_results", ROOT / "benchmarks" / "compare_results.py")
compare_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_results)


def write_output(out: Path, cider: str = "0.48210261051801234", latency: str = "0.05",
                 caption: str = "a red circle", cell_score: float = 0.3, extra: bool = False) -> Path:
    rows = {"cell_id": ["c1", "c2"], "label": ["m/fp32/t4", "m/fp32/t8"], "cider": [cider, "1.5"],
            "latency_p50_s": [latency, "0.06"], "latency_kind": ["batch_wall"] * 2, "pareto": ["latency", ""]}
    if extra:
        rows["new_column"] = ["x", "y"]
    out.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    for cell in ("c1", "c2"):
        (out / "cells" / cell).mkdir(parents=True)
        pd.DataFrame({"sample_id": ["1", "2"], "caption": [caption, "a blue square"],
                      "generated_tokens": [3, 3], "references": [["a red circle"], ["a blue box"]],
                      "cider": [cell_score, math.nan], "batch_latency_sec": [0.1, 0.2]}
                     ).to_parquet(out / "cells" / cell / "captions.parquet")
    return out


def test_identical_outputs_have_no_difference_whatever_their_timings(tmp_path, capsys):
    before = write_output(tmp_path / "a")
    after = write_output(tmp_path / "b", latency="0.09", extra=True)
    diffs, notes = compare_results.compare(before, after)
    assert diffs == []
    assert any("only after: new_column" in n for n in notes)
    assert compare_results.main([str(before), str(after)]) == 0
    assert "identical" in capsys.readouterr().out


def test_the_last_digit_of_a_quality_number_is_a_difference(tmp_path):
    before = write_output(tmp_path / "a")
    after = write_output(tmp_path / "b", cider="0.48210261051801235")
    diffs, _ = compare_results.compare(before, after)
    assert diffs == ["m/fp32/t4 (c1) cider: 0.48210261051801234 -> 0.48210261051801235"]
    assert compare_results.main([str(before), str(after)]) == 1


def test_a_changed_caption_or_per_image_score_is_named_with_its_sample(tmp_path):
    before = write_output(tmp_path / "a")
    after = write_output(tmp_path / "b", caption="a red disc", cell_score=0.30000001)
    diffs, _ = compare_results.compare(before, after)
    assert "m/fp32/t4 (c1) sample 1 caption: 'a red circle' -> 'a red disc'" in diffs
    assert "m/fp32/t8 (c2) sample 1 cider: 0.3 -> 0.30000001" in diffs
    assert len(diffs) == 4  # caption and cider, in both cells; NaN equals NaN


def test_a_missing_cell_and_a_missing_output_dir_are_reported(tmp_path, capsys):
    before = write_output(tmp_path / "a")
    after = write_output(tmp_path / "b")
    table = pd.read_csv(after / "results.csv").iloc[:1]
    table.to_csv(after / "results.csv", index=False)
    diffs, _ = compare_results.compare(before, after)
    assert diffs == ["cell m/fp32/t8 (c2) only before"]
    assert compare_results.main([str(before), str(tmp_path / "nowhere")]) == 2
    assert "no results.csv" in capsys.readouterr().err
