"""A model host in a process of its own leaves scikit-learn out of transformers' imports; a shared process
keeps it (actors/lean_process.py)."""

import json
import subprocess
import sys
from pathlib import Path

from actors.lean_process import leave_out_unused_modules

REPO = Path(__file__).resolve().parents[1]

OWN_PROCESS = r"""
import json, sys

import numpy as np
if sys.argv[2] == "sklearn first":
    import sklearn.metrics  # noqa: F401

from actors.contract import GenerationSettings, LoadSpec, ModelRef, SampleBatch
from actors.model_host import ModelHost

host = ModelHost(LoadSpec(ModelRef(id=sys.argv[1]), precision="fp32", backend="hf"), None, own_process=True)
settings = GenerationSettings(prompt="Describe the image.", max_new_tokens=4)
host.begin_cell("cell", settings)
image = np.zeros((32, 32, 3), dtype=np.uint8)
result = host.caption(SampleBatch(["s1"], [""], [32], [32], pixels=[image]), settings, "cell")
from transformers.utils import is_sklearn_available
try:
    from sklearn.metrics import roc_curve
    importable = callable(roc_curve)
except ModuleNotFoundError:
    importable = False
print(json.dumps({"caption": result.samples[0].caption, "transformers_sees": is_sklearn_available(),
                  "importable": importable, "scipy_stats": "scipy.stats" in sys.modules}))
"""


def _host_process(first: str) -> dict:
    model = REPO / "zoo" / "shapes-llava-small"
    proc = subprocess.run([sys.executable, "-c", OWN_PROCESS, str(model), first], capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
                                                       "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_host_in_its_own_process_captions_without_sklearn():
    out = _host_process("host first")
    assert out["caption"]
    assert out == {**out, "transformers_sees": False, "importable": False, "scipy_stats": False}


def test_a_process_that_imported_sklearn_first_keeps_it():
    out = _host_process("sklearn first")
    assert out["caption"] and out["transformers_sees"] is True and out["importable"] is True


def test_nothing_is_left_out_once_transformers_is_imported(monkeypatch):
    modules = {name: mod for name, mod in sys.modules.items() if name not in ("sklearn", "transformers")}
    monkeypatch.setattr(sys, "modules", modules)  # the function's view of sys.modules, not the importer's
    assert leave_out_unused_modules() == ["sklearn"] and modules["sklearn"] is None
    del modules["sklearn"]
    modules["transformers"] = object()
    assert leave_out_unused_modules() == [] and "sklearn" not in modules


def test_the_host_pool_starts_hosts_in_their_own_processes(monkeypatch):
    """The pool's hosts are Ray actors, each in a process of its own: they are told so."""
    import ray

    from actors.contract import LoadSpec, ModelRef
    from sweep.execute.hosts import HostPool

    started = []

    class Actor:
        def options(self, **_):
            return self

        def remote(self, *args, **kwargs):
            started.append(kwargs)
            return "host"

    monkeypatch.setattr(ray, "remote", lambda cls: Actor())
    HostPool(1.0, None, None).acquire(LoadSpec(ModelRef("tiny:llava"), "fp32"))
    assert started == [{"defer_load_error": True, "own_process": True}]
