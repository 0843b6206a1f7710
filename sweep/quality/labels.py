"""Point labels that do not overlap: each label goes to the first spot around its point (nearest first)
where its box overlaps no label already placed and no point, and lies inside the axes; a label with no
such spot is left for the caller's legend table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: where to try a label, relative to its point: 8 directions at growing distances (points)
DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
DISTANCES = (4, 10, 18, 28, 40)
PAD_PX = 1.0  # boxes closer than this count as touching
MARKER_PX = 4.0  # half the side of the box kept clear around each point
LABEL_GID = "cell-label"  # the gid of every label drawn here (what the tests look up)


def _alignment(dx: int, dy: int) -> tuple[str, str]:
    return ({1: "left", 0: "center", -1: "right"}[dx], {1: "bottom", 0: "center", -1: "top"}[dy])


def _padded(box: Any, pad: float) -> Any:
    from matplotlib.transforms import Bbox

    return Bbox.from_extents(box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad)


def _leader(ax: Any, x: float, y: float, dx_pt: float, dy_pt: float) -> None:
    """A thin line from a point to its label set further away, so the label reads as that point's. In
    data coordinates: the axes keep their size in inches when the figure grows, so it stays right."""
    scale = ax.figure.dpi / 72.0
    px, py = ax.transData.transform((x, y))
    lx, ly = ax.transData.inverted().transform((px + dx_pt * scale, py + dy_pt * scale))
    ax.plot([x, lx], [y, ly], color="0.6", linewidth=0.6, zorder=1.5, gid="leader")


def point_boxes(ax: Any, points: Sequence[tuple[float, float]]) -> list[Any]:
    """A small box around each plotted point, in display pixels (labels keep clear of the markers)."""
    from matplotlib.transforms import Bbox

    out = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        out.append(Bbox.from_extents(px - MARKER_PX, py - MARKER_PX, px + MARKER_PX, py + MARKER_PX))
    return out


def place_labels(ax: Any, renderer: Any, items: Sequence[tuple[float, float, str]], avoid: list[Any],
                 fontsize: float = 7.0) -> list[int]:
    """Draw each (x, y, text) of `items` at a free spot; `avoid`: boxes already taken (display pixels),
    extended with each placed label. Returns the indices of the items that found no spot (not drawn)."""
    inside = ax.get_window_extent(renderer)
    unplaced = []
    for k, (x, y, text) in enumerate(items):
        placed = False
        for distance in DISTANCES:
            for dx, dy in DIRECTIONS:
                ha, va = _alignment(dx, dy)
                artist = ax.annotate(text, (x, y), textcoords="offset points", fontsize=fontsize,
                                     xytext=(dx * distance, dy * distance), ha=ha, va=va, gid=LABEL_GID,
                                     annotation_clip=False)
                box = artist.get_window_extent(renderer)
                fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                        and box.y1 <= inside.y1)
                if fits and not any(_padded(box, PAD_PX).overlaps(other) for other in avoid):
                    avoid.append(box)
                    placed = True
                    if distance > DISTANCES[1]:
                        _leader(ax, x, y, dx * distance, dy * distance)
                    break
                artist.remove()
            if placed:
                break
        if not placed:
            unplaced.append(k)
    return unplaced
