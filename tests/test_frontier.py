"""One frontier (`sweep.quality.frontier`): the objectives, the memory axis rule and the two named cost
rules that the report, the plots and successive halving share."""

from __future__ import annotations

import math
import typing

import pandas as pd

from sweep.grid.config import SearchConfig
from sweep.quality import frontier
from sweep.quality.statistics import Difference


def test_the_grid_objectives_are_the_frontier_objectives():
    field = SearchConfig.model_fields["objectives"].annotation
    (literal,) = typing.get_args(field)
    assert set(typing.get_args(literal)) == set(frontier.OBJECTIVES)
    assert frontier.OBJECTIVES["latency"].column == "latency_p50_s"


def test_memory_axis_rule_gpu_peak_else_weights_for_tables_and_single_cells():
    assert frontier.memory_column(["cpu_rss", "cpu_rss"]) == frontier.WEIGHTS_MEMORY
    assert frontier.memory_column(["cpu_rss", "gpu_allocated"]) == frontier.PEAK_MEMORY
    assert frontier.memory_column(["", ""]) == frontier.PEAK_MEMORY  # stores older than the kind
    costs = {"peak_memory_gb": 3.0, "weight_bytes": 2e9}
    assert frontier.cell_memory(costs, "gpu_allocated") == 3.0
    assert frontier.cell_memory(costs, "cpu_rss") == 2.0
    assert math.isnan(frontier.cell_memory({}, "gpu_allocated"))
    results = pd.DataFrame({"peak_memory_kind": ["cpu_rss"]})
    assert frontier.cost_axes(results)["memory"] == frontier.WEIGHTS_MEMORY


def test_the_two_cost_rules_differ_only_on_an_interval_across_zero():
    straddles = Difference("latency_p50_s", 0.01, -0.1, 0.2, 50)
    below = Difference("latency_p50_s", -0.2, -0.3, -0.1, 50)
    above = Difference("latency_p50_s", 0.2, 0.1, 0.3, 50)
    assert frontier.NOT_DEARER(straddles) and not frontier.AT_MOST_AS_DEAR(straddles)
    for rule in (frontier.NOT_DEARER, frontier.AT_MOST_AS_DEAR):
        assert rule(below) and not rule(above)
    # without an interval (memory: one number per cell) both compare points, an unknown cost never passes
    assert frontier.cheap_enough(None, 1.0, 2.0, frontier.AT_MOST_AS_DEAR)
    assert not frontier.cheap_enough(None, math.nan, 2.0, frontier.NOT_DEARER)


def test_pruning_also_refuses_a_cell_dearer_by_its_point_estimate_inside_a_tie():
    straddles = Difference("latency_p50_s", 0.01, -0.1, 0.2, 50)
    assert frontier.cheap_enough(straddles, 1.1, 1.0, frontier.NOT_DEARER)
    assert not frontier.cheap_enough_to_prune(straddles, 1.1, 1.0)  # the dearer point of a tied pair
    assert frontier.cheap_enough_to_prune(straddles, 0.9, 1.0)
    assert not frontier.cheap_enough_to_prune(None, math.nan, 1.0)  # unknown: never cheap enough


def test_beats_needs_quality_with_confidence_and_falls_back_to_points_without_it():
    better = Difference("cider", 0.3, 0.1, 0.5, 50)
    tie = Difference("cider", 0.3, -0.1, 0.5, 50)
    assert frontier.beats(better, None, (1.0, 1.0), (0.5, 1.0), frontier.AT_MOST_AS_DEAR)
    assert not frontier.beats(tie, None, (1.0, 1.0), (0.5, 1.0), frontier.AT_MOST_AS_DEAR)
    assert not frontier.beats(better, None, (1.0, 2.0), (0.5, 1.0), frontier.NOT_DEARER)  # dearer point
    assert frontier.beats(None, None, (1.0, 1.0), (0.5, 1.0), frontier.AT_MOST_AS_DEAR)
    assert not frontier.beats(None, None, (1.0, 1.0), (1.0, 1.0), frontier.AT_MOST_AS_DEAR)


def test_tied_is_an_interval_across_zero_and_the_one_rule_behind_difference_tie():
    cases = {Difference("cider", 0.3, -0.1, 0.5, 50): True, Difference("cider", 0.3, 0.1, 0.5, 50): False,
             Difference("cider", -0.3, -0.5, -0.1, 50): False, Difference("cider", 0.0, 0.0, 0.0, 50): True,
             Difference("cider", math.nan, math.nan, math.nan, 0): True}
    for diff, expected in cases.items():
        assert frontier.tied(diff) is expected and diff.tie is expected
        # tied is exactly "neither better nor worse with confidence"
        assert frontier.tied(diff) is not (frontier.better_with_confidence(diff)
                                           or frontier.better_with_confidence(diff.flipped()))
