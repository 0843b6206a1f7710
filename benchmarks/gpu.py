"""5. GPU throughput: `benchmarks.gpu_check` (real-size Qwen2-VL-2B and LLaVA-1.5-7B architectures, random
weights, bf16 and bitsandbytes, batch 1/8/32, by hand and through the model host) run as a section of
`run.py`. Runs only where `torch.cuda.is_available()`. The check itself needs no Ray, MLflow or `sweep`:
on a bare GPU machine run `python -m benchmarks.gpu_check --out DIR` instead."""

from __future__ import annotations

import json
from typing import Any

from benchmarks import gpu_check
from benchmarks.common import Context, log

TITLE = "5. GPU throughput (random weights, real sizes)"


def run(ctx: Context) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        log("  no GPU: skipped")
        return {"skipped": "no GPU"}
    out = ctx.work / "gpu-check"
    repeats = ["--repeats", str(ctx.repeats)]
    if gpu_check.main(["--out", str(out), *repeats, *(["--batch-sizes", "1,8"] if ctx.quick else [])]) != 0:
        return {"skipped": "gpu_check refused to run"}
    result = json.loads((out / "gpu_check.json").read_text())
    return {**result, "device": result["machine"]["device"], "max_new_tokens": result["new_tokens"]}
