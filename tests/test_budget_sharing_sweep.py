"""Token-budget sharing end to end (issue 16): the zoo's small llava over 16 shapes images at 4, 8 and 16
tokens, once shared (one generation at 16 serves 8 and 4) and once with `share_token_budgets: false`.
The captions are the same string for string; the shared sweep ran one trial and a third of the batches;
a re-run reads everything back; a new larger budget generates that cell alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.store import ResultStore

pytestmark = [pytest.mark.slow, pytest.mark.shared_ray]  # four sweeps on one Ray

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"


def sweep(out: Path, share: bool = True, tokens: tuple[int, ...] = (4, 8, 16)):
    grid = parse_grid({
        "name": "budgets",
        "dataset": {"captions": str(SHAPES / "captions.json"), "images": str(SHAPES / "images"), "limit": 16,
                    "image_max_side": 64},
        "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small", "family": "llava"}],
        "precisions": ["fp32"],
        "max_new_tokens": list(tokens),
        "prompts": ["Describe this image in one sentence."],
        "generation": {"share_token_budgets": share},  # num_beams: the llava family's default (1)
        "resources": {"local_gpus": 2, "batch_size": 8},
        "energy": {"enabled": False},
        "output_dir": str(out),
    })
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    assert info.exit_code == 0, info.results[["label", "status", "reason"]]
    return info, {c.max_new_tokens: c for c in cells}


def captions(out: Path, cells: dict) -> dict[int, list[tuple[str, str]]]:
    store = ResultStore(out)
    return {t: list(zip(*[store.read_captions(c.cell_id)[k] for k in ("sample_id", "caption")], strict=True))
            for t, c in cells.items()}


def batches(out: Path, cells: dict) -> int:
    """Generations that happened: distinct (host, batch start) over every cell's rows."""
    store = ResultStore(out)
    tables = [store.read_captions(c.cell_id) for c in cells.values()]
    return len(pd.concat(tables)[["actor_id", "batch_start_ts"]].drop_duplicates())


def trials(out: Path) -> int:
    """Tune trials of the output dir's sweeps (one folder per trial, holding its params.json)."""
    return len(list((out / "tune").glob("*/*/params.json")))


@pytest.fixture(scope="module")
def shared_and_own(tmp_path_factory):
    root = tmp_path_factory.mktemp("budgets")
    shared, cells = sweep(root / "shared")
    own, _ = sweep(root / "own", share=False)
    return root, cells, shared, own


def test_shared_captions_equal_their_own_generations(shared_and_own):
    root, cells, _, _ = shared_and_own
    ours, theirs = captions(root / "shared", cells), captions(root / "own", cells)
    for t in cells:
        assert len(ours[t]) == 16 and ours[t] == theirs[t], t
    assert ours[4] != ours[16]  # the budgets do cut the captions


def test_derived_cells_say_which_generation_served_them(shared_and_own):
    _, cells, shared, own = shared_and_own
    lead = cells[16].cell_id
    results = shared.results.set_index("max_new_tokens")
    assert results.loc[16, "shared_generation"] == "" and results.loc[8, "shared_generation"] == lead
    assert results.loc[4, "shared_generation"] == lead
    assert results.loc[4, "latency_kind"] == "decode_step_times"
    assert results.loc[4, "energy_kind"].startswith("apportioned")
    assert "upper bound" in results.loc[4, "peak_memory_kind"]
    assert results.loc[4, "latency_p50_s"] < results.loc[16, "latency_p50_s"]
    assert results.loc[4, "mean_generated_tokens"] <= 4 < results.loc[16, "mean_generated_tokens"]
    assert (own.results["shared_generation"] == "").all()
    tracker = shared.tracker
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{tracker.parent_id}'")
    params = {int(r.data.params["max_new_tokens"]): r.data.params for r in runs}
    assert sorted(params) == [4, 8, 16] and all(r.info.status == "FINISHED" for r in runs)
    assert params[8]["shared_generation"] == lead and params[16]["shared_generation"] == ""
    assert params[4]["energy_kind"] == "apportioned by decode-step time of a shared generation"
    assert params[16]["energy_kind"] == "measured per batch"


def test_one_trial_and_a_third_of_the_generations(shared_and_own):
    root, cells, _, _ = shared_and_own
    assert trials(root / "shared") == 1 and trials(root / "own") == 3
    assert batches(root / "shared", cells) == 2 and batches(root / "own", cells) == 6  # 16 images, batch 8
    from sweep.results.table_check import check_output

    assert check_output(root / "shared") == [] and check_output(root / "own") == []


def test_rerun_reads_back_and_a_larger_budget_generates_alone(shared_and_own):
    root, cells, _, _ = shared_and_own
    before = captions(root / "shared", cells)
    again, _ = sweep(root / "shared")
    assert bool(again.results["reused"].all()) and trials(root / "shared") == 1
    more, more_cells = sweep(root / "shared", tokens=(4, 8, 16, 32))
    results = more.results.set_index("max_new_tokens")
    assert results["reused"].to_dict() == {4: True, 8: True, 16: True, 32: False}
    assert results.loc[32, "shared_generation"] == ""  # nothing to share with: the others are finished
    assert results.loc[8, "shared_generation"] == cells[16].cell_id  # read back as it was
    assert trials(root / "shared") == 2
    assert captions(root / "shared", cells) == before
    long = captions(root / "shared", {32: more_cells[32]})[32]
    assert all(c32.startswith(c16) for (_, c16), (_, c32) in zip(before[16], long, strict=True))
