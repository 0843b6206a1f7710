"""One registry of model families: a name maps to the module that defines its adapter.

Adding a family is one new module in actors/families/ plus one line here.
"""

from __future__ import annotations

import importlib
from functools import cache

from actors.families.base import Family

FAMILY_MODULES: dict[str, str] = {
    name: f"actors.families.{name}"
    for name in (
        "llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "smolvlm", "blip2", "instructblip",
        "paligemma", "florence2", "internvl", "deepseek_vl", "git", "phi4_mm",
        # remote-code families (trust_remote_code: true in the grid)
        "phi3_v", "internvl_chat", "mobilevlm", "deepseek_vl_v1",
    )
}


class UnknownFamilyError(ValueError):
    pass


@cache
def get_family(name: str) -> Family:
    if name not in FAMILY_MODULES:
        raise UnknownFamilyError(f"unknown model family '{name}'; known: {', '.join(known_families())}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def known_families() -> list[str]:
    return sorted(FAMILY_MODULES)


def detect_family(config: dict) -> Family:
    """Match a checkpoint's config.json by model_type first, then by architecture names."""
    model_type = config.get("model_type", "")
    archs = set(config.get("architectures") or [])
    families = [get_family(n) for n in known_families()]
    for fam in families:
        if model_type in fam.model_types:
            return fam
    for fam in families:
        if archs & set(fam.architectures):
            return fam
    raise UnknownFamilyError(
        f"cannot tell the model family from config.json (model_type='{model_type}', "
        f"architectures={sorted(archs)}); set 'family' on the model to one of: {', '.join(known_families())}"
    )
