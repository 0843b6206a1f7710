"""The warning for a part set aside as unreadable (`ResultStore._read_part`) reaches the user: the trial
process that set it aside logs it there, where the driver's terminal and sweep.log never see it; the
driver finds the parts set aside during its run by the rename's time and warns once per part."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sweep.results.store import ResultStore

log = logging.getLogger(__name__)


def set_aside_since(store: ResultStore, cell_ids: list[str], since: float) -> list[Path]:
    """The `.unreadable` parts of these cells renamed at or after `since` (epoch seconds; a rename sets
    the file's ctime, not its mtime)."""
    found = []
    for cell_id in cell_ids:
        for path in sorted(store.parts_dir(cell_id).glob("*.unreadable")):
            try:
                if path.stat().st_ctime >= since - 1.0:
                    found.append(path)
            except OSError:
                continue
    return found


def warn_set_aside(store: ResultStore, cells: list[Any], since: float) -> list[str]:
    """Log a WARNING (terminal and sweep.log) for each part set aside during this run by another process
    (the driver's own were logged when they happened: `store.notes`); returns the lines."""
    told = " ".join(store.notes)
    found = set_aside_since(store, [c.cell_id for c in cells], since)
    lines = [f"unreadable part {path.with_suffix('')} set aside as {path.name} (kept for a look); its "
             "samples were captioned again" for path in found if path.name not in told]
    for line in lines:
        log.warning(line)
    return lines
