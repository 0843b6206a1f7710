"""The result store under the sweep's output dir: one folder per cell id, files written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from sweep.cells import Cell


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def cell_dir(self, cell_id: str) -> Path:
        return self.root / "cells" / cell_id

    def captions_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "captions.parquet"

    def config_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "cell.json"

    def write_cell(self, cell: Cell, table: pd.DataFrame) -> Path:
        """Config first, then the table: a table on disk always has its config beside it."""
        atomic_write_bytes(self.config_path(cell.cell_id), cell.model_dump_json(indent=2).encode())
        path = self.captions_path(cell.cell_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".captions.", suffix=".parquet")
        os.close(fd)
        try:
            table.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def failure_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "failure.json"

    def write_failure(self, cell_id: str, reason: str, detail: str) -> None:
        payload = json.dumps({"reason": reason, "detail": detail}, indent=2).encode()
        atomic_write_bytes(self.failure_path(cell_id), payload)

    def read_failure(self, cell_id: str) -> str | None:
        try:
            return json.loads(self.failure_path(cell_id).read_text())["reason"]
        except (OSError, ValueError, KeyError):
            return None

    def read_captions(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.captions_path(cell_id))
