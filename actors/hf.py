"""HF transformers backend: batched, left-padded generation at any bitsandbytes/float precision."""

from __future__ import annotations

import time
import warnings

from actors.base import Captioner, CaptionRequest, CaptionResult, LoadReport
from actors.families.base import Family
from actors.precision import QUANTIZED, load_kwargs, module_precisions

# bitsandbytes warns on every int8 matmul of a float32 input (the CPU path): one line per layer per token.
warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "bitsandbytes", "accelerate", "ray", "vllm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


class HFCaptioner(Captioner):
    def __init__(
        self,
        path: str,
        family: Family,
        precision: str,
        *,
        revision: str | None,
        trust_remote_code: bool,
        weights: str,
        backend_reason: str,
    ):
        import torch

        self.family = family
        on_cuda = torch.cuda.is_available()
        self.device = torch.device("cuda:0" if on_cuda else "cpu")
        start = time.perf_counter()
        common = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.processor = family.load_processor(path, common)
        self.model = family.load_model(path, common, load_kwargs(precision, family, on_cuda))
        if precision not in QUANTIZED:
            self.model.to(self.device)
        self.model.eval()
        if on_cuda:
            torch.cuda.synchronize()
        load_seconds = time.perf_counter() - start
        formats, sizes = module_precisions(self.model, family)
        self.report = LoadReport(
            backend="hf",
            backend_reason=backend_reason,
            family=family.name,
            device=torch.cuda.get_device_name(0) if on_cuda else "cpu",
            load_seconds=load_seconds,
            weight_bytes=int(self.model.get_memory_footprint()),
            module_precisions=formats,
            module_weight_bytes=sizes,
            family_info={**family.describe(), "trust_remote_code": trust_remote_code},
            weights=weights,
            library_versions=library_versions(),
        )

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        return self.family.generate(
            self.model, self.processor, [r.prompt for r in requests], [r.images for r in requests],
            generate_kwargs, self.device,
        )
