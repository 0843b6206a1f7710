"""Which backend serves a cell, and why: the reason is logged with every cell."""

from __future__ import annotations

from actors.base import Captioner
from actors.families.base import Family
from actors.registry import detect_family, get_family, read_config_json
from actors.resolve import resolve_model


def choose_backend(requested: str, family: Family, precision: str) -> tuple[str, str]:
    """(backend, reason). vLLM is not wired in yet, so every cell goes to HF with a stated reason."""
    if requested == "hf":
        return "hf", "backend: hf requested in the grid"
    if requested == "vllm":
        raise ValueError("backend 'vllm' is not available in this version; use 'auto' or 'hf'")
    return "hf", "auto: the vLLM backend is not available in this version"


def resolve_family(path: str, family_override: str | None, revision: str | None) -> Family:
    if family_override:
        return get_family(family_override)
    return detect_family(read_config_json(path, revision))


def make_captioner(model_id: str, family_override: str | None, revision: str | None,
                   trust_remote_code: bool, precision: str, backend: str) -> Captioner:
    """Resolve, detect the family, pick the backend and load: the actor's whole start-up."""
    path, weights = resolve_model(model_id)
    family = resolve_family(path, family_override, revision)
    if family.requires_remote_code and not trust_remote_code:
        raise ValueError(
            f"model '{model_id}' is a {family.name} model, which runs code from outside transformers; "
            "set trust_remote_code: true on it in the grid to allow that"
        )
    name, reason = choose_backend(backend, family, precision)
    from actors.hf import HFCaptioner

    return HFCaptioner(
        path,
        family,
        precision,
        revision=revision,
        trust_remote_code=trust_remote_code,
        weights=weights,
        backend_reason=reason,
    )
