"""HF transformers backend: batched, left-padded generation at any bitsandbytes/float precision."""

from __future__ import annotations

import time
import warnings
from typing import Any

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


def count_generated(token_rows: Any, eos_ids: set[int]) -> list[int]:
    """Tokens each row generated, up to and including its first EOS. generate() pads a row only after
    its EOS, so a pad-valued token before any EOS is a real (if odd) token and counts."""
    counts = []
    for row in token_rows.tolist():
        ends = [i for i, tok in enumerate(row) if tok in eos_ids]
        counts.append(ends[0] + 1 if ends else len(row))
    return counts


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
        import transformers

        self.family = family
        on_cuda = torch.cuda.is_available()
        self.device = torch.device("cuda:0" if on_cuda else "cpu")
        start = time.perf_counter()
        common = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.processor = transformers.AutoProcessor.from_pretrained(path, **common)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        auto = getattr(transformers, family.auto_class)
        self.model = auto.from_pretrained(path, **common, **load_kwargs(precision, family, on_cuda))
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
            family_info=family.describe(),
            weights=weights,
            library_versions=library_versions(),
        )
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(
            iter(self.eos_ids), None
        )

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        import torch

        inputs = self.family.build_inputs(
            self.processor, [r.prompt for r in requests], [r.images for r in requests]
        )
        inputs = inputs.to(self.device)
        float_dtype = next(
            (p.dtype for p in self.model.parameters() if p.dtype.is_floating_point), torch.float32
        )
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(float_dtype)
        kwargs = {**generate_kwargs, "pad_token_id": self.pad_id}
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        # decoder-only output repeats the prompt; encoder-decoder output starts with the decoder start token
        prompt_len = 1 if self.model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
        out = out[:, prompt_len:]
        captions = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        counts = count_generated(out, self.eos_ids)
        return [CaptionResult(c.strip(), n) for c, n in zip(captions, counts, strict=True)]
