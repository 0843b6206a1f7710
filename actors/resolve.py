"""Where a model's files are, whether its weights are real, and its config.json (the one reader of it)."""

from __future__ import annotations

import json
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
        return model_id, "toy"  # trained by the project on synthetic data (zoo.trainer)
    return model_id, "real"


class ModelConfigError(ValueError):
    """A model's config.json is there but cannot be read as a JSON object; the message names the file."""


def parse_config_json(path: Path) -> dict:
    """The config.json at `path` as a dict; ModelConfigError naming the file when it is not one."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path}: invalid JSON at line {err.lineno} column {err.colno} "
                               f"({err.msg})") from None
    except UnicodeDecodeError as err:
        raise ModelConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except OSError as err:
        raise ModelConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: a JSON {type(data).__name__}, not an object of model settings")
    return data


def check_local_folder(path_or_id: str) -> None:
    """A local folder without config.json is refused naming it (HF would say "Repo id must be in the form
    'repo_name' or 'namespace/repo_name'", as if it were a hub id)."""
    folder = Path(path_or_id)
    if folder.is_dir() and not (folder / "config.json").is_file():
        held = sorted(p.name for p in folder.iterdir())[:5]
        raise ModelConfigError(f"{folder}: a local model folder without config.json (it holds "
                               f"{', '.join(held) if held else 'nothing'}); point the model's id at the "
                               "folder of a saved model")


def read_config_json(path_or_id: str, revision: str | None = None, *, local_only: bool = False) -> dict:
    """config.json of a local folder or of a hub id (downloaded unless `local_only`: then only from the
    local HF cache). Raises OSError when it is not there, ModelConfigError when it is not valid JSON."""
    local = Path(path_or_id) / "config.json"
    if local.is_file():
        return parse_config_json(local)
    check_local_folder(path_or_id)
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(path_or_id, "config.json", revision=revision, local_files_only=local_only)
    return parse_config_json(Path(path))


def local_config_json(model_id: str, revision: str | None = None) -> dict | None:
    """config.json from a local folder or the local HF cache, None when absent; never downloads (the
    dry-run plan and the memory check run before anything is fetched). `tiny:` models are built later.
    A config.json that is there but invalid raises ModelConfigError (naming the file): that model's cells
    cannot run, and saying "unknown" would hide why."""
    if model_id.startswith("tiny:"):
        return None
    try:
        return read_config_json(model_id, revision, local_only=True)
    except ModelConfigError:
        raise
    except Exception:  # noqa: BLE001 - not a hub id, not cached: both mean "unknown here"
        return None
