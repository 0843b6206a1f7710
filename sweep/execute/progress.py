"""One sweep-level progress display: a live line in a terminal, plain dated lines in a job log.

The ETA has a basis only once a cell computed in this invocation has finished: before that the rate
mixes Ray's start and the first model loads into the images/s (it read minutes 20 s into a run that
ended 15 s later). It is then the samples still to caption over the rate since the first sample came
in; cells read back from the store count as done but not into the rate (they took no time)."""

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
        self.reused: set[str] = set()
        self.errors: dict[str, int] = {}  # cell id -> error rows (images it could not caption)
        self.pruned: dict[str, int] = {}  # cell id -> images captioned before successive halving stopped it
        self.first_sample: float | None = None  # when the first computed sample came in
        self._lock = threading.Lock()  # Tune's loop starts cells, the recorder's thread finishes them

    # events -----------------------------------------------------------------------------------------
    def cell_reused(self, cell_id: str, n_errors: float = 0) -> None:
        self.done.add(cell_id)
        self.reused.add(cell_id)
        self.samples[cell_id] = self.samples_per_cell
        self._count_errors(cell_id, n_errors)

    def cell_pruned(self, cell_id: str, images: int, reused: bool = False) -> None:
        """A cell stopped at a rung by successive halving: a result over its `images`, never more."""
        with self._lock:
            self.running.discard(cell_id)
            self.pruned[cell_id] = images
            self.samples[cell_id] = images
            if reused:
                self.reused.add(cell_id)
            self._emit(force=not reused)

    def cell_started(self, cell_id: str) -> None:
        with self._lock:
            self.running.add(cell_id)
            self._emit(force=True)

    def cell_samples(self, cell_id: str, samples_done: int) -> None:
        with self._lock:
            self.samples[cell_id] = samples_done
            if samples_done and self.first_sample is None:
                self.first_sample = self.clock()
            self._emit()

    def cell_finished(self, cell_id: str, ok: bool, n_errors: float = 0) -> None:
        with self._lock:
            self.running.discard(cell_id)
            (self.done if ok else self.failed).add(cell_id)
            if ok:
                self.samples[cell_id] = self.samples_per_cell
                if self.first_sample is None:
                    self.first_sample = self.clock()
            self._count_errors(cell_id, n_errors)
            self._emit(force=True)

    def _count_errors(self, cell_id: str, n_errors: float) -> None:
        if n_errors == n_errors and n_errors > 0:  # NaN: a cell without the count
            self.errors[cell_id] = int(n_errors)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.write(self.final_line() + "\n")
        self.stream.flush()

    # text -------------------------------------------------------------------------------------------
    def total_samples(self) -> int:
        """Every cell's samples, a pruned cell's only those it captioned."""
        return (self.total_cells - len(self.pruned)) * self.samples_per_cell + sum(self.pruned.values())

    def pruned_text(self) -> str:
        return f", {len(self.pruned)} pruned" if self.pruned else ""

    def samples_done(self) -> int:
        return sum(self.samples.values())

    def computed_samples(self) -> int:
        return sum(n for cell_id, n in self.samples.items() if cell_id not in self.reused)

    def eta_seconds(self) -> float | None:
        """Seconds left, or None while there is no basis (no cell computed here has finished yet)."""
        if self.first_sample is None or not (self.done - self.reused):
            return None
        computed, since = self.computed_samples(), self.clock() - self.first_sample
        if computed <= 0 or since <= 0:
            return None
        left = self.total_samples() - self.samples_done()
        return max(0.0, left) / (computed / since)

    def error_text(self) -> str:
        """`| 3 error rows in 1 cell` when finished cells have error rows (images not captioned)."""
        if not self.errors:
            return ""
        n, k = sum(self.errors.values()), len(self.errors)
        return f" | {n} error row{'s' * (n != 1)} in {k} cell{'s' * (k != 1)}"

    def status_line(self) -> str:
        elapsed = self.clock() - self.start
        done = self.samples_done()
        total = self.total_samples()
        rate = self.computed_samples() / elapsed if elapsed > 0 else 0.0
        eta = self.eta_seconds()
        eta_text = "after the first cell" if eta is None else _duration(eta)
        return (f"cells {len(self.done)} done{self.pruned_text()}, {len(self.running)} running, "
                f"{len(self.failed)} failed "
                f"of {self.total_cells}{self.error_text()} | samples {done}/{total} | {rate:.2f} img/s | "
                f"elapsed {_duration(elapsed)} | ETA {eta_text}")

    def final_line(self) -> str:
        elapsed = self.clock() - self.start
        pruned = sum(self.pruned.values())
        of_pruned = f" ({pruned} of them in the pruned cells)" if self.pruned else ""
        return (f"finished: {len(self.done)} cells ok{self.pruned_text()}, {len(self.failed)} failed of "
                f"{self.total_cells}{self.error_text().replace(' |', ',', 1)}; {self.samples_done()} samples"
                f"{of_pruned} in {_duration(elapsed)}")

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
