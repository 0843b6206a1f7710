"""Token-budget sharing (issue 16): which cells are served by one generation at their largest budget.

For greedy decoding with one beam, the first t tokens of a generation capped at T >= t are the tokens a
generation capped at t produces (same inputs, same batch, same steps; a sequence that ends early ends at
the same step). So cells that differ only in `max_new_tokens` form one group: the cell with the largest
budget (the lead) runs as a trial and generates; the host answers each smaller budget of the group from
that same generation (`GenerationSettings.budgets` -> `BatchResult.budgets`), and the driver writes those
answers to the derived cells. Every other cell generates itself, with its reason.

Pure: decided from the cells and what the driver knows of their families (no Ray, no download).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sweep.grid.cells import Cell

OFF = "sharing turned off (generation.share_token_budgets: false)"
CUSTOM = "custom loader: the sweep cannot tell how its generation ends, so it is not cut"
ALONE = "no other budget of its model, precision, prompt and settings to share with"

FamilyLookup = Callable[[Cell], tuple[Any, str]]


def family_of(cell: Cell) -> tuple[Any, str]:
    """(the cell's Family, "") when the driver knows it from `model.family`, `tiny:<family>` or a local
    config.json; else (None, why not). Never downloads."""
    from actors.registry import detect_family, get_family
    from actors.resolve import local_config_json

    spec = cell.model
    try:
        if spec.family:
            return get_family(spec.family), ""
        if spec.is_tiny:
            return get_family(spec.id.removeprefix("tiny:")), ""
        config = local_config_json(spec.id, spec.revision)
        if config is None:
            return None, "config.json is not available locally (set `family:` on the model)"
        return detect_family(config), ""
    except ValueError as err:  # unknown family names, config.json of no known family
        return None, str(err)


def vllm_missing_note(cells: list[Cell]) -> str:
    """The start line's note when a CUDA machine without vLLM runs auto cells on HF that vLLM could serve."""
    from actors.backends import detect_machine, missing_vllm_note

    requests = []
    for cell in cells:
        family = None if cell.model.loader else family_of(cell)[0]
        if family is not None:
            requests.append((cell.backend, family, cell.precision))
    return missing_vllm_note(requests, **detect_machine())


@dataclass(frozen=True)
class BudgetGroup:
    """One generation at the lead's budget serving the derived cells' smaller budgets."""

    lead: Cell
    derived: tuple[Cell, ...]  # largest budget first

    @property
    def budgets(self) -> tuple[int, ...]:
        """The smaller budgets the lead's generation answers (`GenerationSettings.budgets`)."""
        return tuple(sorted(c.max_new_tokens for c in self.derived))

    @property
    def cells(self) -> tuple[Cell, ...]:
        return (self.lead, *self.derived)


@dataclass
class Sharing:
    """The decision for a list of cells: groups by lead id, and why every other cell generates itself."""

    groups: dict[str, BudgetGroup] = field(default_factory=dict)
    lead_of: dict[str, str] = field(default_factory=dict)  # derived cell id -> lead cell id
    reasons: dict[str, str] = field(default_factory=dict)  # cell id -> why it generates itself

    def trial_cells(self, cells: Iterable[Cell]) -> list[Cell]:
        """The cells that run as trials (every cell but the derived ones), in the given order."""
        return [c for c in cells if c.cell_id not in self.lead_of]

    def derived_of(self, cell_id: str) -> tuple[Cell, ...]:
        group = self.groups.get(cell_id)
        return group.derived if group else ()

    def describe(self, cell: Cell, labels: dict[str, str] | None = None) -> str:
        """One line for `--dry-run`."""
        lead = self.lead_of.get(cell.cell_id)
        if lead is not None:
            label = (labels or {}).get(lead) or self.groups[lead].lead.label
            return f"shares the generation of {label}"
        group = self.groups.get(cell.cell_id)
        if group is not None:
            served = ", ".join(f"t{t}" for t in sorted(group.budgets, reverse=True))
            return f"generates itself: the largest budget of its group, also serving {served}"
        return f"generates itself: {self.reasons.get(cell.cell_id, ALONE)}"


def _effective(cell: Cell, defaults: dict[str, Any]) -> tuple[int, int]:
    """(beams, min new tokens) the host will generate with: the family's defaults under the cell's, the
    minimum capped at the budget (as `actors.model_host.effective_generation` does)."""
    beams = cell.num_beams if cell.num_beams is not None else int(defaults.get("num_beams", 1))
    minimum = cell.min_new_tokens
    if minimum is None:
        minimum = int(defaults.get("min_new_tokens", 0))
    return beams, min(minimum, cell.max_new_tokens)


def _why_not(cell: Cell, lookup: FamilyLookup) -> tuple[str, int]:
    """(why this cell cannot share, "" when it can; its effective min new tokens)."""
    if cell.model.loader:
        return CUSTOM, 0
    if cell.do_sample:
        return "sampling (do_sample: true): a shorter budget's tokens are not a prefix of a longer one's", 0
    if cell.num_beams is not None and cell.num_beams > 1:
        return f"beam search (num_beams {cell.num_beams}): beams rank whole sequences, a shorter budget's " \
            "are not a prefix", 0
    defaults: dict[str, Any] = {}
    if cell.num_beams is None or cell.min_new_tokens is None:  # the family's defaults decide
        family, unknown = lookup(cell)
        if family is None:
            return f"family unknown on the driver, so are its default beams: {unknown}", 0
        defaults = dict(family.generation_defaults or {})
        beams = _effective(cell, defaults)[0]
        if beams > 1:
            return (f"the {family.name} family's default is num_beams {beams} (set generation.num_beams: [1] "
                    "to share)"), 0
    return "", _effective(cell, defaults)[1]


def _key(cell: Cell) -> str:
    """Everything but the budget: model, precision, prompt, sampling, penalty, backend, batch, placement."""
    return json.dumps(cell.model_dump(mode="json", exclude={"max_new_tokens", "min_new_tokens"}),
                      sort_keys=True)


def plan_sharing(cells: list[Cell], enabled: bool = True, lookup: FamilyLookup = family_of) -> Sharing:
    """Group the cells (those left to run) that one generation at the largest budget can serve."""
    sharing = Sharing()
    buckets: dict[str, list[tuple[Cell, int]]] = {}
    for cell in cells:
        if not enabled:
            sharing.reasons[cell.cell_id] = OFF
            continue
        reason, minimum = _why_not(cell, lookup)
        if reason:
            sharing.reasons[cell.cell_id] = reason
        else:
            buckets.setdefault(_key(cell), []).append((cell, minimum))
    for members in buckets.values():
        by_minimum: dict[int, list[Cell]] = {}
        for cell, minimum in members:
            by_minimum.setdefault(minimum, []).append(cell)
        for minimum, group in by_minimum.items():
            group = sorted(group, key=lambda c: c.max_new_tokens, reverse=True)
            # min_new_tokens must not exceed the smallest budget (capped cells have a minimum of their own)
            if len(group) < 2 or minimum > group[-1].max_new_tokens:
                for cell in group:
                    sharing.reasons[cell.cell_id] = ALONE if len(members) == 1 else (
                        f"min_new_tokens {minimum} differs from the other budgets' (the grid's "
                        "min_new_tokens is capped at each budget)")
                continue
            lead, derived = group[0], tuple(group[1:])
            sharing.groups[lead.cell_id] = BudgetGroup(lead, derived)
            sharing.lead_of.update({c.cell_id: lead.cell_id for c in derived})
    return sharing
