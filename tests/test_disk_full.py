"""A disk that fills mid-run stops the sweep cleanly: the path named, what is on disk kept, and a re-run
after space is freed resumes exactly what is missing. The real thing needs a small file system of its
own: a tmpfs mounted for the test (root with CAP_SYS_ADMIN, as in CI); the pure parts run anywhere."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import grid_dict
from sweep_fixtures import own_ray

from sweep.execute.callbacks import StopCallback
from sweep.execute.stopping import StopSignals, SweepHalted
from sweep.results.disk import EXIT_STORAGE, storage_failure


@pytest.mark.parametrize(("error", "expected"), [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/cells/a/parts/.x.parquet"),
     "/out/cells/a/parts/.x.parquet: No space left on device"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS)), "Read-only file system"),
    (RuntimeError("wrapped"), None),
    (PermissionError(errno.EACCES, "Permission denied", "/out"), None),
    # pyarrow: an OSError without errno, the errno in its message
    (OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),
     "No space left on device"),
    ("ray.exceptions.RayTaskError(OSError): OSError: [Errno 28] No space left on device: '/o/cells/c/x.json'",
     "/o/cells/c/x.json: No space left on device"),
    ("OSError: [Errno 2] No such file or directory: '/o/x'", None),
    ("ValueError: bad image", None),
    (None, None),
])
def test_storage_failure_recognises_a_full_or_read_only_disk_and_names_the_path(error, expected):
    assert storage_failure(error) == expected


def test_a_disk_error_is_found_among_the_causes():
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/f")
        except OSError as inner:
            raise RuntimeError("writing a part failed") from inner
    except RuntimeError as outer:
        assert storage_failure(outer) == "/d/f: No space left on device"


def test_halt_stops_tunes_loop_at_its_next_step_keeping_the_first_reason():
    stop = StopSignals()
    callback = StopCallback(stop)
    callback.on_step_begin(0, [])  # nothing to stop yet
    stop.halt("the output disk is full (/o: No space left on device)")
    stop.halt("a later reason")
    with pytest.raises(SweepHalted, match="/o: No space left on device"):
        callback.on_step_begin(1, [])
    assert stop.signum is None and stop.exit_code is None  # not a signal: the engine's exit code is 3


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs of its own, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"a full disk needs a file system of its own; mounting a tmpfs failed: {proc.stderr}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_stops_the_sweep_naming_the_path_and_keeping_what_is_on_disk(
        coco_mini, tmp_path, small_disk, capfd):
    fault_dir = tmp_path / "faults"
    ballast = small_disk / "ballast"
    out = small_disk / "out"
    data = grid_dict(coco_mini, out, models=[{"id": "fills", "loader": "fault_models:fill_disk_once"},
                                             {"id": "after", "loader": "fault_models:counting"}],
                     max_new_tokens=[8])
    data["dataset"]["limit"] = 12
    data["resources"] = {"local_gpus": 1, "batch_size": 4}  # one cell at a time: "fills" runs first
    data["measurement"] = {"warmup_batches": 0}  # the call counts below are the measured images only
    data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(data))

    # one Ray for both runs (one cell at a time), its workers told where the faults and the ballast go
    with own_ray(1, VLM_SWEEP_FAULT_DIR=str(fault_dir), VLM_SWEEP_FAULT_FILL=str(ballast)):
        _fill_then_resume(grid, out, fault_dir, ballast, capfd)


def _fill_then_resume(grid: Path, out: Path, fault_dir: Path, ballast: Path, capfd) -> None:
    from sweep.results.store import ResultStore
    from sweep.run import main

    code = main([str(grid)])
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert code == EXIT_STORAGE, text
    assert "No space left on device" in text and str(out) in text
    assert "stopping the sweep: the output disk is full" in text
    assert "Traceback" not in printed.out  # the sweep's own output: no crash (Tune and MLflow log theirs)
    assert "NOT WRITTEN" in text and not (out / "results.csv").exists()
    store = ResultStore(out)
    fills = next(p.name for p in (out / "cells").iterdir() if '"fills"' in (p / "cell.json").read_text())
    kept = store.done_sample_ids(fills)
    assert len(kept) == 4, text  # the first batch was written before the disk filled; it is kept
    calls = (fault_dir / "calls.log").read_text().splitlines()
    assert {c.split()[0] for c in calls} == {"fills"}  # the next cell never started

    ballast.unlink()  # space freed: the re-run resumes, recomputing only what is missing
    (fault_dir / "calls.log").unlink()
    code = main([str(grid)])
    assert code == 0, capfd.readouterr().out
    assert (out / "results.csv").is_file()
    calls = [c.split() for c in (fault_dir / "calls.log").read_text().splitlines()]
    assert sum(int(n) for m, n in calls if m == "fills") == 8
    assert sum(int(n) for m, n in calls if m == "after") == 12
    assert len(store.done_sample_ids(fills)) == 12
