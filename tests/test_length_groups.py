"""Requests grouped by prompt length before generate() (issue 18, item 3): the pure grouping and reordering,
and the real tiny Qwen2-VL over mixed image sizes (same greedy captions, fewer pad tokens)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actors.length_groups import in_request_order, length_groups, padding_tokens


def test_groups_split_where_lengths_differ_and_order_comes_back() -> None:
    lengths = [60, 300, 62, 310, 61, 305]
    groups = length_groups(lengths, batch_size=8, slack=1.0)
    assert groups == [[0, 4, 2], [1, 5, 3]]  # short prompts first, each group sorted by length
    grouped = [f"r{i}" for g in groups for i in g]
    assert in_request_order(groups, grouped) == [f"r{i}" for i in range(len(lengths))]
    assert padding_tokens(lengths, groups) == 2 + 1 + 10 + 5
    assert padding_tokens(lengths, [list(range(6))]) == sum(310 - n for n in lengths)


def test_similar_lengths_stay_one_group_in_request_order() -> None:
    assert length_groups([63, 65, 63, 64], batch_size=4, slack=1.0) == [[0, 2, 3, 1]]
    # the boundary: exactly (1 + slack) x the shortest joins, one more token splits
    assert length_groups([50, 100], batch_size=4, slack=1.0) == [[0, 1]]
    assert length_groups([50, 101], batch_size=4, slack=1.0) == [[0], [1]]


def test_groups_never_exceed_the_batch_size_and_cover_every_request() -> None:
    lengths = [10] * 7
    groups = length_groups(lengths, batch_size=3, slack=0.0)
    assert groups == [[0, 1, 2], [3, 4, 5], [6]]
    order = [i for g in groups for i in g]
    assert in_request_order(groups, order) == list(range(7))


def test_edge_cases() -> None:
    assert length_groups([], batch_size=8) == []
    assert length_groups([42], batch_size=1) == [[0]]
    assert length_groups([0, 0, 5], batch_size=8, slack=0.5) == [[0, 1], [2]]  # 5 > 1.5 x 0
    assert in_request_order([], []) == []
    with pytest.raises(ValueError, match="batch_size"):
        length_groups([1], batch_size=0)
    with pytest.raises(ValueError, match="slack"):
        length_groups([1], batch_size=2, slack=-0.1)
    with pytest.raises(ValueError, match="prompt lengths"):
        length_groups([3, -1], batch_size=2)
    with pytest.raises(ValueError, match="2 results for 3"):
        in_request_order([[0, 2], [1]], ["a", "b"])
    with pytest.raises(ValueError, match="partition"):
        in_request_order([[0, 0], [1]], ["a", "b", "c"])


@pytest.mark.slow  # ~12 s on 2 shared cores, the tiny model's build included
def test_tiny_qwen2_vl_grouped_captions_match_with_less_padding(coco_mini: Path) -> None:
    """The real tiny Qwen2-VL, its processor widened to real pixel ranges, COCO images alternately 64 and
    448 px: grouping gives the same greedy captions, token counts and budget cuts in request order, with
    fewer pad tokens; the Generation's latency covers both groups (batch_wall) and every cut fits in it."""
    from actors.generation import generate_batch, generate_grouped
    from benchmarks import model_side
    from benchmarks.common import PROMPT
    from benchmarks.padding import mixed_images, widen_pixels

    captioner = model_side.load_captioner("tiny:qwen2_vl", "fp32")
    widen_pixels(captioner.processor)
    images = [[img] for img in mixed_images(coco_mini, 6)]
    prompts = [PROMPT] * len(images)
    family, model, processor = captioner.family, captioner.model, captioner.processor
    device = captioner.device
    kwargs = model_side.exact_length_generation(PROMPT, 6) | {"min_new_tokens": 1}
    budgets = (2, 4)

    padded = generate_batch(family, model, processor, prompts, images, kwargs, device, budgets)
    start = time.perf_counter()
    grouped = generate_grouped(family, model, processor, prompts, images, kwargs, device, budgets,
                               slack=family.length_group_slack)
    wall = time.perf_counter() - start

    assert [(r.caption, r.generated_tokens) for r in grouped.results] == \
        [(r.caption, r.generated_tokens) for r in padded.results]
    for t in budgets:
        cut, whole = grouped.budgets[t], padded.budgets[t]
        assert [r.caption for r in cut.results] == [r.caption for r in whole.results]
        assert 0 < grouped.budgets[t].latency_sec <= grouped.latency_sec
    assert padded.padding_tokens > 0
    assert grouped.padding_tokens < padded.padding_tokens / 2
    assert 0 < grouped.latency_sec <= wall
    # without grouping (slack None) the same function is exactly one padded batch
    single = generate_grouped(family, model, processor, prompts, images, kwargs, device, slack=None)
    assert single.padding_tokens == padded.padding_tokens
    assert [r.caption for r in single.results] == [r.caption for r in padded.results]


def test_host_batch_split_in_groups_keeps_sample_order_and_batch_wall(coco_mini: Path) -> None:
    """Through `ModelHost.caption` (what a cell calls): a batch whose images split into length groups, an
    undecodable sample in the middle, comes back in sample order with the captions of one padded batch;
    its latency is the call's wall time over every group (batch_wall), each image's share
    latency/captioned."""
    import numpy as np

    from actors.contract import GenerationSettings, LoadSpec, ModelRef, SampleBatch
    from actors.generation import generate_batch, prompt_lengths
    from actors.model_host import ModelHost
    from benchmarks.common import PROMPT
    from benchmarks.padding import mixed_images, widen_pixels

    host = ModelHost(LoadSpec(ModelRef("tiny:qwen2_vl"), "fp32", backend="hf"), None)
    captioner = host.captioner
    widen_pixels(captioner.processor)
    images = mixed_images(coco_mini, 4)
    pixels = [np.asarray(img) for img in images]
    ids = ["a", "bad", "b", "c", "d"]
    batch = SampleBatch(ids, ["", "decode error", "", "", ""], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0],
                        pixels=pixels[:1] + [None] + pixels[1:])
    settings = GenerationSettings(PROMPT, 5, num_beams=1, min_new_tokens=5)
    host.begin_cell("cell", settings)
    start = time.perf_counter()
    result = host.caption(batch, settings, "cell")
    wall = time.perf_counter() - start

    padded = generate_batch(captioner.family, captioner.model, captioner.processor, [PROMPT] * 4,
                            [[img] for img in images], settings.generate_kwargs(), captioner.device)
    lengths = prompt_lengths(captioner.family.build_inputs(captioner.processor, [PROMPT] * 4,
                                                           [[img] for img in images]))
    assert len(length_groups(lengths, 4, captioner.family.length_group_slack)) == 2  # the batch does split
    assert [s.sample_id for s in result.samples] == ids
    assert [s.caption for s in result.samples] == [padded.results[0].caption, ""] + \
        [r.caption for r in padded.results[1:]]
    assert result.captioned == 4 and result.latency_kind == "batch_wall"
    assert 0 < result.latency_sec <= wall
    shares = [s.processing_time_sec for s in result.samples]
    assert shares[1] == 0.0
    assert all(share == pytest.approx(result.latency_sec / 4) for k, share in enumerate(shares) if k != 1)
