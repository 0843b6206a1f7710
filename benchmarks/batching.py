"""1. Batching: the HF captioner on batches of 1-16 vs a notebook's per-image transformers loop."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from benchmarks import model_side
from benchmarks.common import PROMPT, Context, load_images, log, median

TITLE = "1. batching: HF actor vs per-image transformers loop"
MODEL = "tiny:llava"
BATCH_SIZES = [1, 4, 8, 16]
MAX_NEW_TOKENS = 12


def per_image_loop(path: str, images: list[Any], max_new_tokens: int) -> Callable[[], float]:
    """A user's notebook: load once with plain transformers, then caption one image at a time."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)

    def run() -> float:
        start = time.perf_counter()
        for img in images:
            inputs = processor(text=text, images=img, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False
                )
            processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return time.perf_counter() - start

    return run


def batch_runner(captioner: Any, images: list[Any], batch_size: int, max_new_tokens: int
                 ) -> Callable[[], float]:
    """Seconds to caption every image at this batch size, exactly max_new_tokens each (asserted)."""
    settings = model_side.exact_length_generation(PROMPT, max_new_tokens)

    def run() -> float:
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            items = [(str(i + j), img) for j, img in enumerate(images[i : i + batch_size])]
            results = model_side.caption(captioner, items, PROMPT, settings)
            assert all(tokens == max_new_tokens for _, tokens in results), "lengths differ"
        return time.perf_counter() - start

    return run


def bench_batching(coco: Any, n_images: int, repeats: int, batch_sizes: list[int], max_new_tokens: int
                   ) -> dict[str, Any]:
    images = load_images(coco, n_images, 224)
    path = model_side.model_path(MODEL)
    per_image_loop(path, images[:2], max_new_tokens)()  # warm-up
    loop = per_image_loop(path, images, max_new_tokens)
    captioner = model_side.load_captioner(MODEL, "fp32")
    runners = {bs: batch_runner(captioner, images, bs, max_new_tokens) for bs in batch_sizes}
    runners[batch_sizes[-1]]()  # warm-up
    times: dict[str, list[float]] = {"loop": []} | {str(bs): [] for bs in batch_sizes}
    for r in range(repeats):  # interleaved, so a noisy neighbour hits every variant alike
        times["loop"].append(loop())
        for bs in batch_sizes:
            times[str(bs)].append(runners[bs]())
        last = ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
        log(f"  batching repeat {r + 1}/{repeats}: {last}")
    rows = []
    for bs in batch_sizes:
        ips = n_images / median(times[str(bs)])
        # per-repeat ratios (side by side), then their median
        ratios = [lt / bt for lt, bt in zip(times["loop"], times[str(bs)], strict=True)]
        rows.append({
            "batch_size": bs,
            "seconds_median": median(times[str(bs)]),
            "images_per_sec": ips,
            "tokens_per_sec": ips * max_new_tokens,
            "ratio_vs_loop": median(ratios),
        })
    del captioner
    gc.collect()
    return {
        "model": MODEL,
        "precision": "fp32",
        "n_images": n_images,
        "image_max_side": 224,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "repeats": repeats,
        "loop_seconds_median": median(times["loop"]),
        "loop_images_per_sec": n_images / median(times["loop"]),
        "batches": rows,
        "raw_seconds": times,
        "target": "batch 8 >= 3x the per-image loop",
        "target_met": next(r["ratio_vs_loop"] for r in rows if r["batch_size"] == 8) >= 3
        if 8 in batch_sizes
        else None,
    }


def run(ctx: Context) -> dict[str, Any]:
    return bench_batching(ctx.coco, 8 if ctx.quick else 32, ctx.repeats, BATCH_SIZES, MAX_NEW_TOKENS)
