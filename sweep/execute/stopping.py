"""SIGINT/SIGTERM: a clean stop of the sweep driver.

The first signal is only noted; Tune's loop sees it at its next step (`sweep.execute.callbacks.StopCallback`,
a few times a second) and leaves `fit` by `SweepInterrupted` (raised from a callback, in Python: raised
from the handler it could land inside Ray's C++ `wait`, which turns it into a SystemError). Recording,
results.csv and the report are thus never cut in half by the first signal; the engine records the
cells without an outcome as interrupted, writes what finished and exits 128 + the signal (130 SIGINT,
143 SIGTERM). A second signal is a fast stop: the MLflow parent run set KILLED, then exit at once
with the same code (the store's files are written atomically, so what is on disk stays consistent;
a re-run resumes). Tune's own SIGINT handler (it would take the first Ctrl-C, end `fit` as if the
sweep had finished and leave a second one to Python's KeyboardInterrupt) is disabled:
TUNE_DISABLE_SIGINT_HANDLER=1.

`halt(reason)` stops the sweep the same clean way without a signal: a disk that filled mid-run
(`sweep.results.disk`), seen in a failed trial or in the driver's own writes, ends the trials at the next step
(`SweepHalted`) instead of failing every remaining cell in turn; exit `sweep.results.disk.EXIT_STORAGE`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SweepInterrupted(BaseException):
    """Raised in Tune's loop after the first signal (BaseException: no `except Exception` on the way,
    Tune's own included, turns it into a failed cell or a cleanup that waits for trials)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SweepHalted(BaseException):
    """Raised in Tune's loop after `StopSignals.halt` (a full disk): the sweep stops, no signal."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StopSignals:
    """Installed by `run_sweep` for one invocation (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.tracker: Any = None  # the MLflow tracker, once open: the fast stop sets its parent KILLED
        self.halted: str | None = None  # why the sweep stops without a signal (a full disk)
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None

    @property
    def exit_code(self) -> int | None:
        return 128 + self.signum if self.signum else None

    def install(self) -> StopSignals:
        """Take SIGINT/SIGTERM (again: `ray.init` installs its own SIGTERM handler in the driver, which
        aborts the process, so this is called once more when the trials start)."""
        if threading.current_thread() is threading.main_thread():
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            for sig in SIGNALS:
                previous = signal.signal(sig, self._handle)
                self._previous.setdefault(sig, previous)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def halt(self, reason: str) -> None:
        """Stop the sweep at Tune's next step (from any thread); the first reason is kept."""
        if self.halted is None:
            self.halted = reason
            print(f"\nstopping the sweep: {reason}; the cells running are recorded as interrupted and what "
                  "is on disk is kept (free space and re-run to resume)", file=sys.stderr, flush=True)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            print(f"\n{self.name}: stopping the sweep; the cells running are recorded as interrupted and "
                  "what finished is written (again to stop at once)", file=sys.stderr, flush=True)
            return
        code = self.exit_code or 128 + signum
        print(f"{signal.Signals(signum).name} again: stopping now (exit {code}); the store keeps every "
              "finished batch, a re-run resumes", file=sys.stderr, flush=True)
        try:
            if self.tracker is not None and self.tracker.status is None:
                self.tracker.finish(ok=False, status="KILLED")
        except Exception:
            pass
        sys.stdout.flush()
        os._exit(code)


# Tune pickles its run config (callbacks included) into the experiment folder: the callback refers to
# its StopSignals by key, and they stay in this process.
_STOPS: dict[int, StopSignals] = {}

