"""Issue 30, cases 1-4: inputs never overwritten, pixels as the file means them, the bytes decoded are the
bytes hashed, only regular files read (cases 5-8: test_break_it_again_runs.py). No Ray."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from sweep.run import main

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"


def _dataset(root: Path, n: int = 3, captions_name: str = "captions.json") -> tuple[Path, Path]:
    data = json.loads((SHAPES / "captions.json").read_text())
    images = data["images"][:n]
    ids = {img["id"] for img in images}
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for img in images:
        shutil.copy(SHAPES / "images" / img["file_name"], folder / img["file_name"])
    captions = root / captions_name
    captions.write_text(json.dumps({"images": images,
                                    "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))
    return captions, folder


def _grid_file(tmp_path: Path, captions: Path, images: Path, out: Path, **extra) -> Path:
    grid = {"name": "again", "dataset": {"captions": str(captions), "images": str(images)},
            "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small"}],
            "precisions": ["fp32"], "max_new_tokens": [8], "output_dir": str(out), **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


# --- 1: inputs are never overwritten -------------------------------------------------------------------

@pytest.mark.parametrize("dry", [True, False])
def test_an_output_dir_holding_the_captions_file_among_the_store_paths_is_refused(tmp_path, capsys, dry):
    captions, images = _dataset(tmp_path, captions_name="samples.json")
    before = captions.read_bytes()
    grid = _grid_file(tmp_path, captions, images, tmp_path)
    assert main([str(grid), *(["--dry-run"] if dry else [])]) == 2
    err = capsys.readouterr().err
    assert "dataset.captions" in err and str(captions) in err and f"output_dir {tmp_path}" in err
    assert captions.read_bytes() == before
    assert not (tmp_path / "cells").exists() and not (tmp_path / "sweep.log").exists()


def test_an_output_dir_inside_the_images_folder_or_whose_cells_hold_it_is_refused(tmp_path, capsys):
    captions, images = _dataset(tmp_path)
    assert main([str(_grid_file(tmp_path, captions, images, images / "out")), "--dry-run"]) == 2
    assert "inside dataset.images" in capsys.readouterr().err
    assert main([str(_grid_file(tmp_path, captions, images, images)), "--dry-run"]) == 2
    assert "inside dataset.images" in capsys.readouterr().err
    cells = tmp_path / "out" / "cells"
    cells.mkdir(parents=True)
    moved = shutil.move(str(images), str(cells / "images"))
    assert main([str(_grid_file(tmp_path, captions, Path(moved), tmp_path / "out")), "--dry-run"]) == 2
    assert "would overwrite dataset.images" in capsys.readouterr().err
    # a dataset beside the output dir (the usual layout) is fine
    assert main([str(_grid_file(tmp_path, captions, Path(moved), tmp_path / "elsewhere")), "--dry-run"]) == 0


# --- 2: pixels are what the file means -----------------------------------------------------------------

def _gradient_16bit(path: Path) -> None:
    import numpy as np
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(path)  # a 16-bit grayscale PNG, 0-65535 left to right


def _portrait_jpeg(path: Path) -> None:
    """640x426 as stored, EXIF orientation 6: a portrait 426x640 photo; the stored left half is red."""
    from PIL import Image

    img = Image.new("RGB", (640, 426), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 320, 426))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, exif=exif.tobytes(), quality=95)


def test_16_bit_and_32_bit_images_are_scaled_to_8_bits_and_noted(tmp_path):
    import numpy as np
    from PIL import Image

    from sweep.execute.stages import decode_batch, pixel_counts

    _gradient_16bit(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    floats = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (32, 1))
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tiff")
    Image.new("RGB", (64, 32), (10, 20, 30)).save(tmp_path / "rgb.png")
    rows = [{"sample_id": n, "path": str(tmp_path / n), "frame_times": [], "error": ""}
            for n in ("g16.png", "f.tiff", "rgb.png")]
    batch = decode_batch(rows, video=False, max_side=64)
    assert batch.errors == ["", "", ""]
    for i in (0, 1):  # a gradient, not white: black at the left, white at the right, mid-grey on average
        pixels = np.asarray(batch.pixels[i], dtype=float)
        assert 110 < pixels.mean() < 145 and pixels.std() > 60
        assert pixels[:, 0].max() <= 5 and pixels[:, -1].min() >= 250
        assert "scaled" in batch.notes[i] and "to 8 bits" in batch.notes[i]
    assert batch.notes[0].startswith("mode I") and "mode F" in batch.notes[1]
    assert batch.notes[2] == "" and np.asarray(batch.pixels[2])[0, 0].tolist() == [10, 20, 30]
    assert pixel_counts(batch.notes) == {"n_images_8bit_scaled": 2.0}


def test_exif_orientation_is_applied_before_resizing_and_the_size_recorded_after(tmp_path):
    import numpy as np

    from sweep.execute.pipeline import caption_rows
    from sweep.execute.stages import decode_batch, pixel_counts
    from tests.test_token_budgets import PlainCaptioner, plain_host

    _portrait_jpeg(tmp_path / "portrait.jpg")
    rows = [{"sample_id": "p", "path": str(tmp_path / "portrait.jpg"), "frame_times": [], "error": ""}]
    batch = decode_batch(rows, video=False, max_side=64)
    assert (batch.widths[0], batch.heights[0]) == (426, 640)  # upright: portrait
    pixels = np.asarray(batch.pixels[0])
    assert pixels.shape[:2] == (64, 43)  # resized after turning: the long side is the height
    top, bottom = pixels[:20].reshape(-1, 3).mean(0), pixels[-20:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and bottom[2] > 200  # orientation 6: the stored left (red) half is now on top
    assert batch.notes == ["EXIF orientation 6 applied"]
    # the note and the upright size reach the cell's caption table, and its costs count it
    from actors.contract import GenerationSettings

    result = plain_host(PlainCaptioner()).caption(batch, GenerationSettings(prompt="", max_new_tokens=4), "c")
    table = caption_rows(result).images
    assert table.loc[0, "pixel_note"] == "EXIF orientation 6 applied"
    assert (table.loc[0, "image_width"], table.loc[0, "image_height"]) == (426, 640)
    assert pixel_counts(table["pixel_note"]) == {"n_images_exif_turned": 1.0}


# --- 3: the bytes decoded are the bytes hashed -----------------------------------------------------------

def test_an_image_changed_after_the_dataset_was_read_is_an_error_row_not_a_caption(tmp_path):
    from sweep.data.sources import load_coco_samples
    from sweep.execute.pipeline import decode_rows
    from sweep.execute.stages import decode_batch
    from sweep.grid.config import DatasetConfig

    captions, images = _dataset(tmp_path)
    samples = load_coco_samples(DatasetConfig(captions=captions, images=images))
    first, second = Path(samples[0].path), Path(samples[1].path)
    shutil.copy(second, first)  # replaced mid-run: the driver hashed the old bytes
    batch = decode_batch(decode_rows(samples), video=False, max_side=32)
    assert batch.errors[0].startswith("ChangedDuringRun: ") and "changed during the run" in batch.errors[0]
    assert batch.errors[1:] == ["", ""] and batch.widths[0] == 0
    # a file missing when the dataset was read and present now: changed too
    rows = decode_rows(samples)
    rows[1]["content_sha1"] = ""
    assert "it was missing" in decode_batch(rows, video=False, max_side=32).errors[1]


# --- 4: only regular files are read ---------------------------------------------------------------------

def _special_files(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A dataset whose captions name a symlink loop, a symlink to /dev/zero, a FIFO, a directory, a path
    outside the images folder and a symlink to an image inside it; file name -> the reason expected."""
    import os

    captions, images = _dataset(tmp_path, n=1)
    data = json.loads(captions.read_text())
    good = data["images"][0]
    (images / "loop-a").symlink_to(images / "loop-b")
    (images / "loop-b").symlink_to(images / "loop-a")
    (images / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(images / "fifo.jpg")
    (images / "folder.jpg").mkdir()
    (tmp_path / "secret.txt").write_text("not an image")
    (images / "link.jpg").symlink_to(images / good["file_name"])
    expected = {"loop-a": "symlink loop", "zero.jpg": "outside dataset.images", "fifo.jpg": "a FIFO",
                "folder.jpg": "a directory", "../secret.txt": "outside dataset.images", "link.jpg": ""}
    for i, name in enumerate(expected, start=90000):
        data["images"].append({"id": i, "file_name": name})
        data["annotations"].append({"id": i, "image_id": i, "caption": f"special {name}"})
    captions.write_text(json.dumps(data))
    return captions, images, expected


@contextlib.contextmanager
def _no_hang(seconds: int):
    """A read that blocks (a FIFO opened for reading) fails the test instead of hanging the suite."""
    def hung(*_):
        raise TimeoutError(f"still running after {seconds} s: something blocked")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def test_special_files_named_in_the_captions_are_error_rows_with_the_reason(tmp_path):
    from sweep.data.sources import load_coco_samples
    from sweep.execute.pipeline import decode_rows
    from sweep.execute.stages import decode_batch
    from sweep.grid.config import DatasetConfig

    captions, images, expected = _special_files(tmp_path)
    with _no_hang(60):
        samples = load_coco_samples(DatasetConfig(captions=captions, images=images))  # no crash either
    by_id = {s.image_id: s for s in samples}
    for i, (name, why) in enumerate(expected.items(), start=90000):
        assert why in by_id[i].error and (by_id[i].error.startswith("not read: ") or not why), name
        assert (by_id[i].content_sha1 == "") == bool(why), name
    good = next(s for s in samples if not 90000 <= s.image_id < 90010)
    assert by_id[90005].content_sha1 == good.content_sha1  # a symlink inside: resolved and read
    with _no_hang(60):
        batch = decode_batch(decode_rows(samples), video=False, max_side=32)
    errors = dict(zip(batch.sample_ids, batch.errors, strict=True))
    assert errors[good.sample_id] == "" and errors["90005"] == ""
    for i, (_, why) in enumerate(expected.items(), start=90000):
        assert why in errors[str(i)]


def test_a_fifo_swapped_in_after_the_dataset_was_read_is_never_opened(tmp_path):
    import os

    from sweep.execute.stages import decode_batch

    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)
    rows = [{"sample_id": "f", "path": str(fifo), "frame_times": [], "error": "", "content_sha1": "ab"}]
    with _no_hang(30):
        assert "a FIFO, not a regular file" in decode_batch(rows, video=False, max_side=32).errors[0]


def test_special_files_in_a_grid_are_planned_not_a_traceback(tmp_path, capsys):
    captions, images, _ = _special_files(tmp_path)
    with _no_hang(120):
        assert main([str(_grid_file(tmp_path, captions, images, tmp_path / "out")), "--dry-run"]) == 0
    assert "7 images" in capsys.readouterr().out
