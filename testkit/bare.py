"""An interpreter as on a bare GPU machine: some installed packages made not findable.

`hide_packages(("ray", "mlflow"))` wraps every finder on `sys.meta_path` so that those top-level packages
(and their submodules) raise ModuleNotFoundError as if never installed, while everything else imports as
before. Used by the tests that run the model side, or the GPU check, in a fresh interpreter."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


class _Hiding:
    """One finder as it was, except for the hidden top-level names."""

    def __init__(self, finder: Any, hidden: frozenset[str]):
        self.finder = finder
        self.hidden = hidden

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.split(".")[0] in self.hidden:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def find_distributions(self, *args: Any, **kwargs: Any) -> Any:
        find = getattr(self.finder, "find_distributions", None)
        return find(*args, **kwargs) if find else []

    def invalidate_caches(self) -> None:
        getattr(self.finder, "invalidate_caches", lambda: None)()


def hide_packages(names: Iterable[str]) -> None:
    """Make `names` not importable in this interpreter (call before anything imports them)."""
    hidden = frozenset(names)
    sys.meta_path[:] = [_Hiding(finder, hidden) for finder in sys.meta_path]
