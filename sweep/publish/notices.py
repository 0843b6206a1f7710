"""Summary lines of the sweep's terminal output that belong to no one table: what decoding changed in
each cell's images."""

from __future__ import annotations

import math
from typing import Any


def _count(row: Any, column: str) -> int:
    value = row.get(column, math.nan)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0
    return int(value) if math.isfinite(value) else 0


def pixel_notes(results: Any) -> list[str]:
    """One note per cell some of whose images were scaled from 16/32 bits or turned upright by EXIF."""
    lines = []
    for _, row in results.iterrows():
        scaled, turned = _count(row, "n_images_8bit_scaled"), _count(row, "n_images_exif_turned")
        parts = [f"{scaled} images of 16 or 32 bits scaled to 8 bits" if scaled else "",
                 f"{turned} images turned upright by their EXIF orientation" if turned else ""]
        if scaled or turned:
            lines.append(f"{row['label']}: {', '.join(filter(None, parts))} (the caption table's pixel_note "
                         "says which; width and height are after turning)")
    return lines
