"""Dataset sources: which samples a sweep captions and their human references."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from sweep.data.files import UnreadableFile, resolve_inside, sha1_regular
from sweep.grid.config import DatasetConfig, ImageSubsetConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    sample_id: str
    image_id: int
    path: str
    references: tuple[str, ...]
    content_sha1: str  # of the file bytes, "" when the file is missing
    # video scenes only: which part of which video, and the frame times the model sees
    video_id: str = ""
    scene_index: int = -1
    start_s: float = 0.0
    end_s: float = 0.0
    video_duration_s: float = 0.0
    frame_times: tuple[float, ...] = ()
    error: str = ""  # the video could not be read: the sample becomes an error row
    # Hugging Face datasets only: `path` is an Arrow file of the dataset, the image is this row's cell of
    # this (Image feature) column, decoded in the decode tasks (sweep.execute.stages)
    arrow_row: int = -1
    arrow_column: str = ""

    def to_row(self) -> dict:
        row = asdict(self)
        row["references"] = list(self.references)
        row["frame_times"] = list(self.frame_times)
        return row


class DatasetError(ValueError):
    """The dataset files exist but do not hold what the grid says."""


def file_sha1(path: Path) -> str:
    """sha1 of a regular file's bytes, "" when it is missing or not a regular file (never opens a FIFO)."""
    try:
        return sha1_regular(str(path))
    except OSError:
        return ""


def image_file(path: Path, root: Path) -> tuple[str, str, str]:
    """(resolved path, sha1 of its bytes, why it cannot be read): only a regular file inside `root` is
    read (`sweep.data.files`); a missing one keeps sha1 "" and no reason (the decode stage's error row)."""
    try:
        resolved = resolve_inside(path, root)
    except UnreadableFile as err:
        return str(path), "", f"not read: {err}"
    try:
        return resolved, sha1_regular(resolved), ""
    except FileNotFoundError:
        return resolved, "", ""
    except OSError as err:  # UnreadableFile: a FIFO, a device, a directory, no permission
        return resolved, "", f"not read: {err}"


def _coco_id(entry: object, key: str, where: str) -> int:
    """An entry's integer id (an int, or a string of digits as some exports write it)."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where} is not an object")
    if key not in entry:
        raise DatasetError(f"{where} has no '{key}'")
    value = entry[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise DatasetError(f"{where}.{key} must be an integer, got {value!r}")


def load_coco_samples(cfg: DatasetConfig) -> list[Sample]:
    """Images with at least one reference caption, optionally a seeded subset of `limit`.

    Missing image files are kept (the decode stage turns them into error rows) so one bad file
    never hides the rest of the dataset; a dataset none of whose images exists (or has bytes) is refused.
    """
    try:
        data = json.loads(cfg.captions.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"dataset.captions: {cfg.captions} is not UTF-8 text (byte {err.start}: "
                           f"{err.reason}); COCO json is UTF-8") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"dataset.captions: cannot read {cfg.captions}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"dataset.captions: {cfg.captions} lacks the COCO 'images'/'annotations' lists")
    refs: dict[int, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"dataset.captions: {cfg.captions}: annotations[{i}]"
        image_id = _coco_id(ann, "image_id", where)
        caption = ann.get("caption")
        if not isinstance(caption, str):
            got = "null" if caption is None else f"{type(caption).__name__} {caption!r}"
            raise DatasetError(f"{where}.caption must be a string, got {got} (image_id {image_id})")
        refs.setdefault(image_id, []).append(caption.strip())
    for i, img in enumerate(data["images"]):
        where = f"dataset.captions: {cfg.captions}: images[{i}]"
        image_id = _coco_id(img, "id", where)
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise DatasetError(f"{where} (id {image_id}) has no 'file_name'")
    images = choose_subset([img for img in data["images"] if int(img["id"]) in refs], cfg,
                           lambda img: int(img["id"]))
    if not images:
        raise DatasetError(f"dataset.captions: {cfg.captions} has no image with a caption")
    samples = []
    for img in images:
        path, sha1, unreadable = image_file(cfg.images / img["file_name"], cfg.images)
        samples.append(
            Sample(
                sample_id=str(img["id"]),
                image_id=int(img["id"]),
                path=path,
                references=tuple(refs[int(img["id"])]),
                content_sha1=sha1,
                error=unreadable,
            )
        )
    require_some_image(samples, "dataset.images", cfg.images)
    return samples


def choose_subset(entries: list[T], cfg: ImageSubsetConfig, image_id: Callable[[T], int]) -> list[T]:
    """The entries (in file order) a sweep captions, sorted by image id: all of them, or `limit` of them,
    the first of the file or a seeded random subset. Every image source chooses through here, so the
    same images in the same order give the same subset whatever the file format."""
    ordered = sorted(entries, key=image_id)
    if cfg.limit is None or cfg.limit >= len(entries):
        return ordered
    if cfg.subset == "first":
        chosen = entries[: cfg.limit]
    else:
        chosen = random.Random(cfg.seed).sample(ordered, cfg.limit)
    return sorted(chosen, key=image_id)


def require_some_image(samples: list[Sample], field: str, root: Path) -> None:
    """Refuse a dataset none of whose images is a non-empty file (a wrong images folder)."""
    if not any(not s.error and _is_image_file(Path(s.path)) for s in samples):
        raise DatasetError(f"{field}: none of the {len(samples)} images to caption is a non-empty "
                           f"file under {root} (e.g. {samples[0].path}); check {field}")


def _is_image_file(path: Path) -> bool:
    """Cheap: the file exists and is not empty (decoding is the pipeline's, an error row per bad image)."""
    try:
        return path.stat().st_size > 0 and path.is_file()  # a FIFO or device: size 0 or not a file
    except OSError:
        return False


def dataset_fingerprint(samples: list[Sample], image_max_side: int) -> str:
    """Changes when any input image, the subset, or the preprocessing changes."""
    h = hashlib.sha256(f"max_side={image_max_side}".encode())
    for s in samples:
        h.update(f"{s.sample_id}:{s.content_sha1};".encode())
    return h.hexdigest()[:16]
