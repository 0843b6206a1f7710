"""10. HF batches with less padding (issue 18, item 3): the tiny Qwen2-VL over COCO images of mixed sizes,
each batch generated as one padded batch and grouped by prompt length, side by side in one run.

Qwen2-VL's dynamic resolution gives an image as many tokens as its pixels allow (the real checkpoints:
4 to 16,384); the tiny model's processor is capped at 6, so here it is widened to `MAX_PIXELS` (up to 128
image tokens: what a 448 px image gets from the real processor at a 100k-pixel cap). Half the images are
resized to `SMALL_SIDE`, half to `LARGE_SIDE`, alternating, so every batch mixes both. Per variant: pad
tokens (zeros of the attention masks of every generate() call), seconds per batch (the host's
`batch_wall`: every group of a batch is in its latency), images/s, and whether the captions are identical
(greedy)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import model_side
from benchmarks.common import PROMPT, Context, load_images, log, median

TITLE = "10. HF padding: one padded batch vs groups by prompt length (tiny Qwen2-VL, mixed image sizes)"
MODEL = "tiny:qwen2_vl"
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 128  # 128 merged image tokens at most
SMALL_SIDE, LARGE_SIDE = 64, 448
BATCH_SIZE = 8
MAX_NEW_TOKENS = 12


def widen_pixels(processor: Any, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> None:
    """Give a Qwen2-VL processor the pixel range of a real checkpoint (the tiny one's is 1-6 tokens)."""
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}


def widened_copy(model_path: str, dest: Path, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS
                 ) -> Path:
    """A copy of a Qwen2-VL folder whose saved processor has `widen_pixels`'s range: for processors loaded
    in other processes (the decode tasks) from the files, where widening one object in memory does not
    reach."""
    import json
    import shutil

    shutil.copytree(model_path, dest, dirs_exist_ok=True)
    config = dest / "processor_config.json"
    data = json.loads(config.read_text())
    data["image_processor"]["size"] = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    config.write_text(json.dumps(data, indent=2))
    return dest


def mixed_images(coco: Any, n: int) -> list[Any]:
    """n coco-mini images, alternately small and large (every batch of an even size mixes both)."""
    small, large = load_images(coco, n, SMALL_SIDE), load_images(coco, n, LARGE_SIDE)
    return [small[i] if i % 2 == 0 else large[i] for i in range(n)]


def bench_padding(coco: Any, n_images: int, repeats: int) -> dict[str, Any]:
    images = mixed_images(coco, n_images)
    captioner = model_side.load_captioner(MODEL, "fp32")
    widen_pixels(captioner.processor)
    kwargs = model_side.exact_length_generation(PROMPT, MAX_NEW_TOKENS)
    batches = [images[i : i + BATCH_SIZE] for i in range(0, n_images, BATCH_SIZE)]
    model_side.generate_padding(captioner, batches[0], PROMPT, kwargs, grouped=True)  # warm-up
    seconds: dict[str, list[float]] = {"padded": [], "grouped": []}
    pads: dict[str, int] = {}
    captions: dict[str, list[str]] = {}
    for r in range(repeats):  # interleaved, so a noisy neighbour hits both alike
        for variant in ("padded", "grouped") if r % 2 == 0 else ("grouped", "padded"):
            start = time.perf_counter()
            outs = [model_side.generate_padding(captioner, b, PROMPT, kwargs, variant == "grouped")
                    for b in batches]
            seconds[variant].append(time.perf_counter() - start)
            captions[variant] = [c for caps, _ in outs for c in caps]
            pads[variant] = sum(p for _, p in outs)
        last = ", ".join(f"{k} {v[-1]:.2f}s" for k, v in seconds.items())
        log(f"  padding repeat {r + 1}/{repeats}: {last}")
    same = sum(a == b for a, b in zip(captions["padded"], captions["grouped"], strict=True))
    ratios = [g / p for g, p in zip(seconds["grouped"], seconds["padded"], strict=True)]
    return {
        "model": MODEL, "precision": "fp32", "n_images": n_images, "batch_size": BATCH_SIZE,
        "image_sides": [SMALL_SIDE, LARGE_SIDE], "max_pixels": MAX_PIXELS, "max_new_tokens": MAX_NEW_TOKENS,
        "repeats": repeats,
        "pad_tokens_padded": pads["padded"], "pad_tokens_grouped": pads["grouped"],
        "ratio_pad_tokens": pads["grouped"] / pads["padded"] if pads["padded"] else float("nan"),
        "seconds_per_batch_padded": median(seconds["padded"]) / len(batches),
        "seconds_per_batch_grouped": median(seconds["grouped"]) / len(batches),
        "images_per_sec_padded": n_images / median(seconds["padded"]),
        "images_per_sec_grouped": n_images / median(seconds["grouped"]),
        "ratio_seconds_grouped_vs_padded": median(ratios),
        "identical_captions": same,
        "compared_captions": n_images,
        "raw_seconds": seconds,
    }


def run(ctx: Context) -> dict[str, Any]:
    return bench_padding(ctx.coco, 8 if ctx.quick else 32, ctx.repeats)
