"""A model host in a process of its own, and a decode task that loads a processor, spare transformers'
import of scikit-learn; scikit-learn stays importable, and a shared process is left as it is
(actors/lean_process.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from actors.lean_process import spare_unused_imports

REPO = Path(__file__).resolve().parents[1]

OWN_PROCESS = r"""
import json, sys

import numpy as np

from actors.contract import GenerationSettings, LoadSpec, ModelRef, SampleBatch
from actors.model_host import ModelHost

# a user's loader that never imports transformers: its host does not import it either
custom = ModelHost(LoadSpec(ModelRef(id="m1", loader="fault_models:counting"), precision="fp32"), None,
                   own_process=True)
custom_imports_transformers = "transformers" in sys.modules
host = ModelHost(LoadSpec(ModelRef(id=sys.argv[1]), precision="fp32", backend="hf"), None, own_process=True)
settings = GenerationSettings(prompt="Describe the image.", max_new_tokens=4)
host.begin_cell("cell", settings)
image = np.zeros((32, 32, 3), dtype=np.uint8)
result = host.caption(SampleBatch(["s1"], [""], [32], [32], pixels=[image]), settings, "cell")
from transformers.utils import is_sklearn_available
imported = "sklearn" in sys.modules
try:
    from sklearn.metrics import roc_curve
    importable = callable(roc_curve)
except ModuleNotFoundError:
    importable = False
print(json.dumps({"caption": result.samples[0].caption, "transformers_sees": is_sklearn_available(),
                  "importable": importable, "imported_by_transformers": imported,
                  "custom_imports_transformers": custom_imports_transformers}))
"""


def _host_process(tmp_path: Path) -> dict:
    model = REPO / "zoo" / "shapes-llava-small"
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin", "VLM_SWEEP_FAULT_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", OWN_PROCESS, str(model)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_host_in_its_own_process_captions_without_transformers_importing_sklearn(tmp_path):
    out = _host_process(tmp_path)
    assert out["caption"]
    assert out == {**out, "transformers_sees": False, "imported_by_transformers": False, "importable": True,
                   "custom_imports_transformers": False}


def test_too_late_once_transformers_generation_is_imported():
    """The pytest process has imported transformers' generation module (a tiny model built above, or
    here): nothing is changed there."""
    import transformers.generation.candidate_generator  # noqa: F401
    import transformers.utils

    before = transformers.utils.is_sklearn_available
    assert spare_unused_imports() is False and transformers.utils.is_sklearn_available is before


def test_a_decode_task_spares_sklearn_only_where_it_loads_a_processor(monkeypatch, tmp_path):
    """What sparing does in a process is the host's check above; here, when a decode task asks for it."""
    from PIL import Image

    import actors.lean_process
    from actors.contract import Preprocessor
    from sweep.execute.stages import decode_task

    asked = []
    monkeypatch.setattr(actors.lean_process, "spare_unused_imports", lambda: asked.append(True) or False)
    Image.new("RGB", (40, 30), "red").save(tmp_path / "a.png")
    rows = [{"sample_id": "a", "path": str(tmp_path / "a.png"), "error": ""}]
    assert decode_task(rows, False, 32).prepared is None and asked == []
    model = str(REPO / "zoo" / "shapes-llava-small")
    batch = decode_task(rows, False, 32, prepare=(Preprocessor("llava", model, model), "Describe the image."))
    assert batch.prepared is not None and asked == [True]


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
