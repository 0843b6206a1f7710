"""7. Scoring time of one cell at 5,000 images: before (pycocoevalcap's corpus scorers, what a cell was
scored with until per-image scores) and after (per-image CIDEr-D/METEOR/ROUGE-L/BLEU statistics with
document frequencies from the whole reference set, then the bootstrap intervals), side by side in one run
on the same warm METEOR JVM. The cell is human leave-one-out on the full COCO val2017 references."""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks.common import REPO, Context, log, median

TITLE = "7. scoring time of one cell at 5,000 images"
VAL2017 = REPO.parent / "shared" / "data" / "coco-val2017-captions" / "captions_val2017.json"


def leave_one_out_cell(n_images: int | None) -> tuple[dict, dict]:
    """Predictions (each image's first reference) and references (the others) of val2017's images."""
    from sweep.quality.scoring import coco_references, leave_one_out

    references = coco_references(json.loads(VAL2017.read_text()))
    ids = sorted(references)[:n_images] if n_images else sorted(references)
    return leave_one_out({i: references[i] for i in ids})


def run(ctx: Context) -> dict[str, Any]:
    from sweep.quality.scoring import CaptionScorer, reference_set_frequencies
    from sweep.quality.statistics import cell_intervals

    n_images = 200 if ctx.quick else None
    predictions, references = leave_one_out_cell(n_images)
    df = reference_set_frequencies(VAL2017, ctx.work / "df-cache")
    before, after, intervals = [], [], []
    with CaptionScorer(spice=False) as scorer:
        scorer.score({1: "a dog"}, {1: ["a dog", "a brown dog"]})  # METEOR's JVM starts outside the timings
        for _ in range(ctx.repeats):
            start = time.perf_counter()
            classic = scorer.pycocoevalcap_scores(predictions, references)
            before.append(time.perf_counter() - start)
            start = time.perf_counter()
            scored = scorer.score_images(predictions, references, df)
            after.append(time.perf_counter() - start)
            start = time.perf_counter()
            cell_intervals(scored.per_image.reset_index(names="sample_id").assign(error=""))
            intervals.append(time.perf_counter() - start)
            log(f"  {len(predictions)} images: before {before[-1]:.1f}s, after {after[-1]:.1f}s "
                f"+ intervals {intervals[-1]:.2f}s")
    return {
        "images": len(predictions),
        "repeats": len(before),
        "before_seconds": median(before),
        "after_seconds": median(after),
        "intervals_seconds": median(intervals),
        "ratio_after_vs_before": (median(after) + median(intervals)) / median(before),
        "cider_before": classic["cider"],  # document frequencies from these images' references
        "cider_after": scored.corpus["cider"],  # from every reference of val2017
        "note": "before: pycocoevalcap corpus scorers; after: per-image scores + 1,000-resample intervals",
    }
