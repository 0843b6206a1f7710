"""The references captions are scored against: read from a COCO captions file, their CIDEr document
frequencies over the whole reference set (cached by the file's sha256), and human leave-one-out."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sweep.quality.scoring.cider import DF_CACHE_VERSION, DocumentFrequencies
from sweep.quality.scoring.tokenizer import tokenize
from sweep.results.store import atomic_write_bytes

K = TypeVar("K", bound=Hashable)


def leave_one_out(references: Mapping[K, list[str]]) -> tuple[dict[K, str], dict[K, list[str]]]:
    """Per image, the first reference becomes the prediction and the others its references."""
    predictions: dict[K, str] = {}
    rest: dict[K, list[str]] = {}
    for image_id, refs in references.items():
        if isinstance(refs, str) or len(refs) < 2:
            raise ValueError(f"leave_one_out needs >= 2 references per image; image {image_id!r} has fewer")
        predictions[image_id] = refs[0]
        rest[image_id] = list(refs[1:])
    return predictions, rest


def mean_caption_length(captions: Iterable[str]) -> float:
    """Mean number of whitespace-separated words; NaN for no captions."""
    lengths = [len(c.split()) for c in captions]
    return sum(lengths) / len(lengths) if lengths else math.nan


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def coco_references(data: Mapping[str, Any]) -> dict[int, list[str]]:
    """Image id -> its reference captions, read from a COCO captions json as `sweep.data.sources` reads
    them."""
    refs: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        refs.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
    return refs


def reference_set_frequencies(captions: Path, cache_dir: Path | None = None) -> DocumentFrequencies:
    """Document frequencies from every reference of a COCO captions file (all its images).

    Tokenized once (PTBTokenizer, one JVM start) and cached under `cache_dir`, keyed by the file's
    sha256: a later call, in this sweep or the next, reads the cache instead.
    """
    captions = Path(captions)
    digest = file_sha256(captions)
    cache = Path(cache_dir) / f"cider-df-{digest[:32]}-v{DF_CACHE_VERSION}.json.gz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            cached = DocumentFrequencies.from_bytes(cache.read_bytes())
            if cached.key == digest:
                return cached
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged or outdated cache is recomputed and replaced
    refs = coco_references(json.loads(captions.read_bytes()))
    tokenized = tokenize({image_id: caps for image_id, caps in refs.items() if caps})
    source = f"{captions.name}, sha256 {digest[:12]}"
    df = DocumentFrequencies.from_tokenized(tokenized.values(), source=source, key=digest)
    if cache is not None:
        atomic_write_bytes(cache, df.to_bytes())
    return df
