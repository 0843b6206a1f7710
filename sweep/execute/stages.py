"""CPU stages of the per-cell pipeline."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from actors.contract import SampleBatch

PIL_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default decompression-bomb limit


class ImageTooLarge(ValueError):
    """More pixels than `dataset.max_image_pixels`: a decompression bomb, or an image too large to decode."""


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} = {width * height} pixels is more than "
                            f"dataset.max_image_pixels = {max_pixels} (a decompression bomb?)")


def _image_source(row: dict[str, Any]) -> Any:
    """A file path, or for a Hugging Face dataset the image of its Arrow row (bytes, or the file it names)."""
    if not row.get("arrow_column"):
        return row["path"]
    from sweep.data.hf import image_cell

    cell = image_cell(row["path"], int(row["arrow_row"]), str(row["arrow_column"]))
    if cell.get("bytes"):
        return io.BytesIO(cell["bytes"])
    if cell.get("path"):
        return cell["path"]
    raise ValueError(f"row {row['arrow_row']} of {row['path']} has no image bytes nor path")


class DecodeImage:
    """Read and resize one image; a missing, corrupt or too large file (more pixels than `max_pixels`,
    checked from the header before decoding) becomes an error row, never an exception."""

    def __init__(self, max_side: int, max_pixels: int | None = PIL_MAX_IMAGE_PIXELS):
        self.max_side = max_side
        self.max_pixels = max_pixels

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {"sample_id": row["sample_id"], "error": "", "image_width": 0, "image_height": 0}
        if row.get("error"):
            out["error"] = str(row["error"])
            out["image"] = np.zeros((1, 1, 3), dtype=np.uint8)
            return out
        limit = Image.MAX_IMAGE_PIXELS
        try:
            with warnings.catch_warnings():
                # the limit is ours (check_pixels, from the header): PIL's own bomb check is off meanwhile
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                Image.MAX_IMAGE_PIXELS = None
                with Image.open(_image_source(row)) as img:
                    check_pixels(*img.size, self.max_pixels)
                    img = img.convert("RGB")
                    out["image_width"], out["image_height"] = img.size
                    img.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
                    out["image"] = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            out["error"] = f"{type(err).__name__}: {err}"
            out["image"] = np.zeros((1, 1, 3), dtype=np.uint8)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        return out


class DecodeFrames:
    """Seek to each chosen frame of a scene (no full decode), resize, and pass frames as JPEG bytes
    (a list of variable-size arrays does not fit one Arrow column; a list of bytes does)."""

    def __init__(self, max_side: int):
        self.max_side = max_side

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import cv2

        out = {"sample_id": row["sample_id"], "error": str(row.get("error") or ""), "image_width": 0,
               "image_height": 0, "frames_jpeg": [], "image": np.zeros((1, 1, 3), dtype=np.uint8)}
        if out["error"]:
            return out
        capture = cv2.VideoCapture(row["path"])
        try:
            for t in row["frame_times"]:
                capture.set(cv2.CAP_PROP_POS_MSEC, float(t) * 1000.0)
                ok, frame = capture.read()
                if not ok:
                    out["error"] = f"cannot decode the frame at {t:.2f} s of {row['path']}"
                    out["frames_jpeg"] = []
                    return out
                img = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                out["image_width"], out["image_height"] = img.size
                img.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=95)
                out["frames_jpeg"].append(buf.getvalue())
        finally:
            capture.release()
        return out


def decode_batch(rows: list[dict[str, Any]], video: bool, max_side: int,
                 max_pixels: int | None = PIL_MAX_IMAGE_PIXELS) -> SampleBatch:
    """One batch of samples decoded (images, or a scene's frames) into the hosts' typed input: what one
    decode task of the pipeline returns. Failed samples are error rows of the batch, never an exception."""
    decode = DecodeFrames(max_side) if video else DecodeImage(max_side, max_pixels)
    outs = [decode(row) for row in rows]
    return SampleBatch(
        sample_ids=[str(o["sample_id"]) for o in outs],
        errors=[str(o["error"]) for o in outs],
        widths=[int(o["image_width"]) for o in outs],
        heights=[int(o["image_height"]) for o in outs],
        pixels=None if video else [o["image"] for o in outs],
        frames_jpeg=[list(o["frames_jpeg"]) for o in outs] if video else None,
    )
