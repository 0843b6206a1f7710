"""CPU stages of the per-cell pipeline."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from actors.contract import Preprocessor, SampleBatch
from sweep.data.files import read_regular, sha1_bytes

PIL_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default decompression-bomb limit


class ChangedDuringRun(OSError):
    """The file's bytes are not the ones hashed into the cell id when the dataset was read."""


class ImageTooLarge(ValueError):
    """More pixels than `dataset.max_image_pixels`: a decompression bomb, or an image too large to decode."""


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} = {width * height} pixels is more than "
                            f"dataset.max_image_pixels = {max_pixels} (a decompression bomb?)")


#: modes holding more than 8 bits a channel: PIL's convert("RGB") clips them at 255 (a white image)
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
EXIF_ORIENTATION = 0x0112


def to_8_bits(img: Image.Image) -> tuple[Image.Image, str]:
    """A 16-bit or 32-bit grayscale image as 8-bit grayscale scaled to its meaning, and the note saying so:
    16-bit (and 32-bit integers within 0-65535) by 255/65535, floats within 0-1 by 255, anything else
    by its own min-max range. Other modes pass unchanged (note "")."""
    if img.mode not in WIDE_MODES:
        return img, ""
    values = np.asarray(img, dtype=np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and hi <= 65535):
        scale, how = (0.0, 255.0 / 65535.0), "0-65535"
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        scale, how = (0.0, 255.0), "0-1"
    else:
        scale, how = (lo, 255.0 / (hi - lo) if hi > lo else 0.0), f"its range {lo:g}-{hi:g}"
    pixels = np.clip(np.rint((values - scale[0]) * scale[1]), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L"), f"mode {img.mode} scaled from {how} to 8 bits"


def upright(img: Image.Image) -> tuple[Image.Image, str]:
    """The image turned as its EXIF orientation says (a phone's portrait photo is stored sideways), and the
    note saying so ("" when it has no orientation to apply)."""
    try:
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (TypeError, ValueError):
        orientation = 1
    if orientation in (0, 1):
        return img, ""
    turned = ImageOps.exif_transpose(img)
    return turned, f"EXIF orientation {orientation} applied"


PIXEL_COUNTS = {"n_images_8bit_scaled": "to 8 bits", "n_images_exif_turned": "EXIF orientation"}


def pixel_counts(notes: Any) -> dict[str, float]:
    """A cell's counts of images whose decoding changed bit depth or orientation (its caption table's
    `pixel_note` column), for its costs; {} when none did."""
    notes = [str(n) for n in notes if isinstance(n, str) and n]
    counts = {key: float(sum(mark in n for n in notes)) for key, mark in PIXEL_COUNTS.items()}
    return {key: n for key, n in counts.items() if n}


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
        out = {"sample_id": row["sample_id"], "error": "", "image_width": 0, "image_height": 0,
               "pixel_note": ""}
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
                # a file: its bytes, read once and checked against the hash in the cell id
                source = _image_source(row) if row.get("arrow_column") else io.BytesIO(self.read(row))
                with Image.open(source) as img:
                    check_pixels(*img.size, self.max_pixels)
                    img, turned = upright(img)  # before resizing: width and height as the image stands
                    img, wide = to_8_bits(img)
                    out["pixel_note"] = "; ".join(filter(None, [wide, turned]))
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

    @staticmethod
    def read(row: dict[str, Any]) -> bytes:
        """The file's bytes, read once (a regular file only: `sweep.data.files`) and checked against the
        content hash the driver read when it loaded the dataset, which is in the cell id: bytes that
        differ would be captioned under the old content's id."""
        data = read_regular(str(row["path"]))
        expected = row.get("content_sha1")
        if expected is not None and sha1_bytes(data) != expected:
            was = f"sha1 {expected[:12]}" if expected else "missing"
            raise ChangedDuringRun(f"{row['path']} changed during the run (it was {was} when the dataset was "
                                   f"read, now sha1 {sha1_bytes(data)[:12]}): re-run to caption the new file")
        return data


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
                 max_pixels: int | None = PIL_MAX_IMAGE_PIXELS,
                 prepare: tuple[Preprocessor, str] | None = None) -> SampleBatch:
    """One batch of samples decoded (images, or a scene's frames) into the hosts' typed input: what one
    decode task of the pipeline returns. Failed samples are error rows of the batch, never an exception.
    `prepare` (the hosts' `CellStart.preprocessor` and the cell's prompt): the family's processor runs
    here too (`actors.prepare`), so the host only generates."""
    batch = decoded_batch(rows, video, max_side, max_pixels)
    if prepare is None:
        return batch
    from actors.prepare import prepare_batch

    return prepare_batch(batch, *prepare)


def decode_task(rows: list[dict[str, Any]], video: bool, max_side: int,
                max_pixels: int | None = PIL_MAX_IMAGE_PIXELS,
                prepare: tuple[Preprocessor, str] | None = None) -> SampleBatch:
    """`decode_batch` as a Ray task, in a worker process that runs only the sweep's tasks: one that loads a
    processor spares transformers' import of scikit-learn first (`actors.lean_process`)."""
    if prepare is not None:
        from actors.lean_process import spare_unused_imports

        spare_unused_imports()
    return decode_batch(rows, video, max_side, max_pixels, prepare)


def decoded_batch(rows: list[dict[str, Any]], video: bool, max_side: int,
                  max_pixels: int | None = PIL_MAX_IMAGE_PIXELS) -> SampleBatch:
    decode = DecodeFrames(max_side) if video else DecodeImage(max_side, max_pixels)
    outs = [decode(row) for row in rows]
    return SampleBatch(
        sample_ids=[str(o["sample_id"]) for o in outs],
        errors=[str(o["error"]) for o in outs],
        widths=[int(o["image_width"]) for o in outs],
        heights=[int(o["image_height"]) for o in outs],
        pixels=None if video else [o["image"] for o in outs],
        frames_jpeg=[list(o["frames_jpeg"]) for o in outs] if video else None,
        notes=[str(o.get("pixel_note", "")) for o in outs],
    )
