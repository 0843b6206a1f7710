"""A sweep's new MLflow sqlite store is a copy of a migrated empty one: the store MLflow would have made
(same tables, schema version, Default experiment where MLflow puts it), without the migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sweep.publish import sqlite_store
from sweep.publish.tracking import SweepTracker


def tables(db: Path) -> dict[str, list]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("select name from sqlite_master where type='table' order by name")]
        return {n: con.execute(f"select * from {n}").fetchall() for n in names}


def test_a_new_store_is_the_migrated_copy_and_equals_what_mlflow_makes(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("VLM_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # MLflow's Default experiment lives under the working directory
    mlflows = tmp_path / "by-mlflow" / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{mlflows}").search_experiments()
    ours = []
    for name in ("first", "second"):
        db = tmp_path / name / "mlflow.db"
        tracker = SweepTracker(f"sqlite:///{db}", "exp", tmp_path / name / "art", "s", {"a": 1})
        assert tracker.client.get_run(tracker.parent_id).data.params == {"a": "1"}
        ours.append(tables(db))
    template = sqlite_store.cache_dir() / next(p.name for p in sqlite_store.cache_dir().iterdir())
    made = template.stat().st_mtime_ns
    assert set(tables(template)["experiments"]) == set()  # no experiment: MLflow makes its Default one
    theirs = tables(mlflows)
    for got in ours:
        assert set(got) == set(theirs)
        assert got["alembic_version"] == theirs["alembic_version"]
        default = [e for e in got["experiments"] if e[1] == "Default"]
        assert [e[:3] for e in default] == [e[:3] for e in theirs["experiments"]]
        assert {e[1] for e in got["experiments"]} == {"Default", "exp"}
    # a third store: copied from the same template, which is not made again
    assert sqlite_store.start_from_migrated_copy(f"sqlite:///{tmp_path / 'third' / 'mlflow.db'}")
    assert template.stat().st_mtime_ns == made


def test_an_existing_store_or_another_backend_is_left_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("VLM_SWEEP_CACHE", str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")  # there already: never replaced
    assert not sqlite_store.start_from_migrated_copy(f"sqlite:///{db}") and db.read_bytes() == b""
    assert not sqlite_store.start_from_migrated_copy("http://127.0.0.1:5000")
    assert not sqlite_store.start_from_migrated_copy("sqlite:///:memory:")
    assert not (tmp_path / "cache").exists()


def test_an_unwritable_cache_falls_back_to_mlflows_migrations(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("VLM_SWEEP_CACHE", str(blocker))
    db = tmp_path / "out" / "mlflow.db"
    assert not sqlite_store.start_from_migrated_copy(f"sqlite:///{db}")
    assert not db.exists() and not list((tmp_path / "out").glob(".*part"))
    tracker = SweepTracker(f"sqlite:///{db}", "exp", tmp_path / "art", "s", {})
    assert tracker.client.get_experiment(tracker.experiment_id).name == "exp"


@pytest.mark.parametrize("uri", ["sqlite:////abs/mlflow.db", "sqlite:///rel/mlflow.db"])
def test_sqlite_path_of_a_tracking_uri(uri):
    assert sqlite_store.sqlite_path(uri) == Path(uri[len("sqlite:///"):])
