"""5. GPU throughput: ~2B and ~7B architectures with dummy (random, real-size) weights, HF backend,
bf16 / int8 / nf4 at batch 1 / 8 / 16. Runs only where `torch.cuda.is_available()`."""

from __future__ import annotations

import gc
from typing import Any

from benchmarks import model_side
from benchmarks.batching import batch_runner
from benchmarks.common import Context, load_images, log, median

TITLE = "5. GPU throughput (dummy weights)"
GPU_MODELS = {  # ~2B and ~7B architectures; only config.json is needed (weights: dummy)
    "qwen2_vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf",
}


def bench_gpu(
    coco: Any,
    n_images: int,
    repeats: int,
    batch_sizes: list[int],
    precisions: list[str],
    max_new_tokens: int,
    models: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Dummy (random, real-size) weights: only each model's config.json is read, from the HF cache or the
    hub (run with HF_HUB_OFFLINE=0 where the configs are not cached), or from a local folder."""
    import torch

    if not torch.cuda.is_available():
        log("  no GPU: skipped")
        return {"skipped": "no GPU"}
    images = load_images(coco, max(n_images, max(batch_sizes)), 448)
    rows = []
    for name, model_id in (models or GPU_MODELS).items():
        for precision in precisions:
            try:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                captioner = model_side.load_captioner(model_id, precision, weights_mode="dummy")
            except Exception as err:  # e.g. config.json not reachable offline, bitsandbytes missing
                rows.append({"model": name, "precision": precision, "error": f"{type(err).__name__}: {err}"})
                log(f"  {name} {precision}: load failed: {err}")
                continue
            for bs in batch_sizes:
                batch_images = images[: max(bs, n_images)]
                runner = batch_runner(captioner, batch_images, bs, max_new_tokens)
                try:
                    runner()  # warm-up (CUDA kernels, allocator)
                    torch.cuda.reset_peak_memory_stats()
                    secs = []
                    for _ in range(repeats):
                        torch.cuda.synchronize()
                        secs.append(runner())
                        torch.cuda.synchronize()
                    ips = len(batch_images) / median(secs)
                    rows.append({
                        "model": name,
                        "model_id": model_id,
                        "precision": precision,
                        "batch_size": bs,
                        "images_per_sec": ips,
                        "tokens_per_sec": ips * max_new_tokens,
                        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
                        **model_side.load_facts(captioner),
                    })
                    log(f"  {name} {precision} batch {bs}: {ips:.2f} img/s, "
                        f"{rows[-1]['peak_memory_gb']:.1f} GB peak")
                except torch.cuda.OutOfMemoryError:
                    rows.append({"model": name, "precision": precision, "batch_size": bs, "error": "oom"})
                    torch.cuda.empty_cache()
            del captioner
            gc.collect()
            torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(0),
        "weights": "dummy (random, real size)",
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "image_max_side": 448,
        "repeats": repeats,
        "rows": rows,
    }


def run(ctx: Context) -> dict[str, Any]:
    return bench_gpu(ctx.coco, 8 if ctx.quick else 32, ctx.repeats, [1, 8, 16], ["bf16", "int8", "nf4"], 32,
                     ctx.gpu_models)
