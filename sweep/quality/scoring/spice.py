"""SPICE, a corpus score only, run only when its Stanford CoreNLP jars are already on disk: pycocoevalcap
would otherwise download them at first use, which fails offline, so this module never lets it try."""

from __future__ import annotations

import shutil
from pathlib import Path

from pycocoevalcap.spice import get_stanford_models as _spice_models

SPICE_LIB_DIR = Path(_spice_models.SPICEDIR) / _spice_models.SPICELIB
SPICE_JARS = (f"{_spice_models.JAR}.jar", f"{_spice_models.JAR}-models.jar")


def spice_missing_reason(lib_dir: Path | None = None) -> str | None:
    lib = SPICE_LIB_DIR if lib_dir is None else Path(lib_dir)
    missing = [jar for jar in SPICE_JARS if not (lib / jar).is_file()]
    if missing:
        return f"Stanford CoreNLP jars not found in {lib}: {', '.join(missing)} (offline: never downloaded)"
    if shutil.which("java") is None:
        return "no java on PATH"
    return None


def spice_available(lib_dir: Path | None = None) -> bool:
    """True when SPICE's CoreNLP jars are already present (checks files only, downloads nothing)."""
    return spice_missing_reason(lib_dir) is None


def spice_score(gts: dict[int, list[str]], res: dict[int, list[str]]) -> tuple[float | None, str | None]:
    """(corpus SPICE, None), or (None, why it was skipped): SPICE is optional, a failure drops the metric,
    never the whole score."""
    reason = spice_missing_reason()
    if reason is not None:
        return None, reason
    from pycocoevalcap.spice.spice import Spice  # only imported once we know the jars exist

    try:
        return float(Spice().compute_score(gts, res)[0]), None
    except Exception as err:
        return None, f"it failed to run ({err!r})"
