"""The one interface every model backend fills (HF, vLLM, a user's loader): load once, caption batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from actors.contract import CaptionRequest, CaptionResult, LoadReport
from actors.families.base import Family


class Captioner(ABC):
    """One model at one precision, loaded once, captioning batches of requests."""

    report: LoadReport
    family: Family

    @abstractmethod
    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        """Caption every request; results are in request order."""

    def reset_peak_memory(self) -> None:
        """Start a new peak: a loaded model serves several cells in turn, each reports its own peak."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return
        try:  # Linux: "5" resets the process's peak RSS (VmHWM) to its current RSS
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # peak_memory falls back to the whole process life

    def peak_memory(self) -> tuple[int, str]:
        """(bytes, kind): GPU allocator peak when on CUDA, else the process's peak RSS since the last
        reset_peak_memory()."""
        import resource

        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated()), "gpu_allocated"
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "cpu_rss"
        except OSError:
            pass
        # ru_maxrss is KiB on Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_rss"
