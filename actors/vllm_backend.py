"""vLLM backend: one `vllm.LLM` engine per actor, captioning through vLLM's offline API.

Why not `ray.data.llm.build_processor`: it builds its own Ray Data stages (and its own vLLM actors) per
processor config, so it would own batching, actor placement and the prompt format. This project's unit is
the cell: one actor holds one model at one precision behind the `Captioner` interface, and the driver's
single pipeline (decode -> ModelHost -> scoring, with per-batch timing, OOM retry, energy, peak memory
and resume) is the same for every backend. A `Captioner` that wraps `vllm.LLM` keeps that one pipeline and
makes HF-vs-vLLM cells differ only in the engine, which is what the sweep compares.

Mapping of the cell's settings:
- precision (`engine_precision_args`): fp32/fp16/bf16 -> `dtype`; fp8 -> `quantization="fp8"` (vLLM's
  dynamic fp8: weights cast to fp8 at load with per-tensor scales, activations scaled per step; no
  calibration) with `dtype="bfloat16"`; prequantized -> no `quantization` at all and `dtype="auto"`: vLLM
  reads the method from config.json's quantization_config and picks its fastest kernel (awq -> awq_marlin,
  gptq -> gptq_marlin), which naming the method would turn off; bitsandbytes and torchao precisions are
  refused (choose_backend routes them to HF);
- dummy weights -> `load_format="dummy"` (random weights at the real size: speed and memory, no download);
- greedy (temperature 0) unless the cell samples; `max_tokens` = max_new_tokens, `min_tokens` =
  min_new_tokens; num_beams > 1 -> `LLM.beam_search` (which has no min_tokens nor repetition penalty);
- images: `{"prompt": ..., "multi_modal_data": {"image": [PIL, ...]}}`, the prompt text built by the family's
  `format_prompt` with the model's HF processor, so HF and vLLM cells see the same prompt;
- a window of batches per call (`batches_per_call`, `ModelHost.caption_window`): vLLM's scheduler sees many
  requests at once, not one `batch_size` batch; each request timed by vLLM's own `RequestOutput.metrics`
  (`request_timings`, `latency_kind: request_e2e`; stats logging is turned on for it);
- token budgets (`GenerationSettings.budgets`): not cut from one generation here, so the `Captioner` base
  class generates each smaller budget on its own (`own_generation`, one `llm.generate` per budget). vLLM
  0.32 gives no per-token times to cut by: `RequestOutput.metrics` (`RequestStateStats`) holds only the
  request's queued/scheduled/first-token/last-token timestamps, and `LLM.generate` returns once every
  request has finished. Its scheduler also regroups running requests step by step, so the first t tokens
  of a longer generation are not guaranteed to be bitwise those of a generation capped at t.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from actors.captioner import Captioner, ResolvedModel
from actors.checkpoint_quant import CheckpointQuant
from actors.contract import CaptionRequest, CaptionResult
from actors.families.base import Family, module_matches
from actors.precision import FLOAT_PRECISIONS, PRECISIONS, VLLM_PRECISIONS, module_precisions
from actors.vllm_tokens import image_token_floor, with_token_floor

VLLM_DTYPES = {p: str(PRECISIONS[p].float_dtype) for p in FLOAT_PRECISIONS}


def engine_precision_args(precision: str) -> dict[str, Any]:
    """`vllm.LLM(...)` arguments realising a grid precision (module docstring); ValueError for the ones
    vLLM does not take here."""
    if precision in VLLM_DTYPES:
        return {"dtype": VLLM_DTYPES[precision]}
    if precision == "fp8":
        return {"dtype": "bfloat16", "quantization": "fp8"}
    if precision == "prequantized":
        return {"dtype": "auto"}
    raise ValueError(
        f"precision {precision} is not run on vLLM here ({PRECISIONS[precision].library} precisions run on "
        f"HF); vLLM takes {', '.join(VLLM_PRECISIONS)}"  # type: ignore[index]
    )


def estimate_dtype(precision: str) -> str:
    """The float dtype of what vLLM keeps unquantized (the weights estimate's base)."""
    return VLLM_DTYPES.get(precision, "bfloat16" if precision == "fp8" else "float16")


def language_linear_format(precision: str, quant: CheckpointQuant | None) -> tuple[str, float] | None:
    """(format name, bytes per weight) of the language model's linear layers under a quantizing vLLM
    precision; None for a float one."""
    if precision == "fp8":
        return "fp8", 1.0
    if precision == "prequantized" and quant is not None:
        return quant.describe(), quant.weight_bytes()
    return None


def requantize_estimate(model: Any, family: Family, fmt: tuple[str, float] | None,
                        formats: tuple[dict[str, str], dict[str, int]]) -> tuple[int, tuple[dict, dict]]:
    """The float (meta-device) estimate with the language model's linear layers at the quantized format's
    bytes (the vocabulary head stays float, as in vLLM)."""
    import torch

    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if fmt is None:
        return int(total), formats
    name, per_weight = fmt
    side_formats, sizes = dict(formats[0]), dict(formats[1])
    saved = 0.0
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not module_name.endswith("lm_head") and any(
                module_matches(module_name, f) for f in family.language_modules):
            w = module.weight
            saved += w.numel() * (w.element_size() - per_weight)
    sizes["language"] = int(sizes.get("language", 0) - saved)
    side_formats["language"] = f"{name}+{side_formats.get('language', 'float')}"
    return int(total - saved), (side_formats, sizes)


def checkpoint_of(model: ResolvedModel) -> CheckpointQuant | None:
    """The pre-quantized checkpoint's method as its config.json states it (None for a quantizing
    precision or an unquantized checkpoint)."""
    if model.precision != "prequantized":
        return None
    from actors.checkpoint_quant import checkpoint_quant
    from actors.resolve import read_config_json

    return checkpoint_quant(read_config_json(model.path, model.revision))


def vllm_version() -> str:
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def estimate_weights(path: str, family: Family, dtype_name: str, common: dict,
                     quantized: tuple[str, float] | None = None
                     ) -> tuple[int, tuple[dict[str, str], dict[str, int]]]:
    """(weight bytes, (per-side formats, per-side bytes)) of the model at `dtype_name`, from its config alone;
    `quantized` (format, bytes per weight): the language model's linear layers in that format.

    The engine may live in another process (vLLM V1 runs its engine core apart), so the weights are not
    counted there: the architecture is instantiated on the meta device (no memory) and its parameters
    counted at the dtype vLLM loads. Returns zeros when the config cannot be built by transformers."""
    import torch
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(path, **common)
        with torch.device("meta"):
            model = getattr(transformers, family.auto_class).from_config(
                config, dtype=getattr(torch, dtype_name), trust_remote_code=common.get("trust_remote_code")
            )
    except Exception:  # noqa: BLE001 - an estimate; the cell must not fail over it
        return 0, ({}, {})
    return requantize_estimate(model, family, quantized, module_precisions(model, family))


def request_timings(metrics: Any, call_seconds: float | None = None) -> tuple[float | None, float | None]:
    """(time to first token, end-to-end latency) of one request, in seconds, from vLLM's own metrics
    (`RequestStateStats`, filled on CPU too when stats are logged): TTFT is vLLM's `first_token_latency`
    (frontend arrival to the engine step that produced the first token); e2e adds the decode time between
    the engine core's first- and last-token timestamps (the same monotonic clock). vLLM's own
    `e2e_latency` is computed only for its stat loggers, not returned. (None, None) without metrics.

    The frontend stamps TTFT when it handles the first token, the decode span is the engine core's: a
    frontend late on a request's first token (a loaded CPU) adds that delay to the sum (seen on 2 busy
    cores: 0.423 s for a request of a generate() call of 0.386 s). A request arrives inside the generate()
    call that carries it, so `call_seconds` (that call's wall time) caps both."""
    if metrics is None or not getattr(metrics, "first_token_ts", 0.0):
        return None, None
    ttft = float(metrics.first_token_latency)
    decode = max(0.0, float(metrics.last_token_ts) - float(metrics.first_token_ts))
    e2e = ttft + decode if call_seconds is None else min(ttft + decode, call_seconds)
    return min(ttft, e2e), e2e


def window_batches() -> int:
    """Batches per generate() call (`VLM_SWEEP_VLLM_BATCHES_PER_CALL`, default 16): enough requests for
    vLLM's scheduler to batch (its default max_num_seqs is 256 on GPU), few enough that a crash loses
    little and a window's pixels stay small in the object store."""
    value = os.environ.get("VLM_SWEEP_VLLM_BATCHES_PER_CALL") or "16"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"VLM_SWEEP_VLLM_BATCHES_PER_CALL must be a positive integer, not {value!r}")
    return n


def engine_args_logged(kwargs: dict[str, Any], tokens_reason: str = "") -> str:
    """The engine arguments a cell's engine was built with, as JSON (the model path and hub arguments
    are logged elsewhere), for the cell's `vllm_engine_args` param; with why `max_num_batched_tokens`
    is not the grid's (`actors.vllm_tokens`), when it is not."""
    skip = {"model", "tokenizer", "revision", "trust_remote_code"}
    logged = {k: v for k, v in sorted(kwargs.items()) if k not in skip}
    if tokens_reason:
        logged["max_num_batched_tokens_reason"] = tokens_reason
    return json.dumps(logged, default=str)


class VLLMCaptioner(Captioner):
    # each request timed by vLLM's metrics (`request_timings`); a beam search has none: batch_wall then
    latency_kind = "request_e2e"
    # its engine (worker processes, CUDA graphs, the KV cache) is not freed reliably by dropping it
    unloads_in_process = False

    def __init__(self, model: ResolvedModel, max_images_per_prompt: int | None = None,
                 engine_kwargs: dict[str, Any] | None = None):
        family, precision = model.family, model.precision
        precision_args = engine_precision_args(precision)
        import torch
        from vllm import LLM

        from actors.hf import library_versions

        self.family = family
        self.precision = precision
        self.batches_per_call = window_batches()
        self.calls: list[int] = []  # requests per llm.generate call, for checks of the windowing
        self._prompts: dict[tuple[str, int], str] = {}  # (prompt, images) -> the formatted prompt
        on_cuda = torch.cuda.is_available()
        if max_images_per_prompt is None:
            max_images_per_prompt = 1 if family.multi_image == "panorama" else 4
        self.max_images = max_images_per_prompt
        start = time.perf_counter()
        # The HF processor is used only for the prompt text (chat template): vLLM runs its own processing.
        self.processor = family.load_processor(model.path, model.hub_kwargs)
        kwargs: dict[str, Any] = {
            "model": model.path,
            "tokenizer": model.path,
            **model.hub_kwargs,
            **precision_args,
            "load_format": "dummy" if model.dummy_weights else "auto",
            "limit_mm_per_prompt": {"image": max_images_per_prompt},
            "seed": 0,
            # per-request metrics (RequestOutput.metrics, vLLM's RequestStateStats): LLM turns them off
            "disable_log_stats": False,
        }
        # Operator knobs without a grid field (gpu_memory_utilization, max_model_len, enforce_eager, ...):
        # a JSON object in VLM_SWEEP_VLLM_ENGINE_ARGS; explicit engine_kwargs win.
        kwargs.update(json.loads(os.environ.get("VLM_SWEEP_VLLM_ENGINE_ARGS") or "{}"))
        kwargs.update(engine_kwargs or {})
        # at least the model's largest image per engine step, else vLLM rejects large images (#34040)
        kwargs, tokens_reason = with_token_floor(kwargs, image_token_floor(self.processor))
        self.llm = LLM(**kwargs)
        load_seconds = time.perf_counter() - start
        weight_bytes, formats = estimate_weights(model.path, family, estimate_dtype(precision),
                                                 model.hub_kwargs,
                                                 language_linear_format(precision, checkpoint_of(model)))
        self._peak = 0
        self.report = model.report(
            "vllm", torch.cuda.get_device_name(0) if on_cuda else "cpu", load_seconds, weight_bytes,
            formats, {**library_versions(), "vllm": vllm_version()},
            vllm_load_format=kwargs["load_format"], vllm_limit_mm_per_prompt=max_images_per_prompt,
            vllm_engine_args=engine_args_logged(kwargs, tokens_reason),
            weight_bytes_kind="estimate from config at the vLLM dtype (quantized language linears at their "
                              "format)",
        )

    def engine_input(self, request: CaptionRequest) -> dict[str, Any]:
        images = self.family.arrange_images(request.images)
        if len(images) > self.max_images:
            raise ValueError(
                f"{len(images)} images in one prompt, more than this engine's limit_mm_per_prompt "
                f"({self.max_images})"
            )
        key = (request.prompt, len(images))
        if key not in self._prompts:  # the chat template costs ~1 ms a request; a cell has one prompt
            self._prompts[key] = self.family.format_prompt(self.processor, request.prompt, len(images))
        return {"prompt": self._prompts[key], "multi_modal_data": {"image": images}}

    def sampling_params(self, generate_kwargs: dict) -> Any:
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {
            "max_tokens": int(generate_kwargs["max_new_tokens"]),
            "min_tokens": int(generate_kwargs.get("min_new_tokens") or 0),
            "repetition_penalty": float(generate_kwargs.get("repetition_penalty", 1.0)),
            "temperature": 0.0,
            "skip_special_tokens": True,
        }
        if generate_kwargs.get("do_sample"):
            kwargs.update(
                temperature=float(generate_kwargs.get("temperature", 1.0)),
                top_p=float(generate_kwargs.get("top_p", 1.0)),
            )
        return SamplingParams(**kwargs)

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        inputs = [self.engine_input(r) for r in requests]
        beams = int(generate_kwargs.get("num_beams") or 1)
        if beams > 1:
            results = self._beam_search(inputs, beams, generate_kwargs)
        else:
            self.calls.append(len(inputs))
            start = time.perf_counter()
            outputs = self.llm.generate(inputs, self.sampling_params(generate_kwargs), use_tqdm=False)
            call_seconds = time.perf_counter() - start
            results = [
                CaptionResult(out.outputs[0].text.strip(), len(out.outputs[0].token_ids),
                              *request_timings(out.metrics, call_seconds))
                for out in outputs
            ]
        self._sample_memory()
        return results

    def _beam_search(self, inputs: list[dict], beams: int, generate_kwargs: dict) -> list[CaptionResult]:
        from vllm.sampling_params import BeamSearchParams

        params = BeamSearchParams(
            beam_width=beams,
            max_tokens=int(generate_kwargs["max_new_tokens"]),
            temperature=float(generate_kwargs.get("temperature", 1.0)) if generate_kwargs.get("do_sample")
            else 0.0,
        )
        tokenizer = self.llm.get_tokenizer()
        results = []
        for out in self.llm.beam_search(inputs, params):
            best = out.sequences[0]
            # A beam's tokens start with the (image-expanded) prompt's; its .text decodes all of them.
            prompt_len = len(best.orig_prompt["prompt_token_ids"])
            new = best.tokens[prompt_len:]
            results.append(CaptionResult(tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)))
        return results

    def reset_caches(self) -> str:
        """vLLM's prefix cache (on by default) and multimodal processor cache are keyed by the image: a
        second cell over the same images would skip preprocessing, the vision encoder and prefill. Emptied
        as `vllm bench sweep` does between runs."""
        prefix = self.llm.reset_prefix_cache()  # False: refused (requests still running)
        self.llm.reset_mm_cache()
        if prefix is False:
            return "vLLM's multimodal cache (its prefix cache refused the reset)"
        return "vLLM's prefix and multimodal caches"

    def close(self) -> None:
        """Stop the engine's processes (vLLM V1 runs the engine core and its workers apart)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def _sample_memory(self) -> None:
        self._peak = max(self._peak, self._current_memory()[0])

    def _current_memory(self) -> tuple[int, str]:
        import torch

        if torch.cuda.is_available():
            # The engine core is another process: the allocator of this one sees nothing; read the device.
            free, total = torch.cuda.mem_get_info()
            return int(total - free), "gpu_device_used"
        import psutil

        proc = psutil.Process(os.getpid())
        rss = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                continue
        return int(rss), "cpu_rss_with_engine"

    def reset_peak_memory(self) -> None:
        self._peak = 0

    def peak_memory(self) -> tuple[int, str]:
        """(bytes, kind): device memory in use (CUDA), or the RSS of this process and its engine processes,
        the largest seen after a generate() call."""
        current, kind = self._current_memory()
        self._peak = max(self._peak, current)
        return self._peak, kind
