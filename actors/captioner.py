"""The one interface every model backend fills (HF, vLLM, a user's loader): load once, caption batches."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.contract import CaptionRequest, CaptionResult, LoadReport, Preprocessor
from actors.families.base import Family
from actors.generation import BudgetCut, Generation


def budget_kwargs(generate_kwargs: dict, max_new_tokens: int) -> dict:
    """The generate() settings of a generation capped at a smaller budget: the same, with the minimum
    lengths clamped to it as `actors.model_host.effective_generation` clamps them to a cell's own budget."""
    kwargs = {**generate_kwargs, "max_new_tokens": max_new_tokens}
    for key in ("min_new_tokens", "min_length"):
        if key in kwargs:
            kwargs[key] = min(kwargs[key], max_new_tokens)
    return kwargs


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for a backend to load: where its files are, its family, and why this backend."""

    path: str
    family: Family
    precision: str
    revision: str | None
    trust_remote_code: bool
    weights: str  # what the report logs: real | random | toy
    backend_reason: str
    dummy_weights: bool = False  # random weights at the real architecture size
    model_id: str = ""  # the grid's id of the model (a hub id, `tiny:<family>`, a folder): "" when unknown

    @property
    def hub_kwargs(self) -> dict[str, Any]:
        """What every `from_pretrained` of this model is given."""
        return {"revision": self.revision, "trust_remote_code": self.trust_remote_code}

    def report(self, backend: str, device: str, load_seconds: float, weight_bytes: int,
               module_formats: tuple[dict[str, str], dict[str, int]], versions: dict[str, str],
               **family_info: object) -> LoadReport:
        formats, sizes = module_formats
        info = {**self.family.describe(), "trust_remote_code": self.trust_remote_code, **family_info}
        return LoadReport(
            backend=backend, backend_reason=self.backend_reason, family=self.family.name, device=device,
            load_seconds=load_seconds, weight_bytes=weight_bytes, module_precisions=formats,
            module_weight_bytes=sizes, family_info=info,
            weights="random" if self.dummy_weights else self.weights, library_versions=versions,
        )


class Captioner(ABC):
    """One model at one precision, loaded once, captioning batches of requests."""

    report: LoadReport
    family: Family
    # How the latency of a batch is measured (`BatchResult.latency_kind`): "batch_wall", the wall time of
    # the generate() call the batch was in, for every image of it. A backend that times each request
    # itself (vLLM's request metrics) says "request_e2e".
    latency_kind: str = "batch_wall"
    # Batches a host hands over per generate() call (`ModelHost.caption_window`): 1, one batch per call;
    # a backend that schedules requests itself (vLLM) takes a window of them, so it can batch as designed.
    batches_per_call: int = 1
    # Whether a host process may drop this captioner and load another in its place (`ModelHost.load`):
    # true when dropping the references frees it (HF, most user loaders); false for an engine that keeps
    # memory or processes of its own past that (vLLM): its next load gets a fresh process.
    unloads_in_process: bool = True

    @abstractmethod
    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        """Caption every request; results are in request order."""

    # Token budgets (GenerationSettings.budgets): smaller max_new_tokens answered with a batch. A backend
    # that can read them off one generation overrides `can_share_budgets` and `generate_budgets`; every
    # other one (vLLM, user loaders) gets the fallback: each budget its own `generate` call.

    def can_share_budgets(self, generate_kwargs: dict, budgets: tuple[int, ...]) -> bool:
        """Whether `generate_budgets` cuts these budgets from the generation at the kwargs' max_new_tokens."""
        return False

    def generate_budgets(self, requests: list[CaptionRequest], generate_kwargs: dict,
                         budgets: tuple[int, ...]) -> Generation:
        """The generation at the kwargs' max_new_tokens, timed, with the budgets it could serve from that
        same generation (none here: the caller generates the rest with `generate_own_budget`)."""
        start = time.perf_counter()
        results = self.generate(requests, generate_kwargs)
        return Generation(results, time.perf_counter() - start)

    def generate_own_budget(self, requests: list[CaptionRequest], generate_kwargs: dict,
                            max_new_tokens: int) -> BudgetCut:
        """A smaller budget generated on its own through `generate` (same settings, capped at it), timed."""
        start = time.perf_counter()
        results = self.generate(requests, budget_kwargs(generate_kwargs, max_new_tokens))
        return BudgetCut(results, time.perf_counter() - start, "own_generation")

    def rendered_prompt(self, prompt: str) -> str:
        """The text this captioner feeds the model for `prompt` with one image (its family's chat template
        or plain template), for the per-image tables; "" when it cannot tell (no processor to render it)."""
        try:
            return str(self.family.format_prompt(getattr(self, "processor", None), prompt, 1))
        except Exception:  # a family that renders only inside generate(): not known here
            return ""

    def preprocessor(self) -> Preprocessor | None:
        """The processor a decode task can run for this captioner (`actors.prepare`), so that requests reach
        `generate` with `CaptionRequest.prepared`; None (the default): the processor runs here, on images."""
        return None

    def reset_caches(self) -> str:
        """Empty every cache that outlives a generate() call, so that a cell does not start on an earlier
        cell's work; returns what it emptied, in words ("" when nothing is kept: HF generate())."""
        return ""

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
