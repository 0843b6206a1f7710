"""Real vLLM (CPU build) end to end: tiny LLaVA -> make_captioner(backend="vllm") -> captions.

Run with the python of .vllm-venv (built by .ci/vllm_venv.sh); tests/test_vllm_cpu.py does that:

    .vllm-venv/bin/python .ci/vllm_cpu_check.py --images ../shared/data/coco-mini/val2017 --json out.json

Prints (and writes with --json) one JSON object: captions, generated token counts, the load report and
timings; with --window-n, the host path (windows of batches per vLLM call, vLLM's request timings) side by
side with a bare `llm.generate` of the same inputs (benchmarks/README.md, section 10).
vLLM starts worker processes, hence the `__main__` guard. A CI helper, not part of the product:
it imports `actors` from the checkout it sits in (put first on the path below, so a .vllm-venv built by
another checkout still tests this one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))


def hub_layout_llava(src: Path, dst: Path) -> Path:
    """A copy of a tiny LLaVA whose weight names follow the llava-hf hub checkpoints, which vLLM loads.

    transformers 5.x saves the CLIP tower as `vision_tower.embeddings...`; the hub checkpoints (and vLLM's
    loader) have `vision_tower.vision_model.embeddings...`. Everything else is copied as it is."""
    from safetensors.torch import load_file, save_file

    if (dst / "model.safetensors").is_file():
        return dst
    tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    tensors = load_file(src / "model.safetensors")
    renamed = {
        (k.replace("vision_tower.", "vision_tower.vision_model.", 1)
         if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.") else k): v
        for k, v in tensors.items()
    }
    save_file(renamed, tmp / "model.safetensors", metadata={"format": "pt"})
    os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True, help="folder of .jpg images")
    parser.add_argument("--n", type=int, default=4, help="images to caption")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--beams", type=int, default=2, help="also caption with beam search of this width")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--window-n", type=int, default=0,
                        help="also caption this many images through ModelHost.caption_window (batches of "
                        "--batch-size, the captioner's batches_per_call per call) and, side by side, through "
                        "a bare vllm.LLM.generate over the same prompts and images (0: skip)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of host path / bare, alternated")
    parser.add_argument("--cold-n", type=int, default=0,
                        help="also run two cells over the same this many images on the one engine, in both "
                        "orders, through ModelHost as a sweep does, reading vLLM's prefix-cache hits at "
                        "each cell's start (0: skip)")
    args = parser.parse_args(argv)

    from PIL import Image

    from actors.backends import make_captioner
    from actors.contract import CaptionRequest
    from actors.resolve import resolve_model

    t_build = time.perf_counter()
    tiny, _ = resolve_model("tiny:llava")  # built (or reused) in $VLM_SWEEP_CACHE
    path = hub_layout_llava(Path(tiny), Path(tiny).with_name("llava-hub-layout"))
    build_s = time.perf_counter() - t_build
    t0 = time.perf_counter()
    # 4 batches per generate() call unless the caller says otherwise: a small --window-n still windows
    os.environ.setdefault("VLM_SWEEP_VLLM_BATCHES_PER_CALL", "4")
    # the family is named, as in a grid; weights are random (a tiny model): logged as such via weights_mode
    captioner = make_captioner(str(path), "llava", None, False, "fp32", "vllm", weights_mode="real")
    captioner.report.weights = "random"
    engine_start = time.perf_counter() - t0

    paths = sorted(args.images.glob("*.jpg"))[: args.n]
    requests = [
        CaptionRequest(p.stem, [Image.open(p).convert("RGB")], "Describe this image in one sentence.")
        for p in paths
    ]
    kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "repetition_penalty": 1.0,
              "min_new_tokens": 2}
    t1 = time.perf_counter()
    greedy = captioner.generate(requests, kwargs)
    greedy_s = time.perf_counter() - t1
    beam = []
    beam_s = 0.0
    if args.beams > 1:
        t2 = time.perf_counter()
        beam = captioner.generate(requests, {**kwargs, "num_beams": args.beams})
        beam_s = time.perf_counter() - t2
    window = host_vs_bare(captioner, args, kwargs) if args.window_n else {}
    cold = cold_cells(captioner, args) if args.cold_n else {}
    peak, peak_kind = captioner.peak_memory()
    result = {
        "sample_ids": [r.sample_id for r in requests],
        "captions": [r.caption for r in greedy],
        "generated_tokens": [r.generated_tokens for r in greedy],
        "beam_captions": [r.caption for r in beam],
        "beam_generated_tokens": [r.generated_tokens for r in beam],
        "max_new_tokens": args.max_new_tokens,
        "report": captioner.report.__dict__,
        "build_s": round(build_s, 2),
        "engine_start_s": round(engine_start, 2),
        "greedy_s": round(greedy_s, 2),
        "beam_s": round(beam_s, 2),
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "window": window,
        "cold": cold,
    }
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    sys.stdout.flush()
    captioner.close()  # else the engine core and worker processes outlive this one
    # vLLM's atexit handlers can keep the interpreter alive on the way out: leave at once.
    os._exit(0)



def image_batches(paths: list, ids: list[str], size: int) -> tuple[list, list]:
    """The images at 224 px, and them in host batches of `size` (ids in the order of paths)."""
    import numpy as np
    from PIL import Image

    from actors.contract import SampleBatch

    pixels = [np.asarray(Image.open(p).convert("RGB").resize((224, 224))) for p in paths]
    return pixels, [SampleBatch(ids[i:i + size], [""] * len(ids[i:i + size]), [224] * len(ids[i:i + size]),
                                [224] * len(ids[i:i + size]), pixels=pixels[i:i + size])
                    for i in range(0, len(ids), size)]


def host_vs_bare(captioner, args, kwargs: dict) -> dict:
    """The engine's host path (`ModelHost.caption_window`: pixels as the decode stage hands them, windows
    of `batches_per_call` batches) against a bare `llm.generate` of the same prompts and images with the
    same SamplingParams, and the host path at one batch per call (as before windowing), alternated
    `--rounds` times after one warm-up; images/s of the fastest round of each and their ratios to the bare
    call, plus what vLLM was given per call and its per-request timings."""
    from PIL import Image

    from actors.contract import CaptionRequest, GenerationSettings
    from actors.model_host import ModelHost

    paths = sorted(args.images.glob("*.jpg"))
    paths = [paths[i % len(paths)] for i in range(args.window_n)]
    ids = [f"{p.stem}-{i}" for i, p in enumerate(paths)]
    pixels, batches = image_batches(paths, ids, args.batch_size)
    per_call = captioner.batches_per_call
    host = ModelHost(None, None, captioner)
    settings = GenerationSettings(prompt="Describe this image in one sentence.",
                                  max_new_tokens=kwargs["max_new_tokens"], num_beams=1, min_new_tokens=2)
    host.begin_cell("window", settings)
    effective = host._kwargs(settings)
    bare_inputs = [captioner.engine_input(CaptionRequest(i, [Image.fromarray(x)], settings.prompt))
                   for i, x in zip(ids, pixels, strict=True)]
    params = captioner.sampling_params(effective)

    def host_path(per_call: int = per_call) -> list:
        results = []
        for first in range(0, len(batches), per_call):
            group = batches[first:first + per_call]
            results += host.caption_window(settings, "window", [len(b.sample_ids) for b in group], *group)
        return results

    def host_one_batch() -> list:  # as before windowing: one batch per generate() call
        return host_path(1)

    def bare() -> list:
        return captioner.llm.generate(bare_inputs, params, use_tqdm=False)

    times: dict[str, list[float]] = {"host": [], "bare": [], "host_one_batch": []}
    host_path(), bare()  # warm-up: the first multimodal requests pay vLLM's processor caches
    results: list = []
    calls: list[int] = []
    for _ in range(max(1, args.rounds)):
        for name, run in (("host", host_path), ("bare", bare), ("host_one_batch", host_one_batch)):
            captioner.calls.clear()
            t = time.perf_counter()
            out = run()
            times[name].append(time.perf_counter() - t)
            if name == "host":
                results, calls = out, list(captioner.calls)
    host_ips = args.window_n / min(times["host"])
    bare_ips = args.window_n / min(times["bare"])
    one_ips = args.window_n / min(times["host_one_batch"])
    samples = [s for r in results for s in r.samples]
    return {
        "n": args.window_n, "batch_size": args.batch_size, "batches_per_call": per_call,
        "rounds": args.rounds,
        "requests_per_generate_call": calls,
        **{f"{name}_seconds": [round(t, 3) for t in runs] for name, runs in times.items()},
        "host_images_per_s": round(host_ips, 2), "bare_images_per_s": round(bare_ips, 2),
        "host_one_batch_images_per_s": round(one_ips, 2),
        "host_over_bare": round(host_ips / bare_ips, 3),
        "host_one_batch_over_bare": round(one_ips / bare_ips, 3),
        # the machine may be shared: the ratio of the median rounds too
        "host_over_bare_median": round(
            statistics.median(times["bare"]) / statistics.median(times["host"]), 3),
        "latency_kinds": sorted({r.latency_kind for r in results}),
        "batch_latency_sec": [round(r.latency_sec, 3) for r in results],
        "request_e2e_sec": [round(s.request_e2e_sec, 3) for s in samples],
        "ttft_sec": [round(s.ttft_sec, 3) for s in samples],
        "captions": [s.caption for s in samples],
    }


def prefix_cache_hits(llm) -> float | None:
    """vLLM's own prefix-cache hit counter (tokens served from the cache since the engine started), from
    `LLM.get_metrics()`; None where this vLLM has no such counter."""
    try:
        metrics = llm.get_metrics()
    except Exception:  # noqa: BLE001 - an older vLLM: the per-request count still says it
        return None
    values = [getattr(m, "value", 0) for m in metrics if m.name == "vllm:prefix_cache_hits"]
    return float(sum(values)) if values else None


def cold_cells(captioner, args) -> dict:
    """Cells "t8" and "t6" (same prompt and images, 8 and 6 new tokens: one load serves both) run as a
    sweep runs them on one host (`begin_cell`, then windows of batches), in the order t8, t6, t6, t8:
    each cell once after the other. Per run: the prefix-cache hits of its first window, read from vLLM's
    own counter and from each request's `num_cached_tokens`, and its captions. Then a control with the
    caches kept (`reset_caches: false`, no warm-up): t8 then t6, where t6 reads t8's cached prefixes."""
    from actors.contract import GenerationSettings, Measurement
    from actors.model_host import ModelHost

    paths = sorted(args.images.glob("*.jpg"))[: args.cold_n]
    _, batches = image_batches(paths, [p.stem for p in paths], args.batch_size)
    per_call = captioner.batches_per_call
    host = ModelHost(None, None, captioner)
    cached: list[int] = []  # num_cached_tokens of every request since the last clear
    generate = captioner.llm.generate

    def counting_generate(*a, **kw):
        outputs = generate(*a, **kw)
        cached.extend(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outputs)
        return outputs

    captioner.llm.generate = counting_generate

    def run_cell(name: str, tokens: int, measurement: Measurement) -> dict:
        settings = GenerationSettings(prompt="Describe this image in one sentence.", max_new_tokens=tokens,
                                      num_beams=1, min_new_tokens=2)
        start = host.begin_cell(name, settings, measurement)
        results, first = [], {}
        for k, at in enumerate(range(0, len(batches), per_call)):
            group = batches[at:at + per_call]
            before = prefix_cache_hits(captioner.llm)
            cached.clear()
            results += host.caption_window(settings, name, [len(b.sample_ids) for b in group], *group)
            if k == 0:  # the cell's first window: after its warm-up, before anything else of its own
                after = prefix_cache_hits(captioner.llm)
                measured = cached[-sum(len(b.sample_ids) for b in group):]
                first = {"counter_hits": None if before is None or after is None else after - before,
                         "request_cached_tokens": sum(measured)}
        host.cells_before.pop(name, None)  # the next run of this cell begins as a new cell would
        return {"cell": name, "cache_policy": start.cache_policy, "warmup_batches": start.warmup_batches,
                **first, "captions": [s.caption for r in results for s in r.samples]}

    cold = Measurement(warmup_batches=1, reset_caches=True)
    runs = [run_cell(name, tokens, cold) for name, tokens in (("t8", 8), ("t6", 6), ("t6", 6), ("t8", 8))]
    kept = Measurement(warmup_batches=0, reset_caches=False)
    captioner.reset_caches()
    control = [run_cell(name, tokens, kept) for name, tokens in (("t8", 8), ("t6", 6))]
    captioner.llm.generate = generate
    return {"n": len(paths), "batch_size": args.batch_size, "batches_per_call": per_call, "runs": runs,
            "control": control}


if __name__ == "__main__":
    raise SystemExit(main())
