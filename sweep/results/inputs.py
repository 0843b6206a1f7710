"""The store never writes over the sweep's inputs: an output dir is refused (exit 2, before anything starts,
in --dry-run too) when one of the store's own paths is, or holds, the captions file, the images or videos
folder or a video manifest, or when the output dir lies inside the images folder (the store's files would
sit among the images it reads)."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from sweep.results.lock import OutputDirError

#: what a sweep writes directly under its output dir (files and folders; a glob for the plots)
STORE_NAMES = (
    "samples.json", "results.csv", "pareto_front.csv", "report.html", "mlflow.db", "sweep.log", "cells",
    "cells-archive", "tune", "mlartifacts", "scene-cache", "df-cache", ".sweep.lock", ".report.sha256",
    ".mlflow-extras.json", "pareto_cider_vs_*.png",
)


def dataset_inputs(dataset: Any) -> dict[str, Path]:
    """The dataset's input paths by grid field (the ones that are set)."""
    names = ("captions", "images", "videos", "manifest")
    return {f"dataset.{n}": Path(getattr(dataset, n)) for n in names if getattr(dataset, n, None) is not None}


def store_path_of(out: Path, path: Path) -> str | None:
    """The store's own name under `out` that is `path` or one of its parents, else None."""
    try:
        first = path.relative_to(out).parts[0]
    except (ValueError, IndexError):
        return None
    return next((name for name in STORE_NAMES if fnmatch.fnmatchcase(first, name)), None)


def check_inputs_kept(output_dir: Path, dataset: Any) -> None:
    """Raise OutputDirError naming the output dir and the input it would overwrite (or sit inside)."""
    out = Path(output_dir).resolve()
    for field, raw in dataset_inputs(dataset).items():
        path = raw.resolve()
        name = store_path_of(out, path)
        if name is not None:
            raise OutputDirError(
                f"output_dir {out}: the sweep writes {out / name}, which would overwrite {field} {path}; "
                "choose another output_dir (or move the input)")
        if field in ("dataset.images", "dataset.videos") and (out == path or path in out.parents):
            raise OutputDirError(
                f"output_dir {out}: is inside {field} {path}; the sweep's files would sit among its "
                "inputs: choose an output_dir outside it")


#: characters a sqlite URI reads as its own (`?` a query, `#` a fragment, `%` an escape): MLflow's default
#: store under an output dir with one of them would land elsewhere (`a?b/mlflow.db` is `a`)
URI_CHARACTERS = "?#%"


def check_sqlite_path(output_dir: Path, tracking_uri: str | None) -> None:
    """Raise OutputDirError when the default MLflow store (`<output_dir>/mlflow.db`, a sqlite URI) would
    not be where it is meant to be."""
    out = str(Path(output_dir).resolve())
    bad = sorted({ch for ch in out if ch in URI_CHARACTERS})
    if tracking_uri is None and bad:
        raise OutputDirError(
            f"output_dir {out}: contains {' '.join(repr(c) for c in bad)}, which the sqlite URI of MLflow's "
            "store (<output_dir>/mlflow.db) would read as its own syntax and put the database elsewhere; "
            "choose an output_dir without '?', '#' or '%', or set tracking.uri")


def check_store_paths(grid: Any) -> None:
    """Every check of where the store writes, before anything starts (a run and --dry-run alike)."""
    check_inputs_kept(grid.output_dir, grid.dataset)
    check_sqlite_path(grid.output_dir, grid.tracking.uri)
