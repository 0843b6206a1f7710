"""Test support: a zoo model's CIDEr on the shapes test split through the sweep's own loading and
prompting path, and the same with the image blanked or the family's prompt template broken (the errors
the family quality tests must tell apart from a working prompt path).

The shapes captions are words and ", :" only, so they are tokenized here as the COCO protocol would
(lower case, punctuation dropped) without the PTB tokenizer's JVM: the check stays fast. It imports the
driver (data loading, CIDEr), so it lives beside the tests, not in testkit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "zoo" / "shapes-data" / "test-200"
PROMPT = "Describe this image in one sentence."
PUNCTUATION = {",", ":", ".", ";", "?", "!"}


def words(caption: str) -> str:
    return " ".join(w for w in caption.lower().split() if w not in PUNCTUATION)


def samples(n: int | None = None) -> list[Any]:
    from sweep.data.sources import load_coco_samples
    from sweep.grid.config import DatasetConfig

    found = load_coco_samples(DatasetConfig(captions=SPLIT / "captions.json", images=SPLIT / "images"))
    return found[:n] if n else found


def cider(predictions: list[str], refs: list[list[str]], all_refs: list[list[str]]) -> list[float]:
    """Per-image CIDEr-D of the predictions, document frequencies from every reference of the split."""
    from sweep.quality.scoring import DocumentFrequencies, cider_d

    df = DocumentFrequencies.from_tokenized([[words(r) for r in rs] for rs in all_refs])
    return list(cider_d([words(p) for p in predictions], [[words(r) for r in rs] for rs in refs], df))


def mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


def paired_gain(trained: list[float], error: list[float]) -> Any:
    """trained - error CIDEr over the same images, with its paired 95% bootstrap interval (the sweep's own
    ``paired_difference``: what the images share cancels, so a consistent gain is told from noise)."""
    import pandas as pd

    from sweep.quality.statistics import paired_difference

    def table(scores: list[float]) -> Any:
        return pd.DataFrame({"sample_id": range(len(scores)), "cider": scores})

    return paired_difference(table(trained), table(error))


def trained_interval(scores: list[float]) -> tuple[float, float]:
    """The 95% bootstrap interval of the mean over the images (the sweep's own resampling)."""
    import pandas as pd

    from sweep.quality.statistics import cell_intervals, ci_columns

    table = pd.DataFrame({"sample_id": range(len(scores)), "cider": scores})
    found = cell_intervals(table, metrics=("cider",))
    low, high = ci_columns("cider")
    return found[low], found[high]


def caption(captioner: Any, items: list[Any], blank: bool = False, max_new_tokens: int = 32,
            batch_size: int = 24) -> list[str]:
    """Greedy captions of the samples, ``batch_size`` per generate call; ``blank``: every image a plain grey
    one."""
    from actors.contract import CaptionRequest

    out: list[str] = []
    kwargs = {"max_new_tokens": max_new_tokens, "num_beams": 1, "do_sample": False}
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        images = [Image.open(s.path).convert("RGB") for s in batch]
        if blank:
            images = [Image.new("RGB", im.size, (128, 128, 128)) for im in images]
        reqs = [CaptionRequest(s.sample_id, [im], PROMPT) for s, im in zip(batch, images, strict=True)]
        out += [r.caption for r in captioner.generate(reqs, kwargs)]
    return out


def _no_generation_prompt(family: Any) -> Callable[..., str]:
    def format_prompt(processor: Any, prompt: str, n_images: int) -> str:
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        return processor.apply_chat_template(messages, add_generation_prompt=False)

    return format_prompt


def _git_with_text_prompt(family: Any) -> Callable[..., Any]:
    def build_inputs(processor: Any, prompts: list[str], images: list[list[Image.Image]]) -> Any:
        return processor(text=prompts, images=[imgs[0] for imgs in images], padding=True, return_tensors="pt")

    return build_inputs


# One realistic template error per family: what the family's prompt path would do with one bug.
BREAKS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    # chat families: the assistant turn never opened (add_generation_prompt lost)
    "llava": ("format_prompt", _no_generation_prompt, "chat template without the generation prompt"),
    "qwen2_vl": ("format_prompt", _no_generation_prompt, "chat template without the generation prompt"),
    "qwen2_5_vl": ("format_prompt", _no_generation_prompt, "chat template without the generation prompt"),
    "smolvlm": ("format_prompt", _no_generation_prompt, "chat template without the generation prompt"),
    "blip2": ("plain_template", lambda f: "{prompt}", "the grid prompt without 'Question: ... Answer:'"),
    "paligemma": ("task_prompt", lambda f: None, "the grid prompt instead of the 'caption en' task prefix"),
    "florence2": ("task_prompt", lambda f: "<OCR>", "the <OCR> task token instead of <CAPTION>"),
    "git": ("build_inputs", _git_with_text_prompt, "the grid prompt fed as text after [CLS]"),
}


@contextlib.contextmanager
def broken_template(family: Any) -> Iterator[str]:
    """The family (the captioner's adapter instance) with its one template error, for the block."""
    attribute, make, what = BREAKS[family.name]
    with mock.patch.object(family, attribute, make(family)):
        yield what


def measure(model_dir: Path, family: str, n: int = 32, max_new_tokens: int = 32) -> dict[str, list[float]]:
    """Per-image CIDEr of one zoo model on the first ``n`` test images: trained, image blanked, template
    broken."""
    from actors.backends import make_captioner

    everything = samples()
    items = everything[:n]
    refs, all_refs = [list(s.references) for s in items], [list(s.references) for s in everything]
    captioner = make_captioner(str(model_dir), family, None, False, "fp32", "hf")
    result = {"trained": cider(caption(captioner, items, max_new_tokens=max_new_tokens), refs, all_refs),
              "blank_image": cider(caption(captioner, items, True, max_new_tokens), refs, all_refs)}
    with broken_template(captioner.family):
        result["broken_template"] = cider(caption(captioner, items, max_new_tokens=max_new_tokens), refs,
                                          all_refs)
    return result
