"""11. Precisions on CPU (issue 27): the two zoo models and the tiny Qwen2-VL at fp32, int8 and nf4
(bitsandbytes), int8wo and int4wo (torchao weight-only), side by side in one run, on the HF backend.

Per model and precision: images/s (greedy, `MAX_NEW_TOKENS` new tokens as a cell would generate them,
batch `BATCH_SIZE`, median of the repeats, precisions interleaved so a noisy neighbour hits all alike;
one warm-up batch first), the weight bytes as stored (`report.weight_bytes`: packed data and scales) against
the memory model's estimate (`sweep.plan.memory.weight_bytes` with the float modules at 4 bytes, as they
load on CPU), CIDEr-D with its 95% bootstrap interval over the zoo's 50 test images (toy weights trained on
synthetic shapes; the tiny Qwen2-VL has random weights: no CIDEr), and how many captions equal fp32's.
fp8 is not measured: no CPU has an fp8 kernel (it is refused); prequantized needs a quantized checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks import model_side
from benchmarks.common import PROMPT, REPO, Context, load_images, log, median

TITLE = "11. Precisions on CPU: fp32, int8, nf4 (bitsandbytes), int8wo, int4wo (torchao), zoo + tiny Qwen2-VL"
PRECISIONS = ["fp32", "int8", "nf4", "int8wo", "int4wo"]
ZOO = ["zoo/shapes-llava-small", "zoo/shapes-llava-base"]
TINY = "tiny:qwen2_vl"
ZOO_DATA = REPO / "zoo" / "shapes-data" / "test"
BATCH_SIZE = 8
MAX_NEW_TOKENS = 16
CPU_FLOAT_BYTES = 4.0  # the unquantized modules of a quantized precision load in fp32 on CPU


def zoo_samples(limit: int | None) -> tuple[list[str], list[Any], dict[str, list[str]]]:
    """(sample ids, PIL images at the quickstart's 64 px, references) of the zoo's test split."""
    from PIL import Image

    data = json.loads((ZOO_DATA / "captions.json").read_text())
    images = data["images"][:limit] if limit else data["images"]
    refs: dict[str, list[str]] = {}
    for ann in data["annotations"]:
        refs.setdefault(str(ann["image_id"]), []).append(ann["caption"])
    ids = [str(im["id"]) for im in images]
    pil = [Image.open(ZOO_DATA / "images" / im["file_name"]).convert("RGB") for im in images]
    return ids, pil, {i: refs.get(i, []) for i in ids}


def cider_with_interval(captions: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    """Corpus CIDEr-D (document frequencies from these references) and its bootstrap interval, by the
    sweep's own scorer and statistics."""
    import pandas as pd

    from sweep.quality.scoring import cider_d, tokenize
    from sweep.quality.statistics import cell_intervals

    ids = list(captions)
    tok = tokenize({**{("h", i): [captions[i]] for i in ids}, **{("r", i): refs[i] for i in ids}})
    scores = cider_d([tok[("h", i)][0] for i in ids], [tok[("r", i)] for i in ids])
    table = pd.DataFrame({"sample_id": ids, "cider": scores})
    ci = cell_intervals(table, metrics=("cider",))
    return {"cider": float(table["cider"].mean()), "cider_ci_low": ci["cider_ci_low"],
            "cider_ci_high": ci["cider_ci_high"]}


def estimated_weight_bytes(model_id: str, precision: str) -> float:
    from sweep.plan.memory import weight_bytes

    config = json.loads((Path(model_side.model_path(model_id)) / "config.json").read_text())
    return weight_bytes(config, precision, CPU_FLOAT_BYTES)


def caption_all(captioner: Any, ids: list[str], images: list[Any], kwargs: dict[str, Any]
                ) -> tuple[float, dict[str, str]]:
    """(seconds, {sample id: caption}) for every image, in batches of BATCH_SIZE."""
    items = list(zip(ids, images, strict=True))
    start = time.perf_counter()
    out: dict[str, str] = {}
    for i in range(0, len(items), BATCH_SIZE):
        batch = items[i : i + BATCH_SIZE]
        answers = model_side.caption(captioner, batch, PROMPT, kwargs)
        out.update({sid: cap for (sid, _), (cap, _) in zip(batch, answers, strict=True)})
    return time.perf_counter() - start, out


def bench_model(model_id: str, ids: list[str], images: list[Any], refs: dict | None,
                repeats: int) -> list[dict[str, Any]]:
    loaded = {}
    for precision in PRECISIONS:
        captioner = model_side.load_captioner(model_id, precision)
        kwargs = model_side.cell_generation(captioner, PROMPT, MAX_NEW_TOKENS)
        caption_all(captioner, ids[:BATCH_SIZE], images[:BATCH_SIZE], kwargs)  # warm-up
        loaded[precision] = (captioner, kwargs)
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    captions: dict[str, dict[str, str]] = {}
    for r in range(repeats):
        order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
        for precision in order:
            captioner, kwargs = loaded[precision]
            took, captions[precision] = caption_all(captioner, ids, images, kwargs)
            seconds[precision].append(took)
        took = ", ".join(f"{p} {seconds[p][-1]:.1f}s" for p in order)
        log(f"  {model_id} repeat {r + 1}/{repeats}: {took}")
    rows = []
    for precision in PRECISIONS:
        report = loaded[precision][0].report
        estimate = estimated_weight_bytes(model_id, precision)
        same = sum(captions[precision][i] == captions["fp32"][i] for i in ids)
        row = {
            "model": model_id, "precision": precision, "n_images": len(ids), "batch_size": BATCH_SIZE,
            "max_new_tokens": MAX_NEW_TOKENS, "images_per_sec": len(ids) / median(seconds[precision]),
            "raw_seconds": seconds[precision], "weight_bytes": report.weight_bytes,
            "weight_bytes_estimate": estimate, "ratio_estimate_vs_measured": estimate / report.weight_bytes,
            "module_precisions": report.module_precisions, "module_weight_bytes": report.module_weight_bytes,
            "same_captions_as_fp32": same, "weights": report.weights, "device": report.device,
            "example_caption": captions[precision][ids[0]],
        }
        if refs is not None:
            row.update(cider_with_interval(captions[precision], refs))
        rows.append(row)
    return rows


def run(ctx: Context) -> dict[str, Any]:
    # --quick (the suite's smoke run): the small zoo model on 8 images, Qwen2-VL on 4
    ids, images, refs = zoo_samples(8 if ctx.quick else None)
    rows = []
    for model_id in ZOO[:1] if ctx.quick else ZOO:
        rows += bench_model(str(REPO / model_id), ids, images, refs, ctx.repeats)
    coco = load_images(ctx.coco, 4 if ctx.quick else 16, 224)
    rows += bench_model(TINY, [f"coco{i}" for i in range(len(coco))], coco, None, ctx.repeats)
    for row in rows:
        row["model"] = row["model"].removeprefix(str(REPO) + "/")
    return {"rows": rows, "repeats": ctx.repeats, "versions": loaded_versions()}


def loaded_versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "bitsandbytes", "torchao")}


def summary(data: dict[str, Any]) -> tuple[list[str], list[str], list[list[Any]]]:
    """(intro lines, table columns, table rows) of the markdown (benchmarks.render draws the table)."""
    v = data["versions"]
    intro = [
        f"## {TITLE}", "",
        f"HF backend on CPU, batch {BATCH_SIZE}, {MAX_NEW_TOKENS} new tokens (greedy), median of "
        f"{data['repeats']} repeats; torch {v['torch']}, transformers {v['transformers']}, bitsandbytes "
        f"{v['bitsandbytes']}, torchao {v['torchao']}. Weights: zoo = toy (trained on synthetic shapes), "
        "Qwen2-VL = random. Estimate: sweep.plan.memory with float modules at 4 bytes.", "",
    ]
    columns = ["model", "precision", "images/s", "vs fp32", "weight bytes", "estimate / measured",
               "language side", "CIDEr [95% CI]", "same captions as fp32"]
    rows = [[r["model"], r["precision"], f"{r['images_per_sec']:.1f}",
             f"{r['images_per_sec'] / _fp32(data, r)['images_per_sec']:.2f}x", f"{r['weight_bytes']:,}",
             f"{r['ratio_estimate_vs_measured']:.3f}", r["module_precisions"].get("language", ""),
             f"{r['cider']:.3f} [{r['cider_ci_low']:.3f}, {r['cider_ci_high']:.3f}]" if "cider" in r else "-",
             f"{r['same_captions_as_fp32']}/{r['n_images']}"] for r in data["rows"]]
    return intro, columns, rows


def _fp32(data: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in data["rows"] if r["model"] == row["model"] and r["precision"] == "fp32")


def console(data: dict[str, Any]) -> list[str]:
    return [f"   {r['model']} {r['precision']}: {r['images_per_sec']:.1f} img/s, {r['weight_bytes']:,} B "
            f"(estimate {r['ratio_estimate_vs_measured']:.3f}x), same as fp32 "
            f"{r['same_captions_as_fp32']}/{r['n_images']}"
            + (f", CIDEr {r['cider']:.3f}" if "cider" in r else "")
            for r in data["rows"]]
