"""Real vLLM (CPU build) end to end: tiny LLaVA -> make_captioner(backend="vllm") -> captions.

Run with the python of .vllm-venv (built by .ci/vllm_venv.sh); tests/test_vllm_cpu.py does that:

    .vllm-venv/bin/python .ci/vllm_cpu_check.py --images ../shared/data/coco-mini/val2017 --json out.json

Prints (and writes with --json) one JSON object: captions, generated token counts, the load report and
timings. vLLM starts worker processes, hence the `__main__` guard. A CI helper, not part of the product:
it imports `actors` from the checkout it sits in (put first on the path below, so a .vllm-venv built by
another checkout still tests this one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    }
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    sys.stdout.flush()
    captioner.close()  # else the engine core and worker processes outlive this one
    # vLLM's atexit handlers can keep the interpreter alive on the way out: leave at once.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
