"""Requests of one call grouped by prompt length (image tokens included), so that a left-padded batch pads
little, and the groups' results put back in request order. Pure functions: no model, no tensors.

Why split at all: a batched generate() pads every prompt to the longest one, and Qwen2-VL's dynamic
resolution makes a small image a few dozen tokens and a large one hundreds, so a mixed batch spends most of
its prefill (and its KV cache) on padding. Each extra group costs another generate() call (its decode steps
too, which on a GPU cost about as much at batch 4 as at batch 8), so a group is only split off where
lengths differ by more than `slack`; a batch of similar prompts stays one generate() call.

The window is what a host gets in one call (one `batch_size` batch): the pipeline keeps several batches in
flight to a host, but each is its own call with its own latency, energy and timestamps, so grouping across
them would change that contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

Item = TypeVar("Item")

# A request starts a new group when its prompt is more than this fraction longer than the group's shortest:
# 1.0 = twice as long. Below it, padding costs less than the extra generate() call a split would add.
DEFAULT_SLACK = 1.0


def length_groups(lengths: Sequence[int], batch_size: int, slack: float = DEFAULT_SLACK) -> list[list[int]]:
    """Request indices in groups of at most `batch_size`, each group's lengths within (1 + slack) of its
    shortest; groups ordered by length, indices within a group in request order of equal length (stable)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if slack < 0:
        raise ValueError(f"slack must be >= 0, got {slack}")
    bad = [n for n in lengths if n < 0]
    if bad:
        raise ValueError(f"prompt lengths must be >= 0, got {bad}")
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        group = groups[-1] if groups else None
        if group is None or len(group) >= batch_size or lengths[i] > (1 + slack) * lengths[group[0]]:
            groups.append([i])
        else:
            group.append(i)
    return groups


def in_request_order(groups: Sequence[Sequence[int]], grouped: Sequence[Item]) -> list[Item]:
    """`grouped` (the results of every group, concatenated in group order) back in request order."""
    order = [i for group in groups for i in group]
    if len(order) != len(grouped):
        raise ValueError(f"{len(grouped)} results for {len(order)} grouped requests")
    if sorted(order) != list(range(len(order))):
        raise ValueError(f"groups {list(map(list, groups))} are not a partition of 0..{len(order) - 1}")
    out: list[Item | None] = [None] * len(order)
    for i, item in zip(order, grouped, strict=True):
        out[i] = item
    return out  # type: ignore[return-value]  # every slot filled: order is a permutation


def padding_tokens(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> int:
    """Pad tokens the groups' batches carry: each request padded to its group's longest."""
    return sum(max(lengths[i] for i in group) - lengths[i] for group in groups for i in group)
