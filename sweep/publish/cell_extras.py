"""The statistics each ok cell gets only once the sweep is done (intervals, fronts, `degenerate_output`,
`cells_beside`), logged onto its MLflow child run, each run written only when its values changed."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from sweep.logs import brief
from sweep.results.store import atomic_write_bytes

EXTRAS_LOGGED = ".mlflow-extras.json"  # {tracking uri: {run id: sha256 of the extras logged onto it}}

log = logging.getLogger(__name__)


def log_cell_extras(tracker: Any, outcomes: dict[str, Any], results: Any,
                     logged_path: Path | None = None) -> list[str]:
    """The intervals, `pareto`/`pareto_tied`, `degenerate_output` and `cells_beside` of each ok cell onto
    its child run; notes for the cells whose logging failed. `logged_path` remembers what each run got:
    a run that already holds these very values (a re-run of a stored grid) is not written again."""
    from sweep.quality.statistics import CI_METRICS, ci_columns

    columns = [c for m in CI_METRICS for c in ci_columns(m)] + ["degenerate_output", "cells_beside"]
    notes = []
    logged: dict = {}
    if logged_path is not None:
        try:
            logged = json.loads(logged_path.read_text())
        except (OSError, ValueError):
            logged = {}
    done = logged.setdefault(str(getattr(tracker, "uri", "")), {})
    for _, row in results[results["status"].isin(["ok", "pruned"])].iterrows():
        run_id = outcomes[row["cell_id"]].run_id
        if run_id is None:
            continue
        metrics = {c: float(row[c]) for c in columns if c in row}  # the tracker leaves out NaN
        tags = {"pareto": row["pareto"], "pareto_tied": row["pareto_tied"]}
        if row["status"] == "pruned":  # the rung, images seen and why are params; the status a tag
            tags.update(status="pruned", pruned_reason=str(row["reason"])[:5000])
        digest = hashlib.sha256(json.dumps([metrics, tags], sort_keys=True).encode()).hexdigest()
        if done.get(run_id) == digest:
            continue
        try:
            tracker.log_cell_extra(run_id, metrics, tags)
            done[run_id] = digest
        except Exception as err:  # the files have it all; MLflow can be re-logged later
            log.info("MLflow logging of cell %s's intervals failed", row["cell_id"], exc_info=True)
            notes.append(f"MLflow logging of the intervals of cell {row['cell_id']} failed: {brief(err)}")
    if logged_path is not None:
        atomic_write_bytes(logged_path, json.dumps(logged, indent=1).encode())
    return notes
