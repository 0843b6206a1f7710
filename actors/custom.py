"""User models plugged in by import path: `loader: mypkg.module:build` on a model in grid.yaml.

`build(model_id: str, precision: str) -> Captioner` receives the model's `id` and the cell's precision
and returns a loaded `actors.captioner.Captioner` (fill `report` and `family`; `generate` does the work).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

from actors.captioner import Captioner
from actors.families.base import Family
from actors.hf import library_versions


class CustomLoaderError(ValueError):
    pass


class CustomFamily(Family):
    """Stands for any user model: the loader decides everything, the sweep only measures it."""

    name = "custom"
    model_types = ()
    vision_modules = ()
    language_modules = ()
    uses_chat_template = False


def import_loader(path: str) -> Callable[[str, str], Captioner]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise CustomLoaderError(f"loader '{path}': expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CustomLoaderError(f"loader '{path}': cannot import {module_name}: {err}") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise CustomLoaderError(f"loader '{path}': {module_name} has no callable '{attr}'")
    return fn


def loader_problem(path: str) -> str:
    """Why the loader cannot be used ("" when its module imports and has the callable): the dry run's
    check, which imports the user's module but loads no model."""
    try:
        import_loader(path)
    except CustomLoaderError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing
        return f"loader '{path}': importing it raised {type(err).__name__}: {err}"
    return ""


def load_custom(loader: str, model_id: str, precision: str) -> Captioner:
    start = time.perf_counter()
    captioner = import_loader(loader)(model_id, precision)
    if not isinstance(captioner, Captioner):
        raise CustomLoaderError(
            f"loader '{loader}' returned {type(captioner).__name__}, not an actors.captioner.Captioner"
        )
    if not hasattr(captioner, "family"):
        captioner.family = CustomFamily()
    report = captioner.report
    report.backend_reason = report.backend_reason or f"custom loader {loader}"
    report.load_seconds = report.load_seconds or time.perf_counter() - start
    report.library_versions = report.library_versions or library_versions()
    report.family_info = {**report.family_info, "loader": loader}
    return captioner
