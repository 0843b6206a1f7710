"""Pareto-aware successive halving: the pure decision (sweep.search.halving), the grid's search section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweep.grid.config import GridError, parse_grid
from sweep.search.halving import (
    MemoryEstimate,
    RungCell,
    decide_rung,
    dominator,
    image_counts,
    image_order,
    may_be_dominated_later,
    rung_sizes,
    trials_to_stop,
)
from tests.conftest import grid_dict

OBJECTIVES = ["latency", "memory", "energy"]


def _cell(cell_id: str, cider: np.ndarray, latency: np.ndarray, memory: float = 1.0,
          energy: float = 1.0) -> RungCell:
    table = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(len(cider))], "cider": cider,
                          "batch_latency_sec": latency, "error": ""})
    return RungCell(cell_id, cell_id.replace("-", "/"), table, {"memory": memory, "energy": energy})


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.5, 2.0, size=32)  # per-image difficulty, shared by cells


def test_clearly_dominated_cell_stops_at_first_rung_and_says_by_whom(images: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    good = _cell("base-fp32-t16", images + 0.5, np.full(32, 0.05) + rng.normal(0, 0.002, 32), 1.0, 1.0)
    bad = _cell("small-int8-t16", images * 0.4, np.full(32, 0.09) + rng.normal(0, 0.002, 32), 1.0, 2.0)
    decisions = decide_rung([good, bad], OBJECTIVES, 0.95, rung=0)
    assert decisions["base-fp32-t16"] is None
    why = decisions["small-int8-t16"]
    assert why is not None and why.by == "base-fp32-t16" and why.n_images == 32
    assert why.cider.high < 0
    text = why.describe()
    assert text.startswith("dominated by base/fp32/t16 at 32 images: CIDEr −")
    assert "latency ×1.8" in text and "energy ×2.00" in text


def test_tied_cell_continues(images: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    a = _cell("a", images + rng.normal(0, 0.3, 32), np.full(32, 0.05), 1.0, 1.0)
    b = _cell("b", images + rng.normal(0, 0.3, 32), np.full(32, 0.07), 1.0, 1.0)
    decisions = decide_rung([a, b], OBJECTIVES, 0.95, rung=0)
    assert decisions == {"a": None, "b": None}


def test_cheaper_cell_on_the_front_is_not_stopped_by_a_better_dearer_one(images: np.ndarray) -> None:
    # better quality but more memory: the worse, smaller cell is on the memory front and must continue
    best = _cell("best", images + 1.0, np.full(32, 0.05), memory=2.0)
    small = _cell("small", images, np.full(32, 0.05), memory=1.0)
    assert decide_rung([best, small], OBJECTIVES, 0.95, 0)["small"] is None
    # with latency the only objective, the same pair prunes the smaller one (latencies the same)
    assert decide_rung([best, small], ["latency"], 0.95, 0)["small"].by == "best"


def test_a_slower_dominating_candidate_on_latency_does_not_stop(images: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    better_slower = _cell("b", images + 1.0, np.full(32, 0.09) + rng.normal(0, 0.002, 32))
    fast = _cell("f", images, np.full(32, 0.05) + rng.normal(0, 0.002, 32))
    assert decide_rung([better_slower, fast], OBJECTIVES, 0.95, 0)["f"] is None


def test_a_shared_generation_stops_only_when_every_member_is_dominated(images: np.ndarray) -> None:
    top = _cell("top", images + 1.0, np.full(32, 0.01))
    t16 = _cell("t16", images, np.full(32, 0.05))
    t4 = _cell("t4", images * 0.5, np.full(32, 0.005))  # fastest of all: on the latency front
    decisions = decide_rung([top, t16, t4], ["latency"], 0.95, 0)
    assert decisions["t16"] is not None and decisions["t4"] is None
    assert trials_to_stop({"t16": ("t16", "t4"), "top": ("top",)}, decisions) == {}
    stop = trials_to_stop({"t16": ("t16",), "top": ("top",)}, decisions)
    assert list(stop) == ["t16"] and stop["t16"].by == "top"


def test_decisions_for_targets_match_comparing_every_pair() -> None:
    """The cheap pre-test (`could_dominate`) only skips pairs that cannot dominate: on random cells
    (quality, latency, memory drawn apart or close), deciding for a few targets gives exactly the
    Dominations of bootstrapping every pair."""
    from sweep.quality.statistics import Comparisons

    rng = np.random.default_rng(5)
    base = rng.uniform(0.5, 2.0, 24)
    cells = [_cell(f"c{k}", base + rng.normal(rng.choice([0.0, 0.3, 1.0]), 0.2, 24),
                   np.full(24, rng.choice([0.02, 0.05])) + rng.normal(0, 0.003, 24),
                   memory=float(rng.choice([1.0, 2.0])), energy=float(rng.uniform(1, 2))) for k in range(12)]
    for objectives in (OBJECTIVES, ["latency"], ["memory"]):
        brute = Comparisons({c.cell_id: c.table for c in cells}, 1000, 0, 0.95)
        expected = {c.cell_id: dominator(c, cells, objectives, 0, brute) for c in cells[:4]}
        got = decide_rung(cells, objectives, 0.95, 0, targets=[c.cell_id for c in cells[:4]])
        assert got == expected
        assert sum(d is not None for d in got.values()) >= 1  # the test compares real stops too
    assert set(decide_rung(cells, OBJECTIVES, 0.95, 0)) == {c.cell_id for c in cells}


def test_image_order_is_seeded_and_shared() -> None:
    ids = [f"{i}" for i in range(20)]
    order = image_order(ids, 7)
    assert order == image_order(list(reversed(ids)), 7)  # independent of the dataset's listing
    assert sorted(order) == sorted(ids) and order != sorted(ids)
    assert image_order(ids, 8) != order


def test_rung_sizes_and_counts() -> None:
    assert rung_sizes(50, first_rung=10, factor=2) == [10, 20, 40, 50]
    assert rung_sizes(50, rungs=[8, 25, 60]) == [8, 25, 50]
    assert rung_sizes(12) == [12]  # the default first rung (16) is the whole set: one rung
    # the default first rung is an eighth of the images, at least 16: 25 of the families grid's 200
    assert rung_sizes(200) == [25, 50, 100, 200] and rung_sizes(50) == [16, 32, 50]
    worst, expected = image_counts([10, 20, 40, 50], n_trials=8, factor=2)
    assert worst == 400
    assert expected == 8 * 10 + 4 * 10 + 2 * 20 + 1 * 10


def test_search_section_validated_with_field_paths(coco_mini, tmp_path) -> None:
    grid = parse_grid(grid_dict(coco_mini, tmp_path, search={"strategy": "pareto_halving",
                                                                "first_rung": 8, "factor": 3}))
    assert grid.search.strategy == "pareto_halving" and grid.search.confidence == 0.95
    assert parse_grid(grid_dict(coco_mini, tmp_path)).search.strategy == "full"
    with pytest.raises(GridError) as err:
        parse_grid(grid_dict(coco_mini, tmp_path, search={
            "strategy": "halve", "rungs": [8, 4], "objectives": ["latency", "speed"], "confidence": 1.5}))
    paths = {p for p, _ in err.value.problems}
    assert {"search.strategy", "search.rungs", "search.objectives.1", "search.confidence"} <= paths
    with pytest.raises(GridError, match="not both"):
        parse_grid(grid_dict(coco_mini, tmp_path, search={"strategy": "pareto_halving", "rungs": [8],
                                                          "first_rung": 8}))


def test_dry_run_shows_rungs_and_worst_and_expected_images() -> None:
    from sweep.grid.config import SearchConfig
    from sweep.plan.dry_run import CellPlan, format_search

    plans = [CellPlan(cell=None, sharing=s) for s in  # type: ignore[arg-type]
             ["generates itself: the largest budget of its group, also serving t4",
              "shares the generation of x", "generates itself: no other budget",
              "generates nothing: finished in the store"]]
    lines = format_search(SearchConfig(strategy="pareto_halving", first_rung=10), plans, 50)
    assert lines[0].startswith("search: pareto_halving over rungs [10, 20, 40, 50]")
    assert "at least as cheap on latency, memory, energy" in lines[0]
    # 2 generations (the shared cell is cut from one): worst 2 x 50, expected 2x10 + 1x10 + 1x20 + 1x10
    assert lines[1].startswith("images captioned by 2 generations: worst case 100 (none stopped), expected "
                               "about 60 ")
    assert lines[2] == ("order: ascending estimated weights; a generation waits at the first rung (10 "
                        "images) only while one still to come may have no more memory, then the best CIDEr "
                        "there goes on first")
    latency = SearchConfig(strategy="pareto_halving", first_rung=10, objectives=["latency"])
    assert format_search(latency, plans, 50)[2] == ("order: every generation captions the first rung (10 "
                                                    "images) before any goes further, then the best CIDEr "
                                                    "there goes on first")
    asynchronous = SearchConfig(strategy="pareto_halving", first_rung=10, synchronous_first_rung=False)
    assert len(format_search(asynchronous, plans, 50)) == 2
    assert format_search(SearchConfig(), plans, 50) == ["search: full (every cell captions all 50 images)"]


def test_fewest_images_a_front_keeping_pruning_can_caption() -> None:
    """The benchmark's bound: a generation (a lead cell and the cells cut from it) with a cell on any
    front of the full run captions every image, every other one at least the first rung."""
    from benchmarks.halving import fewest_images

    results = pd.DataFrame({
        "cell_id": ["a32", "a8", "b32", "b8", "c32"],
        "shared_generation": [None, "a32", None, "b32", None],
        "pareto": [None, "latency", None, None, "memory,energy"],  # a8 puts generation a32 on a front
    })
    assert fewest_images(results, n_images=50, first_rung=10) == {
        "images": 2 * 50 + 1 * 10, "generations": 3, "front_generations": 2}


def test_a_generation_still_to_come_may_dominate_only_with_no_more_memory() -> None:
    """The synchronous first rung holds a trial only while a waiting generation may have at most its
    memory: its estimate, scaled by what the reached generations of its precision measured."""
    nf4, fp32 = MemoryEstimate("nf4", 0.12e6), MemoryEstimate("fp32", 0.36e6)
    memory = 0.000218  # GB: a reached nf4 generation's measured weights
    assert may_be_dominated_later(memory, [nf4], [])  # the bare estimate (0.12 MB) is below it
    # a reached nf4 generation measured 1.8x its estimate: the waiting one's 0.12 MB is ~0.22 MB
    measured = [(MemoryEstimate("nf4", 0.11e6), 0.000198)]
    assert not may_be_dominated_later(memory - 0.00001, [nf4], measured)
    assert may_be_dominated_later(memory + 0.00001, [nf4], measured)
    assert not may_be_dominated_later(memory, [fp32], measured)  # more memory: it cannot dominate
    assert not may_be_dominated_later(memory, [], measured)  # nothing waits
    # unknown estimates or memory: anything may
    assert may_be_dominated_later(memory, [fp32, MemoryEstimate("int8", float("inf"))], measured)
    assert may_be_dominated_later(float("nan"), [fp32], measured)


def test_fastest_wall_takes_off_only_the_prunable_generations_captioning_past_the_first_rung() -> None:
    """The benchmark's wall bound: generation b (no front cell) captioned 100 images in 10 s, of which
    pruning could save the 80 past a first rung of 20 (8 s); the front generation a saves nothing."""
    from benchmarks.halving import fastest_wall

    class Store:
        def read_batches(self, cell_id: str) -> pd.DataFrame:
            start = {"a32": 100.0, "b32": 200.0}[cell_id]
            return pd.DataFrame({"batch_start_ts": [start, start + 5],
                                 "batch_end_ts": [start + 5, start + 10]})

    results = pd.DataFrame({"cell_id": ["a32", "a8", "b32"], "shared_generation": [None, "a32", None],
                            "pareto": [None, "latency", None], "n_samples": [100, 100, 100]})
    bound = fastest_wall(Store(), results, wall=50.0, first_rung=20)
    assert bound == {"wall": pytest.approx(42.0), "captioning_saved": pytest.approx(8.0)}


def test_a_cell_faster_by_its_point_estimate_is_not_stopped_inside_a_latency_tie(images: np.ndarray) -> None:
    """The point-front cell of a rung is kept: a better cell whose latency interval includes zero (not
    dearer with confidence) but whose p50 is higher does not stop it; the same pair the other way
    round (the better cell the faster by its point too) does."""
    rng = np.random.default_rng(2)  # latency p50 difference +0.007, its interval [-0.009, +0.029]
    noise = rng.normal(0, 0.03, 32)
    better = _cell("better", images + 1.0, np.full(32, 0.055) + rng.normal(0, 0.03, 32))
    fast = _cell("fast", images, np.full(32, 0.05) + noise)
    assert np.median(better.table["batch_latency_sec"]) > np.median(fast.table["batch_latency_sec"])
    assert decide_rung([better, fast], OBJECTIVES, 0.95, 0)["fast"] is None
    slow = _cell("slow", images, np.full(32, 0.07) + noise)
    why = decide_rung([better, slow], OBJECTIVES, 0.95, 0)["slow"]
    assert why is not None and why.by == "better"
