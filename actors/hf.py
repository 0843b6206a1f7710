"""HF transformers backend: batched, left-padded generation at any float, bitsandbytes, torchao or
pre-quantized precision."""

from __future__ import annotations

import time
import warnings
from typing import Any

from actors.captioner import Captioner, ResolvedModel
from actors.contract import CaptionRequest, CaptionResult, Preprocessor
from actors.families.base import Family
from actors.generation import Generation, sharing_blocker
from actors.module_formats import model_bytes
from actors.precision import QUANTIZED, load_kwargs, module_precisions

# bitsandbytes warns on every int8 matmul of a float32 input (the CPU path): one line per layer per token.
warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "bitsandbytes", "torchao", "accelerate", "ray", "vllm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def dummy_model(family: Family, path: str, common: dict, precision_kwargs: dict, device: Any = None):
    """Random weights at the real architecture size, from config.json alone (no weight download).

    Float precisions: `from_config` in the cell's dtype, built on `device` (on a GPU the random init runs
    there, not on the CPU followed by a copy). bitsandbytes precisions quantize while loading, which needs
    a checkpoint: the random model is saved to a temporary folder and loaded back through the family's own
    `load_model` hook (so per-side quantization is the same as with real weights); that costs disk and time
    at the model's float size.
    """
    import shutil
    import tempfile

    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(path, **common)
    auto_cls = getattr(transformers, family.auto_class)
    dtype = precision_kwargs.get("dtype")
    quantized = "quantization_config" in precision_kwargs
    with torch.device(device if device is not None and not quantized else "cpu"):
        model = auto_cls.from_config(config, dtype=dtype, trust_remote_code=common.get("trust_remote_code"))
    try:  # the checkpoint's EOS/pad ids and defaults, as with real weights
        model.generation_config = transformers.GenerationConfig.from_pretrained(path, **common)
    except OSError:
        pass
    if not quantized:
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
    def __init__(self, model: ResolvedModel):
        import torch

        family, precision = model.family, model.precision
        self.family = family
        self.resolved = model
        on_cuda = torch.cuda.is_available()
        self.device = torch.device("cuda:0" if on_cuda else "cpu")
        start = time.perf_counter()
        self.processor = family.load_processor(model.path, model.hub_kwargs)
        precision_kwargs = load_kwargs(precision, family, on_cuda)
        if model.dummy_weights:
            self.model = dummy_model(family, model.path, model.hub_kwargs, precision_kwargs, self.device)
        else:
            self.model = family.load_model(model.path, model.hub_kwargs, precision_kwargs)
        if precision not in QUANTIZED:
            self.model.to(self.device)
        self.model.eval()
        if on_cuda:
            torch.cuda.synchronize()
        self.report = model.report(
            "hf", torch.cuda.get_device_name(0) if on_cuda else "cpu", time.perf_counter() - start,
            model_bytes(self.model), module_precisions(self.model, family), library_versions(),
        )

    def preprocessor(self) -> Preprocessor | None:
        """The family's processor for the decode tasks, where the family takes prepared inputs."""
        if not self.family.prepares_off_host:
            return None
        model = self.resolved
        return Preprocessor(self.family.name, model.path, model.model_id or model.path, model.revision,
                            model.trust_remote_code)

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        if prepared_all(requests):
            return self._generate_prepared(requests, generate_kwargs, ()).results
        return self.family.generate(
            self.model, self.processor, [r.prompt for r in requests], [r.images for r in requests],
            generate_kwargs, self.device,
        )

    def can_share_budgets(self, generate_kwargs: dict, budgets: tuple[int, ...]) -> bool:
        return not self.sharing_blocker(generate_kwargs, budgets)

    def sharing_blocker(self, generate_kwargs: dict, budgets: tuple[int, ...]) -> str:
        """Why these budgets are not cut from one generation ("" when they are)."""
        if not self.family.shares_token_budgets:
            return f"the {self.family.name} family generates through its own code"
        return sharing_blocker(self.model.generation_config, generate_kwargs, budgets)

    def generate_budgets(self, requests: list[CaptionRequest], generate_kwargs: dict,
                         budgets: tuple[int, ...]) -> Generation:
        """One generate() at the kwargs' max_new_tokens; every budget cut from it by its decode-step times,
        when the family and the settings allow (else the base class: the budgets are generated apart)."""
        if not budgets or not self.can_share_budgets(generate_kwargs, budgets):
            return super().generate_budgets(requests, generate_kwargs, budgets)
        if prepared_all(requests):
            return self._generate_prepared(requests, generate_kwargs, budgets)
        return self.family.generate_budgets(
            self.model, self.processor, [r.prompt for r in requests], [r.images for r in requests],
            generate_kwargs, self.device, budgets,
        )

    def _generate_prepared(self, requests: list[CaptionRequest], generate_kwargs: dict,
                           budgets: tuple[int, ...]) -> Generation:
        return self.family.generate_prepared(self.model, self.processor, [r.prepared for r in requests],
                                             generate_kwargs, self.device, budgets)


def prepared_all(requests: list[CaptionRequest]) -> bool:
    """Whether the requests carry their processor outputs (built in a decode task); all or none do."""
    prepared = [r.prepared is not None for r in requests]
    if any(prepared) and not all(prepared):
        raise ValueError("a batch mixes prepared and unprepared requests")
    return bool(prepared) and all(prepared)
