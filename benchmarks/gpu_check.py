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
from pathlib import Path
from typing import Any

from benchmarks.gpu_archs import PROMPT, Parts, architectures, save_for_host, synthetic_images


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
