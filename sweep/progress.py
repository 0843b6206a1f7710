"""One sweep-level progress display: a live line in a terminal, plain dated lines in a job log."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class SweepProgress:
    """Counts cells and samples as trials report; prints without control characters unless on a TTY."""

    def __init__(self, total_cells: int, samples_per_cell: int, stream: TextIO | None = None,
                 min_interval_s: float = 10.0, clock=time.monotonic):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total_cells = total_cells
        self.samples_per_cell = samples_per_cell
        self.clock = clock
        self.start = clock()
        self.min_interval_s = min_interval_s
        self.last_print = -float("inf")
        self.running: set[str] = set()
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.samples: dict[str, int] = {}
        self._lock = threading.Lock()  # Tune's loop starts cells, the recorder's thread finishes them

    # events -----------------------------------------------------------------------------------------
    def cell_reused(self, cell_id: str) -> None:
        self.done.add(cell_id)
        self.samples[cell_id] = self.samples_per_cell

    def cell_started(self, cell_id: str) -> None:
        with self._lock:
            self.running.add(cell_id)
            self._emit(force=True)

    def cell_samples(self, cell_id: str, samples_done: int) -> None:
        with self._lock:
            self.samples[cell_id] = samples_done
            self._emit()

    def cell_finished(self, cell_id: str, ok: bool) -> None:
        with self._lock:
            self.running.discard(cell_id)
            (self.done if ok else self.failed).add(cell_id)
            if ok:
                self.samples[cell_id] = self.samples_per_cell
            self._emit(force=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.write(self.final_line() + "\n")
        self.stream.flush()

    # text -------------------------------------------------------------------------------------------
    def samples_done(self) -> int:
        return sum(self.samples.values())

    def status_line(self) -> str:
        elapsed = self.clock() - self.start
        done = self.samples_done()
        total = self.total_cells * self.samples_per_cell
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        eta_text = "?" if eta != eta else _duration(eta)
        return (f"cells {len(self.done)} done, {len(self.running)} running, {len(self.failed)} failed "
                f"of {self.total_cells} | samples {done}/{total} | {rate:.2f} img/s | "
                f"elapsed {_duration(elapsed)} | ETA {eta_text}")

    def final_line(self) -> str:
        elapsed = self.clock() - self.start
        return (f"finished: {len(self.done)} cells ok, {len(self.failed)} failed of {self.total_cells}; "
                f"{self.samples_done()} samples in {_duration(elapsed)}")

    def _emit(self, force: bool = False) -> None:
        now = self.clock()
        if not self.tty and not force and now - self.last_print < self.min_interval_s:
            return
        self.last_print = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.status_line())
        else:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {self.status_line()}\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
