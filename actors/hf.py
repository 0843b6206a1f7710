"""HF transformers backend: batched, left-padded generation at any bitsandbytes/float precision."""

from __future__ import annotations

import time
import warnings

from actors.captioner import Captioner
from actors.contract import CaptionRequest, CaptionResult, LoadReport
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


def dummy_model(family: Family, path: str, common: dict, precision_kwargs: dict):
    """Random weights at the real architecture size, from config.json alone (no weight download).

    Float precisions: `from_config` in the cell's dtype. bitsandbytes precisions quantize while loading,
    which needs a checkpoint: the random model is saved to a temporary folder and loaded back through the
    family's own `load_model` hook (so per-side quantization is the same as with real weights); that costs
    disk and time at the model's float size.
    """
    import shutil
    import tempfile

    import transformers

    config = transformers.AutoConfig.from_pretrained(path, **common)
    auto_cls = getattr(transformers, family.auto_class)
    dtype = precision_kwargs.get("dtype")
    model = auto_cls.from_config(config, dtype=dtype, trust_remote_code=common.get("trust_remote_code"))
    try:  # the checkpoint's EOS/pad ids and defaults, as with real weights
        model.generation_config = transformers.GenerationConfig.from_pretrained(path, **common)
    except OSError:
        pass
    if "quantization_config" not in precision_kwargs:
        return model
    tmp = tempfile.mkdtemp(prefix="vlm-sweep-dummy-")
    try:
        model.save_pretrained(tmp)
        del model
        return family.load_model(tmp, {"trust_remote_code": common.get("trust_remote_code")},
                                 precision_kwargs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        dummy_weights: bool = False,
    ):
        import torch

        self.family = family
        on_cuda = torch.cuda.is_available()
        self.device = torch.device("cuda:0" if on_cuda else "cpu")
        start = time.perf_counter()
        common = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.processor = family.load_processor(path, common)
        precision_kwargs = load_kwargs(precision, family, on_cuda)
        if dummy_weights:
            self.model = dummy_model(family, path, common, precision_kwargs)
            weights = "random"
        else:
            self.model = family.load_model(path, common, precision_kwargs)
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
