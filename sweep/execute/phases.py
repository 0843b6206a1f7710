"""Where a sweep's wall time went, timed by the engine itself (benchmarks read it, nothing patches it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The phases the engine times, in the order they first happen.
PHASES = ("ray_start", "trials", "scoring", "mlflow", "report")


class PhaseTimer:
    """Seconds per phase, summed over every time a phase runs. Scoring and MLflow logging run on the
    recorder's thread while trials run, so the phases may overlap: they do not add up to the wall."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.calls: dict[str, int] = dict.fromkeys(PHASES, 0)
        self._lock = threading.Lock()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise KeyError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[name] += elapsed
                self.calls[name] += 1

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.seconds)
