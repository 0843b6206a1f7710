"""The layout holds: no import circles, the model side never imports the driver, and the model side runs
on a machine that has only torch + transformers (no Ray, no MLflow, no `sweep`)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("actors", "sweep", "testkit", "zoo")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules this file imports anywhere (module level or inside functions: a lazy import
    still ties the two modules together). `from a import b` counts a.b when b is a module, else a."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a non-module attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): project_imports(p, modules) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_circles_and_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    graph = import_graph()
    assert "actors.contract" in graph["actors.model_host"]
    assert "actors.families.base" in graph["actors.families.llava"]  # a relative-free family module
    assert "actors.tiny.common" in graph["actors.tiny.llava"]  # `from .common import ...`


def test_no_import_circles_and_the_model_side_never_imports_the_driver():
    graph = import_graph()
    assert len(graph) > 50
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    driver = {m: sorted(t for t in targets if t.split(".")[0] == "sweep")
              for m, targets in graph.items() if m.split(".")[0] in ("actors", "testkit")}
    assert not {m: t for m, t in driver.items() if t}, driver


# Run in a fresh interpreter where ray, mlflow and sweep cannot be imported, as on a bare GPU machine.
BARE_MACHINE = r"""
import json, sys

from testkit.bare import hide_packages

hide_packages(("ray", "mlflow", "sweep"))
try:
    import ray  # noqa: F401
    raise SystemExit("ray is still importable")
except ModuleNotFoundError:
    pass

import numpy as np
from PIL import Image

import actors.backends, actors.hf, actors.precision, actors.vllm_backend  # noqa: F401
from actors.contract import GenerationSettings, LoadSpec, ModelRef, SampleBatch
from actors.model_host import ModelHost
from actors.registry import get_family, known_families

families = [get_family(name).name for name in known_families()]
host = ModelHost(LoadSpec(ModelRef(id=sys.argv[1]), precision="fp32", backend="hf"), energy_country=None)
settings = GenerationSettings(prompt="Describe the image.", max_new_tokens=8)
start = host.begin_cell("cell", settings)
image = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
result = host.caption(SampleBatch(["s1", "s2"], ["", "bad file"], [64, 0], [64, 0], pixels=[image, image]),
                      settings, "cell")
print(json.dumps({
    "families": families,
    "captions": [s.caption for s in result.samples],
    "errors": [s.error for s in result.samples],
    "weights": start.report.weights,
    "loaded": sorted(m for m in ("ray", "mlflow", "sweep") if m in sys.modules),
}))
"""


def test_the_model_side_runs_without_ray_mlflow_or_the_driver(tmp_path):
    model = REPO / "zoo" / "shapes-llava-small"
    image = next((REPO / "zoo" / "shapes-data" / "test").rglob("*.png"))
    proc = subprocess.run([sys.executable, "-c", BARE_MACHINE, str(model), str(image)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["families"]) >= 17 and out["loaded"] == []
    assert out["captions"][0] and out["errors"] == ["", "bad file"] and out["captions"][1] == ""
    assert out["weights"] == "toy"


def test_the_host_methods_the_driver_calls_are_the_contracts_protocol():
    """`actors.contract.ModelHostApi` declares what the driver calls on a model host: ModelHost has each
    method with the same parameters, and the driver reaches a host only through `call_host` (no
    `host.<method>.remote` written by hand, so no method outside the contract)."""
    import inspect
    import re

    from actors.contract import ModelHostApi
    from actors.model_host import ModelHost

    declared = [n for n, v in vars(ModelHostApi).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert sorted(declared) == ["begin_cell", "caption_parts", "caption_window"]
    for name in declared:
        want = list(inspect.signature(getattr(ModelHostApi, name)).parameters)
        assert list(inspect.signature(getattr(ModelHost, name)).parameters) == want, name
    assert issubclass(ModelHost, ModelHostApi)
    methods = "|".join(declared)
    by_hand = re.compile(rf"\.({methods})\.remote\(")
    offenders = [str(p) for p in (REPO / "sweep").rglob("*.py") if by_hand.search(p.read_text())]
    assert offenders == []
