"""Karpathy split files (dataset_coco.json, dataset_flickr30k.json) as samples: the splits captioning
papers report CIDEr on (COCO Karpathy test: 5,000 images)."""

from __future__ import annotations

import json
from pathlib import Path

from sweep.data.sources import DatasetError, Sample, choose_subset, image_file, require_some_image
from sweep.grid.config import KarpathyDatasetConfig


def _image_id(entry: dict, where: str) -> int:
    """COCO's id where the file has it (cocoid: the same ids as the COCO captions json), else imgid."""
    for key in ("cocoid", "imgid"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    raise DatasetError(f"{where} has no integer 'cocoid' or 'imgid'")


def _references(entry: dict, where: str) -> tuple[str, ...]:
    sentences = entry.get("sentences")
    if not isinstance(sentences, list):
        raise DatasetError(f"{where}.sentences must be a list of {{raw: ...}}")
    refs = []
    for k, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str):
            raise DatasetError(f"{where}.sentences[{k}].raw must be a string, got {raw!r}")
        refs.append(raw.strip())
    return tuple(refs)


def read_split(cfg: KarpathyDatasetConfig) -> list[tuple[int, str, tuple[str, ...]]]:
    """(image id, relative image path, references) of every image of the chosen split, in file order."""
    where_file = f"dataset.split_file: {cfg.split_file}"
    try:
        data = json.loads(cfg.split_file.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{where_file}: cannot read it as UTF-8 json: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{where_file} has no 'images' list (a Karpathy split file has one)")
    entries, splits = [], set()
    for i, entry in enumerate(data["images"]):
        where = f"{where_file}: images[{i}]"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where} is not an object")
        split = entry.get("split")
        if not isinstance(split, str):
            raise DatasetError(f"{where} has no 'split' (test, val, train or restval)")
        splits.add(split)
        if split != cfg.split:
            continue
        name = entry.get("filename")
        if not isinstance(name, str) or not name:
            raise DatasetError(f"{where} has no 'filename'")
        folder = entry.get("filepath") or ""
        refs = _references(entry, where)
        if refs:
            entries.append((_image_id(entry, where), str(Path(str(folder)) / name), refs))
    if not entries:
        raise DatasetError(f"dataset.split: {where_file} has no image with sentences in split "
                           f"'{cfg.split}' (its splits: {', '.join(sorted(splits)) or 'none'})")
    ids = [e[0] for e in entries]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"{where_file}: split '{cfg.split}' repeats image ids {dupes}")
    return entries


def load_karpathy_samples(cfg: KarpathyDatasetConfig) -> list[Sample]:
    """The split's images with their sentences, optionally a subset of `limit` (as every source chooses)."""
    chosen = choose_subset(read_split(cfg), cfg, lambda e: e[0])
    samples = []
    for image_id, relative, refs in chosen:
        # only a regular file inside the images folder is read (sweep.data.files): else an error row
        path, sha1, unreadable = image_file(cfg.images / relative, cfg.images)
        samples.append(Sample(sample_id=str(image_id), image_id=image_id, path=path, references=refs,
                              content_sha1=sha1, error=unreadable))
    require_some_image(samples, "dataset.images", cfg.images)
    return samples


def karpathy_references(cfg: KarpathyDatasetConfig) -> dict[int, list[str]]:
    """Every reference of the split (CIDEr's reference-set document frequencies)."""
    return {image_id: list(refs) for image_id, _, refs in read_split(cfg)}
