"""Hugging Face `datasets` datasets as samples (lmms-eval's COCO-Caption2017, NoCaps, Flickr30k, TextCaps...).

Loaded offline through `datasets` (a hub id from the local cache, a `save_to_disk` folder, a folder of data
files, or parquet files), which keeps the split as Arrow files on disk. A sample points at its row of one
of those files (`Sample.path`, `arrow_row`, `arrow_column`): the decode tasks read and decode that one
image (`sweep.execute.stages`), so no image is decoded on the driver, which only streams the bytes once to
hash them (the cell id depends on the images' content, as for every source).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.data.sources import DatasetError, Sample, choose_subset, file_sha1
from sweep.grid.config import HFDatasetConfig

_TABLES: OrderedDict[str, Any] = OrderedDict()  # per process: memory-mapped Arrow tables, a few at a time
_KEPT_TABLES = 4


def arrow_table(path: str) -> Any:
    """The Arrow table of one of a dataset's files, memory-mapped (nothing read until a row is asked)."""
    import pyarrow as pa

    if path not in _TABLES:
        source = pa.memory_map(path)
        try:
            table = pa.ipc.open_stream(source).read_all()  # what `datasets` writes
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(source).read_all()
        _TABLES[path] = table
        while len(_TABLES) > _KEPT_TABLES:
            _TABLES.popitem(last=False)
    _TABLES.move_to_end(path)
    return _TABLES[path]


def image_cell(path: str, row: int, column: str) -> dict:
    """One cell of an Image feature column: {"bytes": ..., "path": ...} (either may be None)."""
    value = arrow_table(path).column(column)[row].as_py()
    if not isinstance(value, dict):
        raise ValueError(f"row {row} of column '{column}' of {path} is not an image ({type(value).__name__})")
    return value


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """`datasets` and the hub client read their offline flags at import: set both for this load only."""
    import datasets
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a dataset repository in the Hugging Face hub cache, or None."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except Exception:  # not in the cache (or not a repo id at all): datasets' own cache is tried next
        return None


def open_split(cfg: HFDatasetConfig) -> Any:
    """The `datasets.Dataset` of `cfg.split`, loaded offline; a DatasetError naming the field otherwise."""
    import datasets

    datasets.disable_progress_bars()  # the sweep's terminal shows its own progress
    local = Path(cfg.path).expanduser()
    cache = str(cfg.cache_dir) if cfg.cache_dir else None
    where = f"dataset.path: {cfg.path!r} (split {cfg.split!r})"
    try:
        with _offline():
            saved = any((local / name).is_file() for name in ("state.json", "dataset_dict.json"))
            if local.is_dir() and saved:
                found = datasets.load_from_disk(str(local))
                if isinstance(found, datasets.DatasetDict):
                    if cfg.split not in found:
                        raise DatasetError(f"dataset.split: {cfg.path} has no split '{cfg.split}' "
                                           f"(its splits: {', '.join(found)})")
                    found = found[cfg.split]
                return found
            if local.suffix == ".parquet" or "*" in cfg.path:
                if "*" not in cfg.path and not local.is_file():
                    raise DatasetError(f"{where}: file not found")
                return datasets.load_dataset("parquet", data_files={cfg.split: str(local)}, split=cfg.split,
                                             cache_dir=cache)
            if local.is_dir():
                return datasets.load_dataset(str(local), split=cfg.split, cache_dir=cache)
            # a hub id: the files `hf download` left in the hub cache, else what an earlier online
            # load_dataset left in the datasets cache
            snapshot = _hub_snapshot(cfg.path)
            return datasets.load_dataset(str(snapshot) if snapshot else cfg.path, split=cfg.split,
                                         cache_dir=cache)
    except DatasetError:
        raise
    except Exception as err:  # datasets raises many kinds: not cached, no such split, unreadable files
        hint = "" if local.exists() else (" (a hub id must already be in the local cache: download it "
                                          f"first: hf download --repo-type dataset {cfg.path})")
        raise DatasetError(f"{where}: cannot load it offline: {type(err).__name__}: {err}{hint}") from None


@dataclass(frozen=True)
class _Row:
    image_id: int
    sample_id: str
    references: tuple[str, ...]
    file: str
    row: int


def _check_columns(ds: Any, cfg: HFDatasetConfig) -> None:
    import datasets

    existing = list(ds.column_names)
    for field in ("image_column", "references_column", "id_column"):
        name = getattr(cfg, field)
        if name is not None and name not in existing:
            raise DatasetError(f"dataset.{field}: no column '{name}' in {cfg.path} (split {cfg.split}); its "
                               f"columns: {', '.join(existing)}")
    feature = ds.features[cfg.image_column]
    if not isinstance(feature, datasets.Image):
        raise DatasetError(f"dataset.image_column: column '{cfg.image_column}' of {cfg.path} is a "
                           f"{type(feature).__name__}, not an Image feature")


def _files(ds: Any, cfg: HFDatasetConfig) -> list[str]:
    """The Arrow files holding the split, in row order."""
    if getattr(ds, "_indices", None) is not None:
        raise DatasetError(f"dataset.path: {cfg.path} is a selection of another dataset (an indices "
                           "mapping); save it with flatten_indices() first")
    files = [f["filename"] for f in ds.cache_files]
    if not files or sum(arrow_table(f).num_rows for f in files) != len(ds):
        raise DatasetError(f"dataset.path: {cfg.path} is not backed by Arrow files on disk")
    return files


def _ids(value: object, position: int) -> tuple[str, int]:
    """(sample id, integer image id): an integer, or a name whose digits are one (000000397133.jpg, as
    lmms-lab writes COCO's), else the name with the row position as image id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), value
    text = str(value)
    stem = Path(text).stem
    if stem.isdigit():
        return str(int(stem)), int(stem)
    return text, position


def _references(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value)
    raise DatasetError(f"{where} must be a string or a list of strings, got {value!r}"[:300])


def read_rows(cfg: HFDatasetConfig) -> list[_Row]:
    """Every row of the split with at least one reference (ids and references only), in row order."""
    ds = open_split(cfg)
    _check_columns(ds, cfg)
    rows, position = [], 0
    for file in _files(ds, cfg):
        table = arrow_table(file)
        refs = table.column(cfg.references_column).to_pylist()
        ids = table.column(cfg.id_column).to_pylist() if cfg.id_column else [None] * table.num_rows
        for k in range(table.num_rows):
            where = f"dataset.references_column: row {position} of {cfg.path} ('{cfg.references_column}')"
            references = _references(refs[k], where)
            sample_id, image_id = _ids(ids[k], position) if cfg.id_column else (str(position), position)
            if references:
                rows.append(_Row(image_id, sample_id, references, file, k))
            position += 1
    if not rows:
        raise DatasetError(f"dataset.references_column: no row of {cfg.path} (split {cfg.split}) has a "
                           f"reference in column '{cfg.references_column}'")
    seen: dict[str, int] = {}
    for r in rows:
        seen[r.sample_id] = seen.get(r.sample_id, 0) + 1
    dupes = [s for s, n in seen.items() if n > 1][:5]
    if dupes:
        raise DatasetError(f"dataset.id_column: ids repeated in column '{cfg.id_column}' of {cfg.path}: "
                           f"{dupes} (set id_column: null to number the rows)")
    return rows


def _content_sha1(row: _Row, column: str) -> str:
    try:
        cell = image_cell(row.file, row.row, column)
    except (OSError, ValueError):
        return ""
    if cell.get("bytes"):
        return hashlib.sha1(cell["bytes"]).hexdigest()
    return file_sha1(Path(cell["path"])) if cell.get("path") else ""


def load_hf_samples(cfg: HFDatasetConfig) -> list[Sample]:
    """The split's rows with references, optionally a subset of `limit` (as every source chooses)."""
    chosen = choose_subset(read_rows(cfg), cfg, lambda r: r.image_id)
    samples = [Sample(sample_id=r.sample_id, image_id=r.image_id, path=r.file, references=r.references,
                      content_sha1=_content_sha1(r, cfg.image_column), arrow_row=r.row,
                      arrow_column=cfg.image_column) for r in chosen]
    if not any(s.content_sha1 for s in samples):
        raise DatasetError(f"dataset.image_column: no image of column '{cfg.image_column}' of {cfg.path} "
                           "has bytes or a readable file")
    return samples


def hf_references(cfg: HFDatasetConfig) -> dict[int, list[str]]:
    """Every reference of the split (CIDEr's reference-set document frequencies)."""
    return {r.image_id: list(r.references) for r in read_rows(cfg)}
