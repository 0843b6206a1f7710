"""A cell's outcome (ok, pruned or failed) and its results row; when cells ran beside each other."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweep.grid.cells import Cell
from sweep.results.tables import RESULT_METRICS


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "ok" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    run_id: str | None = None
    reused: bool = False  # read back from the result store instead of computed in this invocation
    span: tuple[float, float] | None = None  # when the cell ran (epoch seconds)

    def row(self) -> dict[str, Any]:
        """The cell's results row (`sweep.results.tables.RESULTS_TABLE`)."""
        return {
            "cell_id": self.cell.cell_id,
            "label": self.cell.label,
            "prompt": self.cell.prompt,
            "model": self.cell.model.display_name,
            "precision": self.cell.precision,
            "max_new_tokens": self.cell.max_new_tokens,
            "num_beams": self.cell.num_beams,
            "backend": self.params.get("backend", ""),
            "weights": self.params.get("weights", ""),
            "status": self.status,
            "reused": self.reused,
            "reason": self.reason,
            "peak_memory_kind": self.params.get("peak_memory_kind", ""),
            "shared_generation": self.params.get("shared_generation", ""),
            "energy_kind": self.params.get("energy_kind", ""),
            "latency_kind": self.params.get("latency_kind", ""),
            "cache_policy": self.params.get("cache_policy", ""),
            "preprocess_where": self.params.get("preprocess_where", ""),
            "cider_document_frequencies": self.params.get("cider_document_frequencies", ""),
            **dict.fromkeys(RESULT_METRICS, math.nan),
            **self.metrics,
        }


def cell_span(table: Any, costs: dict) -> tuple[float, float] | None:
    """(start, end) epoch seconds of the cell: its wall time, ending with its last batch."""
    if "batch_end_ts" not in table or table.empty:
        return None
    end = float(table["batch_end_ts"].max())
    return end - float(costs.get("cell_wall_seconds", 0.0) or 0.0), end


def cells_beside(spans: dict[str, tuple[float, float] | None],
                 generation_of: dict[str, str] | None = None) -> dict[str, float]:
    """For each cell, how many other generations ran while it ran (their spans overlap its span): on
    shared cores or GPUs, what its latency and images/s were measured beside. `generation_of`: cell id ->
    the cell whose generation served it (token-budget sharing): cells of one generation are one run, not
    neighbours. NaN for a cell without a span (failed before its first batch)."""
    generation_of = generation_of or {}
    runs: dict[str, tuple[float, float]] = {}
    for cell_id, span in spans.items():
        if span is not None:
            runs.setdefault(generation_of.get(cell_id) or cell_id, span)
    out = {}
    for cell_id, span in spans.items():
        if span is None:
            out[cell_id] = math.nan
            continue
        own = generation_of.get(cell_id) or cell_id
        out[cell_id] = float(sum(1 for key, (start, end) in runs.items()
                                 if key != own and start < span[1] and span[0] < end))
    return out


