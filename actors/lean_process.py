"""What a model host's process (or a decode task's) spares itself: transformers' import of scikit-learn.

transformers imports scikit-learn whenever it is installed (`generation.candidate_generator`, reached from
every model class and processor), and with it scipy.stats and pandas, only to tune assisted decoding's
confidence threshold (`sklearn.metrics.roc_curve`), which a host never runs. It is installed here because
MLflow requires it. In a process that runs only the sweep's model side (a host's Ray actor loading a
built-in family, a decode task's worker loading a processor), transformers is told, before its generation
module is first imported, that scikit-learn is absent:
`import actors.model_host` + a LLaVA class and processor cost ~1.3 CPU-s less on 2 quiet cores
(docs/testing.md), paid by every host process and every worker that loads a processor. scikit-learn itself
stays importable (a user's loader or remote code may use it); only transformers' own check answers False.
A process where transformers' generation module is already imported is left as it is, and so is any
process the host shares (a benchmark, a test, a notebook): there, assisted decoding keeps its tuning.
"""

from __future__ import annotations

import sys

#: the transformers module whose import pulls scikit-learn in, if `is_sklearn_available()` says so
_SKLEARN_USER = "transformers.generation.candidate_generator"


def _absent() -> bool:
    return False


def spare_unused_imports() -> bool:
    """In a process of the model side's own, before transformers imports its generation module: its
    `is_sklearn_available()` answers False (both places transformers reads it from). Returns whether it was
    done; False once that module is imported (too late: scikit-learn is in)."""
    if _SKLEARN_USER in sys.modules:
        return False
    import transformers.utils
    import transformers.utils.import_utils

    transformers.utils.is_sklearn_available = _absent
    transformers.utils.import_utils.is_sklearn_available = _absent
    return True
