"""Energy of each generate() call, measured in the actor's own process by codecarbon (offline)."""

from __future__ import annotations

import logging
import math


class EnergyMeter:
    """start()/stop() around one batch; stop() returns (kWh, kg CO2eq), NaN when not measurable.

    On a GPU node codecarbon reads NVML; on CPU it estimates from the CPU's TDP (no RAPL here), and
    several actors on one machine each see the whole machine: sums over concurrent actors overcount.
    """

    def __init__(self, country_iso_code: str | None):
        self.tracker = None
        self.note = "energy tracking disabled in the grid"
        if country_iso_code is None:
            return
        try:
            from codecarbon import OfflineEmissionsTracker

            self.tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code,
                save_to_file=False,
                log_level="error",
                tracking_mode="process",
            )
            self.note = "codecarbon offline tracker"
        except Exception as err:  # energy is a measurement, never a reason to fail a cell
            logging.getLogger(__name__).warning("codecarbon unavailable: %s", err)
            self.note = f"codecarbon unavailable: {err}"

    def start(self) -> None:
        if self.tracker is not None:
            self.tracker.start_task()

    def stop(self) -> tuple[float, float]:
        if self.tracker is None:
            return math.nan, math.nan
        data = self.tracker.stop_task()
        return float(data.energy_consumed), float(data.emissions)
