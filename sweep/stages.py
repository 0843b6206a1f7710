"""CPU stages of the per-cell pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


class DecodeImage:
    """Read and resize one image; a missing or corrupt file becomes an error row, never an exception."""

    def __init__(self, max_side: int):
        self.max_side = max_side

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {"sample_id": row["sample_id"], "error": "", "image_width": 0, "image_height": 0}
        try:
            with Image.open(row["path"]) as img:
                img = img.convert("RGB")
                out["image_width"], out["image_height"] = img.size
                img.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
                out["image"] = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            out["error"] = f"{type(err).__name__}: {err}"
            out["image"] = np.zeros((1, 1, 3), dtype=np.uint8)
        return out
