"""A new local MLflow sqlite store as a copy of an empty, already-migrated one.

Opening a sqlite file that has no tables makes MLflow create them and run every schema migration since
its first release: about 1.3 CPU-seconds (seconds of wall on a loaded machine) for each new output dir,
paid by every first run of a sweep. The migrated empty store depends only on the MLflow version, so it is
made once per version, kept in the cache (`$VLM_SWEEP_CACHE`, else ~/.cache/vlm-sweep), and copied. The
copy holds no experiment: MLflow makes its Default experiment when it opens the store, as for a new file,
so the store is the one MLflow would have made. Anything failing here leaves the store to MLflow."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("VLM_SWEEP_CACHE", Path.home() / ".cache" / "vlm-sweep")) / "mlflow-store"


def sqlite_path(uri: str) -> Path | None:
    """The file of a local `sqlite:///` tracking URI, else None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return None
    return Path(uri[len(prefix):])


def start_from_migrated_copy(uri: str) -> bool:
    """Before MLflow opens `uri`: a sqlite file that does not exist yet is created as a copy of the
    migrated empty store. True if it was; False (MLflow migrates as usual) otherwise."""
    db = sqlite_path(uri)
    if db is None or db.exists():
        return False
    partial = db.with_name(f".{db.name}.{os.getpid()}.part")
    try:
        template = _template()
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, partial)
        os.replace(partial, db)
        return True
    except Exception as err:  # a full disk, an unwritable cache, another MLflow: MLflow's own way
        log.info("MLflow store %s made by MLflow (no migrated copy: %s)", db, err)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return False


def _template() -> Path:
    """The migrated empty store of this MLflow version, made on first use (atomically: concurrent
    sweeps each make their own and the last rename wins, all alike)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    import mlflow

    path = cache_dir() / f"empty-mlflow-{mlflow.__version__}.db"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.unlink(missing_ok=True)
    engine = sqlalchemy.create_engine(f"sqlite:///{partial}")
    try:
        _initialize_tables(engine)  # what MLflow runs on a new file, without its Default experiment
        _verify_schema(engine)
    finally:
        engine.dispose()
    os.replace(partial, path)
    return path
