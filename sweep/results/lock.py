"""The output dir is usable and this sweep's alone: checked before anything starts (exit 2).

`check_output_dir` refuses an output dir that is a file, or one where a probe file cannot be written
(read-only, permission denied, disk full). `sweep_lock` holds `output_dir/.sweep.lock` (an `fcntl.flock`,
which the OS drops when its holder dies, however it dies) for a whole sweep, so a second sweep on the
same dir is refused with the name, pid, host and start time of the one running, instead of both
writing the same cells."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".sweep.lock"


class OutputDirError(Exception):
    """The output dir cannot be used: nothing was started (exit 2)."""


class SweepLockedError(OutputDirError):
    """Another live sweep holds the output dir."""


def _reason(err: OSError) -> str:
    return err.strerror or os.strerror(err.errno or 0) or type(err).__name__


def check_output_dir(path: Path, create: bool = True) -> Path:
    """The resolved output dir, after a probe file was created and removed in it; `create` False (dry
    run): a missing dir is not made, its nearest existing parent is probed instead."""
    out = Path(path).resolve()
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output_dir {out}: is a file")
    target = out
    if not out.exists():
        if create:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                parent = next((p for p in out.parents if p.exists()), out)
                raise OutputDirError(f"output_dir {out}: {parent} is a file") from None
            except OSError as err:
                raise OutputDirError(f"output_dir {out}: not writable ({_reason(err)})") from None
        else:
            target = next(p for p in out.parents if p.exists())
            if not target.is_dir():
                raise OutputDirError(f"output_dir {out}: {target} is a file")
    probe = target / f".write-probe-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)  # a full disk fails here, not only at open
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputDirError(f"output_dir {out}: not writable ({_reason(err)})") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return out


def _holder_text(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return (f"sweep '{info.get('name', '?')}' (pid {info.get('pid', '?')} on host {info.get('host', '?')} "
            f"since {when})")


@contextlib.contextmanager
def sweep_lock(output_dir: Path, name: str) -> Iterator[Path]:
    """Hold `output_dir/.sweep.lock` for the body; SweepLockedError if a live sweep holds it."""
    out = check_output_dir(output_dir)
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputDirError(f"output_dir {out}: not writable ({_reason(err)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputDirError(f"output_dir {out}: cannot lock {path} ({_reason(err)})") from None
            time.sleep(0.05)  # the holder may be writing its details right now
            raise SweepLockedError(f"output_dir {out} is in use by {_holder_text(fd)}; wait for it or use "
                                   "another output_dir") from None
        info = {"name": name, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holds_sweep_lock(run):
    """Decorate `run_sweep(grid, ...)`: the whole call holds the grid's output dir."""

    @functools.wraps(run)
    def wrapper(grid, *args, **kwargs):
        with sweep_lock(grid.output_dir, grid.name):
            return run(grid, *args, **kwargs)

    return wrapper
