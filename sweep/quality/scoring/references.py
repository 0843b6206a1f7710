"""The references captions are scored against: read from a COCO captions file, their CIDEr document
frequencies over the whole reference set (cached by the file's sha256), and human leave-one-out."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
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


#: references tokenized per PTBTokenizer call when a reference set is large: each step one progress line
#: (a 1M-reference set took 88 s in one silent call) for about a second of JVM start-up per step
REFERENCES_PER_STEP = 200_000


def tokenize_in_steps(refs: Mapping[K, Sequence[str]], progress: Any = None,
                      step: int = REFERENCES_PER_STEP) -> dict[K, list[str]]:
    """`tokenize` of a large reference set in steps of about `step` references (whole images), calling
    `progress` with one line after each when there is more than one step; the same output as one call."""
    total = sum(len(caps) for caps in refs.values())
    if progress is None or total <= step:
        return tokenize(refs)
    out: dict[K, list[str]] = {}
    chunk: dict[K, Sequence[str]] = {}
    size = done = 0
    start = time.perf_counter()
    for key, caps in [*refs.items(), (None, None)]:
        if key is not None:
            chunk[key], size = caps, size + len(caps)
        if chunk and (size >= step or key is None):
            out.update(tokenize(chunk))
            done += size
            progress(f"CIDEr document frequencies: {done:,} of {total:,} references tokenized "
                     f"({time.perf_counter() - start:.0f} s; once per captions file, then cached)")
            chunk, size = {}, 0
    return out


def reference_set_frequencies(captions: Path, cache_dir: Path | None = None,
                              progress: Any = None) -> DocumentFrequencies:
    """Document frequencies from every reference of a COCO captions file (all its images).

    Tokenized once (PTBTokenizer; a large set in steps, `progress` told after each) and cached under
    `cache_dir`, keyed by the file's sha256: a later call, in this sweep or the next, reads the cache.
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
    tokenized = tokenize_in_steps({image_id: caps for image_id, caps in refs.items() if caps}, progress)
    source = f"{captions.name}, sha256 {digest[:12]}"
    df = DocumentFrequencies.from_tokenized(tokenized.values(), source=source, key=digest)
    if cache is not None:
        atomic_write_bytes(cache, df.to_bytes())
    return df
