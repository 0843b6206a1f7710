"""The one interface between the driver's pipeline and whatever serves a model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from actors.families.base import Family


@dataclass
class CaptionRequest:
    sample_id: str
    images: list[Image.Image]
    prompt: str


@dataclass
class CaptionResult:
    caption: str
    generated_tokens: int


@dataclass
class LoadReport:
    """What loading cost and what was loaded: logged with every cell."""

    backend: str
    backend_reason: str
    family: str
    device: str
    load_seconds: float
    weight_bytes: int
    module_precisions: dict[str, str] = field(default_factory=dict)
    module_weight_bytes: dict[str, int] = field(default_factory=dict)
    family_info: dict[str, object] = field(default_factory=dict)
    generation: dict[str, object] = field(default_factory=dict)  # effective generate() settings
    weights: str = "real"  # "random" for tiny test models and dummy-weight runs
    library_versions: dict[str, str] = field(default_factory=dict)


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
