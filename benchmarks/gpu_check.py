"""GPU check: real-size Qwen2-VL-2B and LLaVA-1.5-7B architectures, random weights, on a bare CUDA machine.

    python -m benchmarks.gpu_check --out DIR            # on a CUDA machine, from the repo root
    python -m benchmarks.gpu_check --out DIR --tiny     # the same code, sizes scaled down, on CPU

Needs torch, transformers (5.x), accelerate, Pillow, numpy (and torchvision for Qwen2-VL's processors),
nothing else: no Ray, MLflow, vLLM, bitsandbytes, pycocoevalcap, network or hub. The architectures are
built from their transformers configuration classes with the sizes written below (copied from the
checkpoints' config.json), a tokenizer of the real vocabulary size is built locally (a byte-level BPE
trained in memory, padded with filler tokens, the special tokens at their real ids), and the images are
synthetic. Per model, bf16, batch 1/8/32, exactly `--new-tokens` new tokens (min_new_tokens = max_new_tokens,
so random weights never stop early):

- `bare`: what a user writes by hand (processor + `model.generate`), the model built directly on the GPU;
- `host`: the project's model host (`actors.model_host.ModelHost`, weights "dummy": random weights from the
  saved config, loaded by `actors.hf.HFCaptioner`), fed `SampleBatch`es as a cell feeds it.

images/s and tokens/s (median over repeats after one warm-up batch), peak GPU memory
(`torch.cuda.max_memory_allocated`: the allocator's peak of live tensors, without the CUDA context and the
allocator's cache; reset after the warm-up), load seconds. bitsandbytes precisions (int8, nf4) through the
host when bitsandbytes imports, else rows marked skipped. A time budget (`--budget-s`, default 420 s)
skips whatever would start after it, so the check ends inside 8 minutes. Output: DIR/gpu_check.json and
DIR/gpu_check.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT = "Describe the image."
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


@dataclass(frozen=True)
class Sizes:
    """The numbers that make an architecture real-size or tiny; everything else is the same code."""

    vocab_size: int
    text: dict[str, Any]
    vision: dict[str, Any]
    image_side: int  # synthetic images are image_side x image_side
    first_special: int  # id of the first special token of the checkpoint's tokenizer


# Qwen/Qwen2-VL-2B-Instruct config.json: Qwen2 decoder 1536 wide, 28 layers, 12 heads (head_dim 128, 2 KV
# heads), ViT 1280 wide, 32 layers, 2x2 merger; vocabulary 151936, specials from 151643 (<|endoftext|>).
QWEN2_VL_2B = Sizes(
    vocab_size=151936,
    text=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
              num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
              tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=1536, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2),
    image_side=448,
    first_special=151643,
)
QWEN2_VL_TINY = Sizes(
    vocab_size=1024,
    text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, max_position_embeddings=2048, rms_norm_eps=1e-6,
              tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]}),
    vision=dict(depth=2, embed_dim=32, mlp_ratio=2, num_heads=2, hidden_size=128, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2),
    image_side=112,
    first_special=1000,
)
# llava-hf/llava-1.5-7b-hf config.json: CLIP ViT-L/14 at 336 px (576 image tokens) + Llama-2-7B (4096 wide,
# 32 layers, 32 heads); vocabulary 32064, <image> 32000, <pad> 32001.
LLAVA_15_7B = Sizes(
    vocab_size=32064,
    text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
              tie_word_embeddings=False),
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
    image_side=448,
    first_special=32000,
)
LLAVA_TINY = Sizes(
    vocab_size=512,
    text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5,
              tie_word_embeddings=False),
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=56, patch_size=14, projection_dim=32, hidden_act="quick_gelu"),
    image_side=112,
    first_special=480,
)


def sized_tokenizer(vocab_size: int, specials: dict[str, int], **kwargs: Any):
    """A byte-level BPE tokenizer of exactly `vocab_size` ids: a small BPE trained in memory on captions
    (testkit's corpus), filler tokens up to the size, and `specials` at their given ids (the checkpoint's).
    Fillers are never produced by encoding (no merge leads to them); random weights may generate them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from testkit.tiny.common import train_bpe_tokenizer

    trained = json.loads(train_bpe_tokenizer(vocab_size=384, special_tokens=[]).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    learned = sorted(trained["vocab"], key=trained["vocab"].get)
    by_id = {i: tok for tok, i in specials.items()}
    if len(by_id) != len(specials) or max(by_id) >= vocab_size or len(learned) + len(specials) > vocab_size:
        raise ValueError(f"specials {specials} do not fit a vocabulary of {vocab_size}")
    pool = iter(learned)
    vocab = {}
    for i in range(vocab_size):
        vocab[by_id[i] if i in by_id else next(pool, f"<|fill_{i}|>")] = i
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))  # already in the vocabulary: they keep their ids
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="left", model_max_length=32768,
                                        clean_up_tokenization_spaces=False, **kwargs)
    if len(tokenizer) != vocab_size:
        raise AssertionError(f"tokenizer has {len(tokenizer)} ids, expected {vocab_size}")
    return tokenizer


@dataclass
class Parts:
    """An architecture ready to build: config, processor, generation config, and what it stands for."""

    name: str
    stands_for: str
    config: Any
    processor: Any
    generation_config: Any
    image_side: int


def qwen2_vl_parts(sizes: Sizes) -> Parts:
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from testkit.tiny.common import QWEN2_VL_CHAT_TEMPLATE

    ids = {tok: sizes.first_special + i for i, tok in enumerate(QWEN_SPECIALS)}
    tokenizer = sized_tokenizer(
        sizes.vocab_size, ids, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
        chat_template=QWEN2_VL_CHAT_TEMPLATE)
    special = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                   pad_token_id=ids["<|endoftext|>"])
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=sizes.vocab_size, **sizes.text, **special),
        vision_config=dict(sizes.vision),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=sizes.text["tie_word_embeddings"],
    )
    # the checkpoint's preprocessor: 56x56 to 3584x3584 pixels, 14-px patches merged 2x2
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
    patches = dict(patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **patches),
        video_processor=Qwen2VLVideoProcessor(size=size, **patches),
        tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    gen = GenerationConfig(do_sample=False, num_beams=1, bos_token_id=special["bos_token_id"],
                           pad_token_id=special["pad_token_id"],
                           eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]])
    return Parts("qwen2_vl-2b", "Qwen/Qwen2-VL-2B-Instruct", config, processor, gen, sizes.image_side)


def llava_parts(sizes: Sizes) -> Parts:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaProcessor,
    )

    from actors.families.llava import LLAVA_CHAT_TEMPLATE

    image_id, pad_id = sizes.first_special, sizes.first_special + 1
    ids = {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": image_id, "<pad>": pad_id}
    tokenizer = sized_tokenizer(sizes.vocab_size, ids, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>", add_bos_token=True, chat_template=LLAVA_CHAT_TEMPLATE,
                                extra_special_tokens={"image_token": "<image>"})
    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=pad_id)
    vision = CLIPVisionConfig(**sizes.vision)
    side = sizes.vision["image_size"]
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(vocab_size=sizes.vocab_size, **sizes.text, **special),
        image_token_index=image_id, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_seq_length=(side // sizes.vision["patch_size"]) ** 2,
        **special,
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side},
                                           crop_size={"height": side, "width": side}),
        tokenizer=tokenizer, chat_template=LLAVA_CHAT_TEMPLATE, patch_size=sizes.vision["patch_size"],
        vision_feature_select_strategy="default", num_additional_image_tokens=1, image_token="<image>",
    )
    gen = GenerationConfig(do_sample=False, num_beams=1, **special)
    return Parts("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", config, processor, gen, sizes.image_side)


def architectures(tiny: bool) -> list[Callable[[], Parts]]:
    """The two architectures, built when called (the 2B's 152k-token tokenizer takes a few seconds)."""

    def named(parts: Parts) -> Parts:
        if tiny:  # the same code at toy sizes: never to be read as the real model's numbers
            parts.name += "-tiny"
        return parts

    return [lambda: named(qwen2_vl_parts(QWEN2_VL_TINY if tiny else QWEN2_VL_2B)),
            lambda: named(llava_parts(LLAVA_TINY if tiny else LLAVA_15_7B))]


def synthetic_images(n: int, side: int, seed: int = 0) -> list[Any]:
    """n different RGB images (colour gradients plus noise), uint8 HxWx3 arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    out = []
    for _ in range(n):
        base = rng.uniform(0, 255, size=3).astype(np.float32)
        img = base * ramp[None, :, None] + (255 - base) * ramp[:, None, None]
        img = img + rng.normal(0, 20, size=(side, side, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def save_for_host(parts: Parts, folder: Path) -> Path:
    """config.json + processor + generation_config.json, no weights: what `weights: dummy` loads."""
    folder.mkdir(parents=True, exist_ok=True)
    parts.config.save_pretrained(folder)
    parts.processor.save_pretrained(folder)
    parts.generation_config.save_pretrained(folder)
    return folder


class Clock:
    """Seconds left of the check's time budget."""

    def __init__(self, budget_s: float):
        self.deadline = time.perf_counter() + budget_s

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def timed(call: Callable[[], int], repeats: int) -> tuple[float, int]:
    """(median seconds, tokens of the last call) over `repeats` calls after one warm-up call; the peak
    memory is reset after the warm-up (kernels, allocator growth and cuBLAS workspaces are not counted)."""
    call()
    sync()
    reset_peak()
    secs, tokens = [], 0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        tokens = call()
        sync()
        secs.append(time.perf_counter() - start)
    return statistics.median(secs), tokens


def row(parts: Parts, path: str, precision: str, bs: int, secs: float, tokens: int, load_s: float,
        weight_bytes: int, peak_memory_gb: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "model": parts.name, "stands_for": parts.stands_for, "path": path, "precision": precision,
        "batch_size": bs, "seconds_per_batch": secs, "images_per_sec": bs / secs,
        "tokens_per_sec": tokens / secs,
        "generated_tokens_per_batch": tokens, "peak_memory_gb": peak_memory_gb, "load_seconds": load_s,
        "weight_gb": weight_bytes / 1e9, **extra,
    }


def bare_path(parts: Parts, batch_sizes: list[int], new_tokens: int, repeats: int, clock: Clock,
              log: Callable[[str], None]) -> list[dict[str, Any]]:
    """By hand: the model built from its config directly on the device in bf16, processor + generate."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    reset_peak()
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(parts.config, dtype=torch.bfloat16)
    model.eval()
    model.generation_config = parts.generation_config
    sync()
    load_s = time.perf_counter() - start
    weight_bytes = int(model.get_memory_footprint())
    parameters = sum(p.numel() for p in model.parameters())
    images = [Image.fromarray(a) for a in synthetic_images(max(batch_sizes), parts.image_side)]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = parts.processor.apply_chat_template(messages, add_generation_prompt=True)
    rows = []
    for bs in batch_sizes:
        if clock.left() <= 0:
            rows.append({"model": parts.name, "path": "bare", "precision": "bf16", "batch_size": bs,
                         "skipped": "time budget spent"})
            continue

        def call(bs: int = bs) -> int:
            inputs = parts.processor(text=[text] * bs, images=images[:bs], padding=True, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                     do_sample=False)
            parts.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            return int(out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1]))

        try:
            secs, tokens = timed(call, repeats)
        except torch.cuda.OutOfMemoryError:
            rows.append({"model": parts.name, "path": "bare", "precision": "bf16", "batch_size": bs,
                         "error": "CUDA out of memory"})
            free_memory()
            continue
        rows.append(row(parts, "bare", "bf16", bs, secs, tokens, load_s, weight_bytes, peak_gb(),
                        parameters=parameters))
        log(f"  {parts.name} bare bf16 batch {bs}: {bs / secs:.2f} img/s, {tokens / secs:.0f} tok/s")
    return rows  # the caller frees the model's memory once this frame is gone


def host_path(parts: Parts, folder: Path, precision: str, batch_sizes: list[int], new_tokens: int,
              repeats: int, clock: Clock, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Through the project's model host: `ModelHost` loads the saved config with weights "dummy" (random,
    real size) and captions `SampleBatch`es of decoded pixels, as a cell's batches reach it."""
    import torch

    from actors.contract import GenerationSettings, LoadSpec, ModelRef, SampleBatch
    from actors.model_host import ModelHost

    reset_peak()
    start = time.perf_counter()
    host = ModelHost(LoadSpec(ModelRef(id=str(folder), weights="dummy"), precision=precision, backend="hf"),
                     energy_country=None)
    sync()
    load_s = time.perf_counter() - start
    report = host.captioner.report
    pixels = synthetic_images(max(batch_sizes), parts.image_side)
    settings = GenerationSettings(prompt=PROMPT, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    rows = []
    for bs in batch_sizes:
        if clock.left() <= 0:
            rows.append({"model": parts.name, "path": "host", "precision": precision, "batch_size": bs,
                         "skipped": "time budget spent"})
            continue
        side = parts.image_side
        batch = SampleBatch([f"s{i}" for i in range(bs)], [""] * bs, [side] * bs, [side] * bs,
                            pixels=pixels[:bs])
        cell = f"{parts.name}/{precision}/b{bs}"
        host.begin_cell(cell, settings)
        results: list[Any] = []

        def call(batch: SampleBatch = batch, cell: str = cell, results: list[Any] = results) -> int:
            result = host.caption(batch, settings, cell)
            errors = [s.error for s in result.samples if s.error]
            if errors:
                raise RuntimeError(f"host captioning failed: {errors[0]}")
            results.append(result)
            return sum(s.generated_tokens for s in result.samples)

        try:
            secs, tokens = timed(call, repeats)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:  # the host raises oom as RuntimeError
            rows.append({"model": parts.name, "path": "host", "precision": precision, "batch_size": bs,
                         "error": f"{type(err).__name__}: {err}"[:300]})
            free_memory()
            continue
        host_peak = max(r.peak_memory_bytes for r in results[1:]) if torch.cuda.is_available() else None
        rows.append(row(parts, "host", precision, bs, secs, tokens, load_s, report.weight_bytes,
                        host_peak / 1e9 if host_peak is not None else None,
                        host_load_seconds=report.load_seconds,
                        host_latency_sec=statistics.median(r.latency_sec for r in results[1:])))
        log(f"  {parts.name} host {precision} batch {bs}: {bs / secs:.2f} img/s, {tokens / secs:.0f} tok/s")
    return rows  # the caller frees the model's memory once this frame is gone


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("torch", "transformers", "accelerate", "torchvision", "bitsandbytes", "tokenizers", "pillow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "versions": versions,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# GPU check ({'tiny sizes, ' if result['tiny'] else ''}{m['device']})",
        "",
        f"{result['date']}; torch {m['versions']['torch']}, transformers {m['versions']['transformers']}, "
        f"CUDA {m['cuda']}; random weights at {'tiny' if result['tiny'] else 'the real'} size; "
        f"{result['new_tokens']} new tokens (= min_new_tokens); {result['repeats']} timed repeats after a "
        "warm-up; "
        f"{result['wall_seconds']:.0f} s in all. Peak memory: {result['peak_memory']}.",
        "",
        "| model | path | precision | batch | images/s | tokens/s | s/batch | peak GB | load s | weight GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    for r in result["rows"]:
        if "images_per_sec" not in r:
            why = r.get("error") or r.get("skipped")
            lines.append(f"| {r['model']} | {r.get('path', '-')} | {r['precision']} "
                         f"| {r.get('batch_size', '-')} | {why} | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['path']} | {r['precision']} | {r['batch_size']} "
            f"| {r['images_per_sec']:.2f} "
            f"| {r['tokens_per_sec']:.0f} | {r['seconds_per_batch']:.3f} | {num(r['peak_memory_gb'], '.2f')} "
            f"| {r['load_seconds']:.1f} | {r['weight_gb']:.2f} |")
    ratios = result.get("host_vs_bare", [])
    if ratios:
        lines += ["", "host images/s / bare images/s (same model, bf16, same batch): "
                  + ", ".join(f"{x['model']} b{x['batch_size']} {x['ratio']:.2f}" for x in ratios)]
    return "\n".join(lines) + "\n"


def host_vs_bare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bare = {(r["model"], r["batch_size"]): r for r in rows
            if r.get("path") == "bare" and "images_per_sec" in r}
    return [{"model": r["model"], "batch_size": r["batch_size"],
             "ratio": r["images_per_sec"] / bare[(r["model"], r["batch_size"])]["images_per_sec"]}
            for r in rows if r.get("path") == "host" and r.get("precision") == "bf16"
            and "images_per_sec" in r and (r["model"], r["batch_size"]) in bare]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--tiny", action="store_true", help="the same architectures scaled down (runs on CPU)")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=420.0, help="start nothing new after this many seconds")
    args = p.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes: comma-separated integers expected, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or args.new_tokens < 1 or args.repeats < 1:
        p.error("--batch-sizes, --new-tokens and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    import os

    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched: every file is made here
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; real-size models need one (--tiny runs the same code scaled "
              "down on CPU)", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.perf_counter()
    clock = Clock(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, "-m", "benchmarks.gpu_check", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "tiny": args.tiny, "machine": machine(), "weights": "random (built from the config classes)",
        "new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "repeats": args.repeats,
        "batch_sizes": args.batch_sizes,
        "peak_memory": "torch.cuda.max_memory_allocated (allocator peak of live tensors, no CUDA context "
                       "or cache), reset after the warm-up batch" if torch.cuda.is_available()
                       else "not measured on CPU",
        "rows": [],
    }

    def write() -> None:
        result["wall_seconds"] = time.perf_counter() - started
        result["host_vs_bare"] = host_vs_bare(result["rows"])
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "gpu_check.md").write_text(render(result))

    quantized = ["int8", "nf4"] if has_bnb and torch.cuda.is_available() else []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        built = []
        for make in architectures(args.tiny):
            parts = make()
            built.append((parts, save_for_host(parts, Path(tmp) / parts.name)))
            log(f"{parts.name} (stands for {parts.stands_for}): bf16")
            for path in ("bare", "host"):
                if clock.left() <= 0:
                    result["rows"].append({"model": parts.name, "path": path, "precision": "bf16",
                                           "skipped": "time budget spent"})
                    continue
                try:
                    if path == "bare":
                        rows = bare_path(parts, args.batch_sizes, args.new_tokens, args.repeats, clock, log)
                    else:
                        rows = host_path(parts, built[-1][1], "bf16", args.batch_sizes, args.new_tokens,
                                         args.repeats, clock, log)
                except Exception as err:  # a load failure is a row; the other model still runs
                    rows = [{"model": parts.name, "path": path, "precision": "bf16",
                             "error": f"{type(err).__name__}: {err}"[:500]}]
                    log(f"  {parts.name} {path}: {rows[0]['error']}")
                free_memory()
                result["rows"] += rows
                write()
        for parts, folder in built:  # bitsandbytes last: its dummy load saves and reloads the float model
            for precision in ("int8", "nf4"):
                if precision not in quantized:
                    why = "bitsandbytes not installed" if not has_bnb else "bitsandbytes needs CUDA here"
                    result["rows"].append({"model": parts.name, "path": "host", "precision": precision,
                                           "skipped": why})
                    continue
                if clock.left() <= 0:
                    result["rows"].append({"model": parts.name, "path": "host", "precision": precision,
                                           "skipped": "time budget spent"})
                    continue
                try:
                    result["rows"] += host_path(parts, folder, precision, args.batch_sizes, args.new_tokens,
                                                args.repeats, clock, log)
                except Exception as err:
                    result["rows"].append({"model": parts.name, "path": "host", "precision": precision,
                                           "error": f"{type(err).__name__}: {err}"[:500]})
                free_memory()
                write()
    write()
    log(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'} "
        f"({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
