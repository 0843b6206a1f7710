"""Reading a dataset's image files safely: only regular files under the dataset's folder are read.

A captions json can name anything: a symlink loop, a device (`/dev/zero` reads forever), a FIFO (opening
it for reading blocks until a writer comes), a directory, or `../../etc/passwd`. Each becomes a reason
(the sample's error row), never a crash or a hang: the path is resolved without raising on loops, checked
with `os.stat` before any open, and opened non-blocking without following a last symlink, then checked
again on the open descriptor (a file swapped between the two checks is caught by the second)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path


class UnreadableFile(OSError):
    """Not a regular file inside the dataset's folder, or not readable: the reason is the message."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def resolve_inside(path: Path | str, root: Path | str | None) -> str:
    """The path with every symlink resolved (a loop raises UnreadableFile, not RuntimeError), checked to lie
    inside `root` (resolved too) when one is given."""
    try:
        resolved = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        resolved = os.path.realpath(path)  # missing: the decode stage's FileNotFoundError row, as before
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnreadableFile(f"{path}: a symlink loop") from None
        raise UnreadableFile(f"{path}: cannot resolve ({err.strerror or err})") from None
    if root is not None:
        top = os.path.realpath(root)
        if os.path.commonpath([top, resolved]) != top:
            raise UnreadableFile(f"{path}: resolves to {resolved}, outside dataset.images {top}")
    return resolved


def _open_regular(path: str) -> int:
    try:
        mode = os.stat(path).st_mode  # before any open: a FIFO is never opened
    except FileNotFoundError:
        raise  # the decode stage's FileNotFoundError row, as for any missing image
    except OSError as err:
        raise UnreadableFile(f"{path}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise UnreadableFile(f"{path}: {_kind(mode)}, not a regular file")
    try:  # non-blocking: a FIFO swapped in after the stat does not block the open either
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as err:
        raise UnreadableFile(f"{path}: {err.strerror or err}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnreadableFile(f"{path}: {_kind(mode)}, not a regular file (it changed)")
    return fd


def read_regular(path: str) -> bytes:
    """The bytes of a regular file (FileNotFoundError when missing, UnreadableFile for anything else)."""
    with os.fdopen(_open_regular(path), "rb") as f:
        return f.read()


def sha1_regular(path: str) -> str:
    """sha1 of a regular file's bytes, read in chunks (FileNotFoundError, UnreadableFile as read_regular)."""
    with os.fdopen(_open_regular(path), "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
