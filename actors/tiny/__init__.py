"""Tiny random-weight models of real VLM families, saved so that they load through the real HF path.

``build_tiny_model("llava", out_dir)`` writes a folder that loads with
``AutoProcessor.from_pretrained(out_dir, local_files_only=True)`` and the Auto model class recorded in
``FAMILIES[family].auto_model_class`` (``AutoModelForImageTextToText`` for every family here but
Phi-4-multimodal, which is ``AutoModelForCausalLM``; GIT also loads with ``AutoModelForCausalLM``).
``FAMILIES`` also records the prompt style per family. See ``actors/tiny/README.md`` for prompts and gotchas
per family.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import (
    blip2,
    deepseek_vl,
    florence2,
    git,
    instructblip,
    internvl,
    llava,
    llava_next,
    paligemma,
    phi4_mm,
    qwen2_5_vl,
    qwen2_vl,
    smolvlm,
)

MARKER_FILE = "TINY_MODEL.json"
_MARKER_KEYS = ("family", "seed", "transformers_version")


@dataclass(frozen=True)
class TinyFamily:
    """How to drive a tiny family through the real HF path."""

    build: Callable[[Path, int], None]
    model_class: str  # the concrete transformers class that the Auto class resolves to
    auto_model_class: str = "AutoModelForImageTextToText"  # attribute of ``transformers``
    prompt: str | None = None  # None: ``processor.apply_chat_template``; else this plain text prompt
    nested_images: bool = False  # batch images as ``[[img0], [img1], ...]`` (Idefics3/SmolVLM)
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs for ``processor(...)``


FAMILIES: dict[str, TinyFamily] = {
    "llava": TinyFamily(llava.build, "LlavaForConditionalGeneration"),
    "qwen2_vl": TinyFamily(qwen2_vl.build, "Qwen2VLForConditionalGeneration"),
    "smolvlm": TinyFamily(smolvlm.build, "SmolVLMForConditionalGeneration", nested_images=True),
    "llava_next": TinyFamily(llava_next.build, "LlavaNextForConditionalGeneration"),
    "qwen2_5_vl": TinyFamily(qwen2_5_vl.build, "Qwen2_5_VLForConditionalGeneration"),
    "blip2": TinyFamily(blip2.build, "Blip2ForConditionalGeneration", prompt="a photo of"),
    "instructblip": TinyFamily(
        instructblip.build, "InstructBlipForConditionalGeneration", prompt="Describe the image."
    ),
    "paligemma": TinyFamily(paligemma.build, "PaliGemmaForConditionalGeneration", prompt="<image>caption en"),
    "florence2": TinyFamily(florence2.build, "Florence2ForConditionalGeneration", prompt="<CAPTION>"),
    "internvl": TinyFamily(internvl.build, "InternVLForConditionalGeneration"),
    "git": TinyFamily(
        git.build, "GitForCausalLM", prompt="a picture of", processor_kwargs={"return_token_type_ids": False}
    ),
    "deepseek_vl": TinyFamily(deepseek_vl.build, "DeepseekVLForConditionalGeneration"),
    # Phi4MultimodalProcessor.from_pretrained drops its saved chat template (transformers 5.23): plain prompt.
    "phi4_mm": TinyFamily(
        phi4_mm.build,
        "Phi4MultimodalForCausalLM",
        auto_model_class="AutoModelForCausalLM",
        prompt="<|user|><|image|>Describe the image.<|end|><|assistant|>",
    ),
}

BUILDERS: dict[str, Callable[[Path, int], None]] = {name: fam.build for name, fam in FAMILIES.items()}


def known_tiny_families() -> list[str]:
    """Names accepted by :func:`build_tiny_model`, in priority order."""
    return list(BUILDERS)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _is_finished(out_dir: Path, marker: dict) -> bool:
    """True when ``out_dir`` holds a finished build with the same family, seed and transformers version."""
    try:
        existing = json.loads((out_dir / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(existing, dict) and all(existing.get(k) == marker[k] for k in _MARKER_KEYS)


def build_tiny_model(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Build the tiny ``family`` model into ``out_dir`` atomically and return ``out_dir``.

    A finished build (``TINY_MODEL.json`` with the same family, seed and transformers version) is reused.
    Anything else at ``out_dir`` is replaced. Raises ``KeyError`` for an unknown family.
    """
    if family not in BUILDERS:
        raise KeyError(f"unknown tiny model family {family!r}; known: {known_tiny_families()}")
    out_dir = Path(out_dir)
    marker = {"family": family, "seed": int(seed), "transformers_version": _transformers_version()}
    if _is_finished(out_dir, marker):
        return out_dir

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        BUILDERS[family](tmp, int(seed))
        if family in FAMILIES:
            marker["auto_model_class"] = FAMILIES[family].auto_model_class
            marker["model_class"] = FAMILIES[family].model_class
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        try:
            os.replace(tmp, out_dir)  # works when out_dir is absent (or an empty directory)
        except OSError:
            if _is_finished(out_dir, marker):
                # Another process finished the same build first: keep its copy.
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            # Stale or foreign content: move it aside, then swap the new build in.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "stale")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
