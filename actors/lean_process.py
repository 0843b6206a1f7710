"""What a model host's own process leaves out of its imports: scikit-learn, which transformers would import
for nothing.

transformers imports scikit-learn whenever it is installed (`generation.candidate_generator`, reached from
every model class), and with it scipy.stats and pandas, only to tune assisted decoding's confidence
threshold (`sklearn.metrics.roc_curve`), which a host never runs. It is installed here because MLflow
requires it. In a process of its own (a Ray actor) the host marks it absent before transformers is first
imported, and transformers then skips it (`is_sklearn_available()` is False): 7.4 -> 5.3 CPU-s for
`import actors.model_host` + a LLaVA class and processor on 2 quiet cores (docs/testing.md), paid by every
host process. A process that has already imported transformers or scikit-learn is left as it is, and so is
one the host shares (a benchmark, a test, a notebook): `import sklearn` must keep working there.
"""

from __future__ import annotations

import sys

#: modules a host process never uses that transformers would import
UNUSED_BY_HOSTS = ("sklearn",)


def leave_out_unused_modules() -> list[str]:
    """In a host's own process, before transformers' first import: mark `UNUSED_BY_HOSTS` absent (a
    `None` entry in `sys.modules`: `importlib.util.find_spec` then finds nothing and `import` raises
    ModuleNotFoundError). Returns the names left out; none once transformers or the module is imported."""
    if "transformers" in sys.modules:
        return []
    left_out = [name for name in UNUSED_BY_HOSTS if name not in sys.modules]
    for name in left_out:
        sys.modules[name] = None  # type: ignore[assignment]
    return left_out
