"""One interface over the image dataset kinds (`dataset.kind`: coco, hf, karpathy): the samples a sweep
captions, and the file of every reference CIDEr's document frequencies come from. Video scenes are
detected on Ray (`sweep.data.video`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sweep.data.sources import Sample, load_coco_samples
from sweep.grid.config import DatasetConfig, HFDatasetConfig, KarpathyDatasetConfig

ImageDataset = DatasetConfig | HFDatasetConfig | KarpathyDatasetConfig


def load_image_samples(cfg: ImageDataset) -> list[Sample]:
    """The same kind of samples (ids, references, image path or Arrow row, content hash) from every kind."""
    if isinstance(cfg, HFDatasetConfig):
        from sweep.data.hf import load_hf_samples

        return load_hf_samples(cfg)
    if isinstance(cfg, KarpathyDatasetConfig):
        from sweep.data.karpathy import load_karpathy_samples

        return load_karpathy_samples(cfg)
    return load_coco_samples(cfg)


def all_references(cfg: ImageDataset) -> dict[int, list[str]]:
    """Image id -> references of every image of the dataset (or split), not only the chosen subset."""
    if isinstance(cfg, HFDatasetConfig):
        from sweep.data.hf import hf_references

        return hf_references(cfg)
    from sweep.data.karpathy import karpathy_references

    return karpathy_references(cfg)


def reference_captions_file(cfg: object, out_dir: Path) -> Path | None:
    """A COCO captions json of every reference of the dataset: the captions file itself for coco, one
    written under `out_dir/references/` (named by its content, written once) for hf and karpathy; None for
    video (no reference set: CIDEr falls back to the scored subset's)."""
    if isinstance(cfg, DatasetConfig):
        return cfg.captions
    if not isinstance(cfg, (HFDatasetConfig, KarpathyDatasetConfig)):
        return None
    from sweep.results.store import atomic_write_bytes

    refs = all_references(cfg)
    data = {"images": [{"id": i, "file_name": str(i)} for i in sorted(refs)],
            "annotations": [{"image_id": i, "id": n, "caption": c}
                            for n, (i, c) in enumerate((i, c) for i in sorted(refs) for c in refs[i])]}
    payload = json.dumps(data, separators=(",", ":")).encode()
    path = Path(out_dir) / "references" / f"{cfg.kind}-{hashlib.sha256(payload).hexdigest()[:16]}.json"
    if not path.is_file():
        atomic_write_bytes(path, payload)
    return path
