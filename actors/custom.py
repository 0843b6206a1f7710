"""User models plugged in by import path: `loader: mypkg.module:build` on a model in grid.yaml.

`build(model_id: str, precision: str) -> Captioner` receives the model's `id` and the cell's precision
and returns a loaded `actors.captioner.Captioner` (fill `report` and `family`; `generate` does the work).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

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
    """Why the loader cannot be used, found without running any of the user's code ("" when its module is
    there and defines the name): the dry run's check. Its module is located (`find_spec`, parents
    imported as Python does) and its source parsed, not executed: a module that imports heavy things or
    loads weights at import time costs the plan nothing."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        return f"loader '{path}': expected 'package.module:function'"
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as err:
        return f"loader '{path}': cannot import {module_name}: {err}"
    if spec is None:
        return f"loader '{path}': cannot import {module_name}: no module named {module_name!r}"
    names = _top_level_names(spec.origin)
    if names is not None and attr not in names:
        return f"loader '{path}': {module_name} has no callable '{attr}'"
    return ""


def _top_level_names(origin: str | None) -> set[str] | None:
    """Names a Python source file defines at its top level; None when that cannot be told without running
    it (not a .py file, unreadable, a `from x import *`)."""
    if not origin or not origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(origin).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        else:  # if/try blocks may define it: walk them for defs and assignments alike
            names.update(n.name for n in ast.walk(node)
                         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))
            names.update(n.id for n in ast.walk(node)
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


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
