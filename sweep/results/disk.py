"""A disk that fills (or turns read-only) mid-run: recognised wherever the failed write happened.

A write to the output dir that fails for lack of space fails the same way for every cell after it, so
the sweep stops (`StopSignals.halt`, exit `EXIT_STORAGE`) instead of failing each remaining cell in
turn. The failure reaches the driver as an exception (its own writes, Tune's) or as text (a trial's
traceback, from a Ray worker); pyarrow reports it as `OSError` without an errno, `[errno 28] No space
left on device` in its message, so the text is what is matched, not only `errno`.
"""

from __future__ import annotations

import errno
import os
import re

EXIT_STORAGE = 3  # stopped: the output dir's disk became full or unwritable mid-run

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_MESSAGES = tuple(os.strerror(code) for code in STORAGE_ERRNOS)
_PATH = re.compile(r"\[Errno (\d+)\] [^:\n]+: '([^'\n]+)'")


def storage_failure(error: BaseException | str | None) -> str | None:
    """`'<path>: No space left on device'` (the path when the error names one) if `error`, an exception
    (its causes included) or a traceback's text, is a full / over-quota / read-only disk; else None."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
                reason = os.strerror(current.errno)
                return f"{current.filename}: {reason}" if current.filename else reason
            current = current.__cause__ or current.__context__
        error = f"{type(error).__name__}: {error}"
    text = str(error)
    for match in _PATH.finditer(text):
        if int(match.group(1)) in STORAGE_ERRNOS:
            return f"{match.group(2)}: {os.strerror(int(match.group(1)))}"
    return next((message for message in _MESSAGES if message.lower() in text.lower()), None)
