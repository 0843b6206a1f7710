"""Where a model's files are, and whether its weights are real."""

from __future__ import annotations

import os
from pathlib import Path


def tiny_cache_dir() -> Path:
    return Path(os.environ.get("VLM_SWEEP_CACHE", Path.home() / ".cache" / "vlm-sweep")) / "tiny-models"


def resolve_model(model_id: str) -> tuple[str, str]:
    """(path or hub id to load, "real" | "random").

    `tiny:<family>` builds a tiny random-weight model of that family (deterministic, so every node of
    a cluster builds the same weights) and points at the saved folder.
    """
    if model_id.startswith("tiny:"):
        from actors.tiny import build_tiny_model

        family = model_id.removeprefix("tiny:")
        return str(build_tiny_model(family, tiny_cache_dir() / family)), "random"
    if (Path(model_id) / "ZOO_MODEL.json").is_file():
        return model_id, "toy"  # trained by the project on synthetic data (sweep.zoo)
    return model_id, "real"
