"""Issue 27's precisions: fp8, int8wo/int4wo (torchao weight-only), prequantized (the checkpoint's own).

The table, detection of a checkpoint's quantization_config on synthetic config.json files, every refusal
message, vLLM's arguments as pure functions (vLLM is not installed in the test venv: the mapping is tested,
not vLLM's engine), and the HF load path on tiny models (torchao runs on this CPU; fp8 has no CPU kernel
and is refused)."""

from __future__ import annotations

import json

import pytest

from actors.backends import choose_backend
from actors.checkpoint_quant import checkpoint_quant, load_refusal
from actors.contract import CaptionRequest
from actors.precision import PRECISIONS, VLLM_PRECISIONS, refusal
from actors.registry import get_family
from actors.resolve import read_config_json
from actors.vllm_backend import engine_precision_args, language_linear_format

LLAVA = get_family("llava")

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm",
       "modules_to_not_convert": ["visual"]}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
CT_W4A16 = {"quant_method": "compressed-tensors", "format": "pack-quantized",
            "ignore": ["lm_head", "re:visual.*"],
            "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None, "weights": {
                "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}}
CT_FP8 = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
          "config_groups": {"group_0": {"targets": ["Linear"],
                                        "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
                                        "input_activations": {"num_bits": 8, "type": "float",
                                                              "dynamic": True}}}}


def write_config(tmp_path, quantization: dict | None, nested: bool = False) -> dict:
    """A synthetic VLM config.json (Qwen2-VL-like) written to disk and read back as the loaders read it."""
    config: dict = {"model_type": "qwen2_vl", "hidden_size": 64, "text_config": {"hidden_size": 64}}
    if quantization is not None:
        (config["text_config"] if nested else config)["quantization_config"] = quantization
    (tmp_path / "config.json").write_text(json.dumps(config))
    return read_config_json(str(tmp_path))


# --- the table -------------------------------------------------------------------------------------------

def test_every_new_precision_has_a_row_with_its_backends_and_quantized_side():
    assert PRECISIONS["int8wo"].library == PRECISIONS["int4wo"].library == "torchao"
    assert PRECISIONS["int8wo"].backends == ("hf",) and "vllm" in PRECISIONS["fp8"].backends
    assert {"fp8", "prequantized", "fp16"} <= set(VLLM_PRECISIONS) and "int4wo" not in VLLM_PRECISIONS
    for name in ("int8wo", "int4wo", "fp8"):  # the vision tower stays float
        assert PRECISIONS[name].side_format("vision") == "float"
        assert PRECISIONS[name].side_format("language") == name
    assert PRECISIONS["prequantized"].side_format("language") == "per checkpoint"


def test_quantized_linear_bytes_follow_the_formats():
    w, rows = 64 * 128, 128  # a 64 -> 128 linear layer
    assert PRECISIONS["int8wo"].linear_bytes(w, rows, 4.0) == w + 5 * rows  # int8 + fp32 scale + int8 zero
    assert PRECISIONS["int4wo"].linear_bytes(w, rows, 4.0) == w / 2 + w / 32 * 2 * 4  # + scale, zero /32
    assert PRECISIONS["int4wo"].linear_bytes(w, rows, 2.0) == w / 2 + w / 32 * 2 * 2  # bf16 scales on GPU
    assert PRECISIONS["nf4"].linear_bytes(w, rows, 2.0) == w / 2 + w / 64 * 4  # fp32 absmax per block


# --- pre-quantized checkpoints: detection -----------------------------------------------------------------

@pytest.mark.parametrize(("quantization", "nested", "method", "bits", "group", "shown"), [
    (AWQ, False, "awq", 4, 128, "awq 4-bit (group 128)"),
    (GPTQ, False, "gptq", 4, 128, "gptq 4-bit (group 128)"),
    (CT_W4A16, False, "compressed-tensors", 4, 128, "compressed-tensors 4-bit (group 128)"),
    (CT_FP8, False, "compressed-tensors", 8, None, "compressed-tensors w8a8 fp8"),
    (AWQ, True, "awq", 4, 128, "awq 4-bit (group 128)"),  # inside text_config
])
def test_detects_the_checkpoint_quantization(tmp_path, quantization, nested, method, bits, group, shown):
    quant = checkpoint_quant(write_config(tmp_path, quantization, nested))
    assert (quant.method, quant.bits, quant.group_size) == (method, bits, group)
    assert quant.describe() == shown


def test_detection_keeps_what_the_checkpoint_left_unquantized(tmp_path):
    assert checkpoint_quant(write_config(tmp_path, CT_W4A16)).ignored == ("lm_head", "re:visual.*")
    assert checkpoint_quant(write_config(tmp_path, AWQ)).ignored == ("visual",)
    assert checkpoint_quant(write_config(tmp_path, None)) is None


def test_awq_bytes_per_weight_count_its_group_scales():
    quant = checkpoint_quant({"quantization_config": AWQ})
    assert quant.weight_bytes() == pytest.approx(0.5 + 2.5 / 128)


# --- refusals --------------------------------------------------------------------------------------------

def test_fp8_refused_on_cpu_and_old_gpus_with_reasons():
    cpu = refusal("fp8", backend="hf", cuda_capability=None, config=None)
    assert "no fp8 matmul kernel" in cpu and "8.9" in cpu
    t4 = refusal("fp8", backend="vllm", cuda_capability=(7, 5), config=None)
    assert "7.5" in t4 and ">= 8.9" in t4 and "bf16" in t4
    a100 = refusal("fp8", backend="hf", cuda_capability=(8, 0), config=None)
    assert "8.0" in a100
    assert refusal("fp8", backend="vllm", cuda_capability=(8, 9), config=None) is None  # L4
    assert refusal("fp8", backend="hf", cuda_capability=(9, 0), config=None) is None  # H100


def test_prequantized_refused_without_a_quantization_config(tmp_path):
    config = write_config(tmp_path, None)
    reason = refusal("prequantized", backend="vllm", cuda_capability=(8, 9), config=config)
    assert "has no" in reason and "quantization_config" in reason


def test_prequantized_method_the_backend_cannot_load():
    awq = checkpoint_quant({"quantization_config": AWQ})
    hf = load_refusal(awq, "hf", installed=set())
    assert "gptqmodel" in hf and "awq 4-bit" in hf and "vLLM" in hf
    assert load_refusal(awq, "hf", installed={"gptqmodel"}) is None
    gptq = load_refusal(checkpoint_quant({"quantization_config": GPTQ}), "hf", installed={"gptqmodel"})
    assert "optimum" in gptq and "gptqmodel" not in gptq.split("needs")[1].split("(")[0]
    ct = load_refusal(checkpoint_quant({"quantization_config": CT_W4A16}), "hf", installed=set())
    assert "compressed_tensors" in ct
    assert load_refusal(awq, "vllm", installed=set()) is None  # vLLM loads AWQ itself
    odd = checkpoint_quant({"quantization_config": {"quant_method": "higgs", "bits": 2}})
    assert "vLLM cannot load a higgs 2-bit" in load_refusal(odd, "vllm", installed=set())
    assert "no loader" in load_refusal(odd, "hf", installed=set())


def test_torchao_precisions_refused_on_vllm():
    reason = refusal("int4wo", backend="vllm", cuda_capability=(9, 0), config=None)
    assert reason == "precision int4wo is torchao, which runs on hf only"


# --- backend choice and vLLM's arguments -----------------------------------------------------------------

def test_backend_choice_for_the_new_precisions():
    assert choose_backend("auto", LLAVA, "fp8", cuda=True, vllm_importable=True)[0] == "vllm"
    assert choose_backend("auto", LLAVA, "prequantized", cuda=True, vllm_importable=True)[0] == "vllm"
    backend, why = choose_backend("auto", LLAVA, "int8wo", cuda=True, vllm_importable=True)
    assert backend == "hf" and "int8wo is torchao, which runs on HF only" in why
    with pytest.raises(ValueError, match="int4wo is torchao"):
        choose_backend("vllm", LLAVA, "int4wo", cuda=True, vllm_importable=True)


def test_vllm_engine_arguments_per_precision():
    assert engine_precision_args("bf16") == {"dtype": "bfloat16"}
    assert engine_precision_args("fp8") == {"dtype": "bfloat16", "quantization": "fp8"}
    # the method is read by vLLM from config.json (naming it would turn off awq_marlin/gptq_marlin)
    assert engine_precision_args("prequantized") == {"dtype": "auto"}
    with pytest.raises(ValueError, match="bitsandbytes precisions run on HF"):
        engine_precision_args("nf4")
    assert language_linear_format("fp8", None) == ("fp8", 1.0)
    awq = checkpoint_quant({"quantization_config": AWQ})
    assert language_linear_format("prequantized", awq) == ("awq 4-bit (group 128)", awq.weight_bytes())
    assert language_linear_format("fp16", None) is None


# --- the HF load path on tiny models ---------------------------------------------------------------------

def _caption(captioner):
    from PIL import Image

    image = Image.new("RGB", (64, 48), (200, 40, 40))
    results = captioner.generate([CaptionRequest("s", [image], "Describe the image.")],
                                 {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False})
    return results[0]


@pytest.mark.parametrize(("model", "precision", "ratio"), [
    ("tiny:llava", "int8wo", (0.25, 0.33)),  # int8 of fp32 + per-row scale and zero point
    ("tiny:llava", "int4wo", (0.125, 0.22)),  # int4 + fp32 scale and zero point per 32 weights
    ("tiny:qwen2_vl", "int8wo", (0.25, 0.33)),
    ("tiny:qwen2_vl", "int4wo", (0.125, 0.22)),
])
def test_torchao_precision_loads_quantizes_the_language_side_and_captions(model, precision, ratio):
    import torch

    from actors.backends import make_captioner
    from actors.module_formats import module_bytes
    from sweep.plan.memory import weight_bytes

    captioner = make_captioner(model, None, None, False, precision, "hf")
    formats, sizes = captioner.report.module_precisions, captioner.report.module_weight_bytes
    assert formats["language"].split("+")[0] == precision and formats["vision"] == "float32", formats
    # the decoder's linear layers: packed data and scales, against the float size they stand for
    linears = [m for n, m in captioner.model.named_modules()
               if isinstance(m, torch.nn.Linear) and "language_model" in n
               and type(m.weight).__name__ != "Parameter"]
    assert linears, "no quantized linear layer in the language model"
    packed = sum(module_bytes(m) for m in linears)
    as_fp32 = sum(m.weight.numel() * 4 for m in linears)
    assert ratio[0] <= packed / as_fp32 <= ratio[1]
    fp32 = make_captioner(model, None, None, False, "fp32", "hf").report
    assert sizes["vision"] == fp32.module_weight_bytes["vision"]
    assert sizes["language"] < 0.8 * fp32.module_weight_bytes["language"]
    # the memory model's weights (float modules at 4 bytes on CPU) within 5% of what is stored
    config = json.loads(open(f"{captioner.model.name_or_path}/config.json").read())
    assert weight_bytes(config, precision, 4.0) == pytest.approx(captioner.report.weight_bytes, rel=0.05)
    result = _caption(captioner)
    assert result.generated_tokens == 4 and isinstance(result.caption, str)


def test_fp8_is_refused_on_cpu_before_loading(monkeypatch):
    from actors.backends import cuda_capability, make_captioner
    from actors.hf import HFCaptioner

    if cuda_capability() is not None:
        pytest.skip("a CPU's refusal: this machine has a GPU")

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(HFCaptioner, "__init__", no_load)
    with pytest.raises(ValueError, match="no fp8 matmul kernel"):
        make_captioner("tiny:llava", None, None, False, "fp8", "hf")


def test_prequantized_loads_a_torchao_checkpoint_and_refuses_an_unquantized_one(tmp_path):
    from actors.backends import make_captioner

    with pytest.raises(ValueError, match="has no"):
        make_captioner("tiny:llava", None, None, False, "prequantized", "hf")
    quantizer = make_captioner("tiny:llava", None, None, False, "int8wo", "hf")
    quantizer.model.save_pretrained(tmp_path)
    quantizer.processor.save_pretrained(tmp_path)
    assert checkpoint_quant(read_config_json(str(tmp_path))).describe() == "torchao 8-bit"
    loaded = make_captioner(str(tmp_path), "llava", None, False, "prequantized", "hf")
    assert loaded.report.module_precisions == quantizer.report.module_precisions
    assert loaded.report.module_weight_bytes == quantizer.report.module_weight_bytes
    assert _caption(loaded).generated_tokens == 4


# --- memory model ----------------------------------------------------------------------------------------

def test_memory_model_orders_the_new_precisions():
    from test_memory import LLAVA_15_7B

    from sweep.plan.memory import GB, estimate_cell_bytes, language_linears

    est = {p: estimate_cell_bytes(LLAVA_15_7B, p, 1, 16)["weights"] for p in
           ("fp16", "int8", "int8wo", "fp8", "nf4", "int4wo")}
    assert est["int4wo"] < est["int8wo"] < est["fp16"] and est["nf4"] < est["int8"] < est["fp16"]
    assert est["fp8"] == pytest.approx(est["int8"], rel=0.01)
    awq = estimate_cell_bytes({**LLAVA_15_7B, "quantization_config": AWQ}, "prequantized", 1, 16)["weights"]
    lin_w, _ = language_linears(LLAVA_15_7B)  # the decoder's linears at AWQ's 4 bits + fp16 scale per 128
    assert awq == pytest.approx(est["fp16"] - lin_w * (2 - (0.5 + 2.5 / 128)), rel=1e-6)
    assert awq < est["nf4"] < est["int4wo"]  # group 128 < nf4's 64-blocks < torchao's 32-groups of 2 floats
    assert awq / GB == pytest.approx(4.54, rel=0.01)
    with pytest.raises(ValueError, match="no quantization_config"):
        estimate_cell_bytes(LLAVA_15_7B, "prequantized", 1, 16)


# --- the grid and the dry run ----------------------------------------------------------------------------

ALL = ["fp32", "int8", "nf4", "int8wo", "int4wo", "fp8", "prequantized"]


def _dry_run(tmp_path, capsys, accelerator: str | None) -> tuple[int, str]:
    import yaml

    from sweep.run import main

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    awq = tmp_path / "llava-awq"  # a pre-quantized checkpoint's config.json: the plan reads only that
    awq.mkdir(exist_ok=True)
    config = json.loads((repo / "zoo" / "shapes-llava-small" / "config.json").read_text())
    (awq / "config.json").write_text(json.dumps({**config, "quantization_config": AWQ}))
    data = {"name": "precisions", "output_dir": str(tmp_path / "out"), "precisions": ALL,
            "max_new_tokens": [8],
            "dataset": {"captions": str(repo / "zoo/shapes-data/test/captions.json"),
                        "images": str(repo / "zoo/shapes-data/test/images"), "limit": 2},
            "models": [{"id": str(repo / "zoo/shapes-llava-small"), "family": "llava"},
                       {"id": str(awq), "family": "llava"}]}
    if accelerator:
        data["resources"] = {"accelerator_type": accelerator}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(data))
    code = main([str(tmp_path / "grid.yaml"), "--dry-run"])
    return code, capsys.readouterr().out


def _cell_block(text: str, label: str) -> str:
    start = text.index(f"] {label}  id=")
    return text[start:text.find("\n[", start)]


def test_every_precision_validates_and_the_dry_run_shows_backend_formats_and_refusals(tmp_path, capsys):
    from actors.backends import cuda_capability

    if cuda_capability() is not None:
        pytest.skip("the CPU plan: this machine has a GPU")  # the refusals below are a CPU's
    code, text = _dry_run(tmp_path, capsys, None)
    assert code == 1 and "14 cells, 10 runnable, 4 cannot run" in text
    int4 = _cell_block(text, "shapes-llava-small/int4wo/t8")
    assert "backend=hf" in int4 and "vision=float language=int4wo" in int4 and "CANNOT" not in int4
    fp8 = _cell_block(text, "shapes-llava-small/fp8/t8")
    assert "CANNOT RUN: precision fp8 needs a GPU with fp8 support" in fp8
    unquantized = _cell_block(text, "shapes-llava-small/prequantized/t8")
    assert "CANNOT RUN: precision prequantized needs a checkpoint whose config.json has a" in unquantized
    awq = _cell_block(text, "llava-awq/prequantized/t8")
    assert "language=awq 4-bit (group 128)" in awq and "gptqmodel" in awq
    assert "CANNOT RUN: HF cannot load" in awq


@pytest.mark.parametrize(("accelerator", "fp8_refused"), [("T4", "compute capability >= 8.9 (L4, RTX 40xx, "
                                                                 "H100); this GPU has 7.5"), ("L4", None)])
def test_the_dry_run_judges_fp8_and_awq_on_the_target_gpu(tmp_path, capsys, accelerator, fp8_refused):
    _, text = _dry_run(tmp_path, capsys, accelerator)
    fp8 = _cell_block(text, "shapes-llava-small/fp8/t8")
    assert (fp8_refused in fp8) if fp8_refused else ("CANNOT" not in fp8)
    # on a GPU target, auto may serve AWQ with vLLM on the hosts: not refused for HF's missing package
    assert "CANNOT" not in _cell_block(text, "llava-awq/prequantized/t8")


def test_vllm_weight_estimate_counts_the_language_linears_at_fp8():
    """What a vLLM cell reports as its weights (its engine is another process): the architecture on the
    meta device, the language model's linear layers at the quantized format's bytes."""
    from actors.resolve import resolve_model
    from actors.vllm_backend import estimate_weights

    path, _ = resolve_model("tiny:llava")
    bf16, (formats, sizes) = estimate_weights(path, LLAVA, "bfloat16", {})
    fp8, (fp8_formats, fp8_sizes) = estimate_weights(path, LLAVA, "bfloat16", {}, ("fp8", 1.0))
    assert fp8_formats["language"] == "fp8+bfloat16" and fp8_formats["vision"] == formats["vision"]
    assert fp8_sizes["vision"] == sizes["vision"]
    assert 0 < bf16 - fp8 == sizes["language"] - fp8_sizes["language"] < sizes["language"] / 2
