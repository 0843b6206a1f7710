"""Tiny random-weight models of real VLM families, saved so that they load through the real HF path.

``build_tiny_model("llava", out_dir)`` writes a folder that loads with
``AutoProcessor.from_pretrained(out_dir, local_files_only=True)`` and the Auto model class recorded in
``FAMILIES[family].auto_model_class`` (``AutoModelForImageTextToText`` for every family here but
Phi-4-multimodal, which is ``AutoModelForCausalLM``; GIT also loads with ``AutoModelForCausalLM``).
How to prompt and batch each family is the family adapter's business (``actors.registry.get_family``).
See ``actors/tiny/README.md`` for what each builder makes and its gotchas.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import (
    blip2,
    common,
    configs,
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
_MARKER_KEYS = ("family", "seed", "transformers_version", "builder")


@dataclass(frozen=True)
class TinyFamily:
    """What building a tiny family takes, and what the build must load as."""

    build: Callable[[Path, int], None]
    model_class: str  # the concrete transformers class that the Auto class resolves to
    auto_model_class: str = "AutoModelForImageTextToText"  # attribute of ``transformers``


FAMILIES: dict[str, TinyFamily] = {
    "llava": TinyFamily(llava.build, "LlavaForConditionalGeneration"),
    "qwen2_vl": TinyFamily(qwen2_vl.build, "Qwen2VLForConditionalGeneration"),
    "smolvlm": TinyFamily(smolvlm.build, "SmolVLMForConditionalGeneration"),
    "llava_next": TinyFamily(llava_next.build, "LlavaNextForConditionalGeneration"),
    "qwen2_5_vl": TinyFamily(qwen2_5_vl.build, "Qwen2_5_VLForConditionalGeneration"),
    "blip2": TinyFamily(blip2.build, "Blip2ForConditionalGeneration"),
    "instructblip": TinyFamily(instructblip.build, "InstructBlipForConditionalGeneration"),
    "paligemma": TinyFamily(paligemma.build, "PaliGemmaForConditionalGeneration"),
    "florence2": TinyFamily(florence2.build, "Florence2ForConditionalGeneration"),
    "internvl": TinyFamily(internvl.build, "InternVLForConditionalGeneration"),
    "git": TinyFamily(git.build, "GitForCausalLM"),
    "deepseek_vl": TinyFamily(deepseek_vl.build, "DeepseekVLForConditionalGeneration"),
    "phi4_mm": TinyFamily(phi4_mm.build, "Phi4MultimodalForCausalLM", "AutoModelForCausalLM"),
}


def known_tiny_families() -> list[str]:
    """Names accepted by :func:`build_tiny_model`, in priority order."""
    return list(FAMILIES)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def builder_digest(tiny: TinyFamily) -> str:
    """A digest of the builder's source and the shared sizes, so that a changed builder rebuilds caches."""
    digest = hashlib.sha256()
    for name in (tiny.build.__module__, configs.__name__, common.__name__):
        digest.update(Path(sys.modules[name].__file__).read_bytes())
    return digest.hexdigest()[:16]


def _is_finished(out_dir: Path, marker: dict) -> bool:
    """True when ``out_dir`` holds a finished build with the same family, seed and transformers version."""
    try:
        existing = json.loads((out_dir / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(existing, dict) and all(existing.get(k) == marker[k] for k in _MARKER_KEYS)


def build_tiny_model(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Build the tiny ``family`` model into ``out_dir`` atomically and return ``out_dir``.

    A finished build (``TINY_MODEL.json`` with the same family, seed, transformers version and builder
    source) is reused.
    Anything else at ``out_dir`` is replaced. Raises ``KeyError`` for an unknown family.
    """
    if family not in FAMILIES:
        raise KeyError(f"unknown tiny model family {family!r}; known: {known_tiny_families()}")
    out_dir = Path(out_dir)
    tiny = FAMILIES[family]
    marker = {"family": family, "seed": int(seed), "transformers_version": _transformers_version(),
              "builder": builder_digest(tiny)}
    if _is_finished(out_dir, marker):
        return out_dir

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tiny.build(tmp, int(seed))
        marker.update(auto_model_class=tiny.auto_model_class, model_class=tiny.model_class)
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
