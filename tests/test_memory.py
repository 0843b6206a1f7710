"""The GPU-memory estimate of a cell, from real model configs written inline (no download)."""

import pytest

from sweep.grid.cells import Cell
from sweep.grid.config import ModelSpec
from sweep.plan.memory import (
    GB,
    check_fit,
    estimate_cell_bytes,
    gpu_memory_bytes,
    known_gpu_memory,
    language_parameters,
    refuse_unfit,
    vision_parameters,
)

# llava-hf/llava-1.5-7b-hf config.json, with the text_config fields transformers fills in (LlamaConfig).
LLAVA_15_7B = {
    "model_type": "llava",
    "image_seq_length": 576,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "text_config": {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
        "tie_word_embeddings": False, "max_position_embeddings": 4096,
    },
    "vision_config": {
        "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
        "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
        "projection_dim": 768,
    },
}

# Qwen/Qwen2-VL-2B-Instruct config.json (text fields at the top level, as on the hub).
QWEN2_VL_2B = {
    "model_type": "qwen2_vl", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
    "vision_config": {
        "depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3, "hidden_size": 1536,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
    },
}

# HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3), a small third architecture.
SMOLVLM_256M = {
    "model_type": "idefics3", "image_seq_length": 64,
    "text_config": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                    "vocab_size": 49280, "tie_word_embeddings": False},
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                      "num_attention_heads": 12, "image_size": 512, "patch_size": 16},
}


@pytest.mark.parametrize(("config", "total_b", "vision_m"), [
    (LLAVA_15_7B, 7.06, 324),   # published: 7.06 B parameters
    (QWEN2_VL_2B, 2.21, 665),   # published: 2.21 B (675 M vision)
])
def test_parameter_counts_match_published_sizes(config, total_b, vision_m):
    layers, embed = language_parameters(config)
    vision = vision_parameters(config)
    assert (layers + embed + vision) / 1e9 == pytest.approx(total_b, rel=0.02)
    assert vision / 1e6 == pytest.approx(vision_m, rel=0.05)


@pytest.mark.parametrize(("name", "config", "precision", "gpu", "fits"), [
    ("LLaVA-1.5-7B", LLAVA_15_7B, "fp16", "RTX 5080", False),   # 14 GB of weights alone + KV + margin
    ("LLaVA-1.5-7B", LLAVA_15_7B, "nf4", "RTX 5080", True),
    ("LLaVA-1.5-7B", LLAVA_15_7B, "int8", "RTX 5080", True),
    ("LLaVA-1.5-7B", LLAVA_15_7B, "fp16", "L4", True),
    ("LLaVA-1.5-7B", LLAVA_15_7B, "fp32", "L4", False),
    ("LLaVA-1.5-7B", LLAVA_15_7B, "fp32", "A100-40G", True),
    ("Qwen2-VL-2B", QWEN2_VL_2B, "bf16", "L4", True),
    ("Qwen2-VL-2B", QWEN2_VL_2B, "fp32", "T4", True),
    ("SmolVLM-256M", SMOLVLM_256M, "fp32", "T4", True),
])
def test_fit_table_for_known_architectures(name, config, precision, gpu, fits):
    est = estimate_cell_bytes(config, precision, batch_size=8, max_new_tokens=32)
    budget = known_gpu_memory(gpu)
    reason = check_fit(est["total"], budget)
    assert (reason is None) == fits, (name, precision, gpu, {k: v / GB for k, v in est.items()})


def test_llava_fp16_does_not_fit_16_gb_even_one_image_at_a_time():
    one = estimate_cell_bytes(LLAVA_15_7B, "fp16", batch_size=1, max_new_tokens=16)
    assert one["weights"] < 16 * GB < one["total"]  # the weights alone would squeeze in; the margin does not
    assert check_fit(estimate_cell_bytes(LLAVA_15_7B, "nf4", batch_size=1, max_new_tokens=16)["total"],
                     16 * GB) is None


def test_estimate_parts_follow_the_formula():
    fp16 = estimate_cell_bytes(LLAVA_15_7B, "fp16", batch_size=8, max_new_tokens=32)
    nf4 = estimate_cell_bytes(LLAVA_15_7B, "nf4", batch_size=8, max_new_tokens=32)
    int8 = estimate_cell_bytes(LLAVA_15_7B, "int8", batch_size=8, max_new_tokens=32)
    fp32 = estimate_cell_bytes(LLAVA_15_7B, "fp32", batch_size=8, max_new_tokens=32)
    assert fp16["weights"] / GB == pytest.approx(14.1, rel=0.02)
    assert fp32["weights"] == pytest.approx(2 * fp16["weights"], rel=1e-6)
    assert nf4["weights"] < int8["weights"] < fp16["weights"]
    assert nf4["weights"] / GB == pytest.approx(4.8, rel=0.05)  # 4-bit layers, float embeddings + vision
    # KV cache: 2 x 32 layers x 32 kv heads x 128 x (576 image + 32 text + 32 new) tokens x 8 x 2 bytes
    assert fp16["kv_cache"] == 2 * 32 * 32 * 128 * (576 + 32 + 32) * 8 * 2
    assert nf4["kv_cache"] == fp16["kv_cache"]  # the cache stays in the compute dtype
    doubled = estimate_cell_bytes(LLAVA_15_7B, "fp16", batch_size=16, max_new_tokens=32)
    assert doubled["kv_cache"] == 2 * fp16["kv_cache"]
    beams = estimate_cell_bytes(LLAVA_15_7B, "fp16", batch_size=8, max_new_tokens=32, num_beams=3)
    assert beams["kv_cache"] == 3 * fp16["kv_cache"]
    assert fp16["total"] == fp16["weights"] + fp16["kv_cache"] + fp16["activations"]
    # Qwen2-VL: grouped-query attention (2 kv heads) and 256 image tokens at 448 px keep its cache small
    qwen = estimate_cell_bytes(QWEN2_VL_2B, "bf16", batch_size=8, max_new_tokens=32)
    assert qwen["kv_cache"] == 2 * 28 * 2 * 128 * (256 + 32 + 32) * 8 * 2
    with pytest.raises(ValueError, match="unknown precision"):
        estimate_cell_bytes(QWEN2_VL_2B, "fp64", batch_size=1, max_new_tokens=1)


def test_refusal_message_gives_both_numbers():
    msg = check_fit(20 * GB, 16 * GB)
    assert msg is not None and "20.0 GB" in msg and "16.0 GB" in msg
    assert str(20 * GB) in msg and str(16 * GB) in msg
    assert check_fit(16 * GB, 16 * GB) is None


def test_known_gpu_memory_table():
    assert known_gpu_memory("L4") == 24 * GB
    assert known_gpu_memory("RTX 5080") == 16 * GB
    assert known_gpu_memory("NVIDIA RTX 5080") == 16 * GB
    assert known_gpu_memory("T4") == 16 * GB
    assert known_gpu_memory("A100-40G") == 40 * GB
    assert known_gpu_memory("A100-80G") == 80 * GB
    assert known_gpu_memory("H100") == 80 * GB
    assert known_gpu_memory("TPU-V9") is None
    assert gpu_memory_bytes("L4") == 24 * GB
    assert gpu_memory_bytes("L4", 22.5) == int(22.5 * GB)  # the grid's override wins
    assert gpu_memory_bytes(None) is None


def _cell(model_id: str, precision: str, gpus: float = 1, batch: int = 8) -> Cell:
    return Cell(model=ModelSpec(id=model_id), precision=precision, max_new_tokens=32, prompt="p",
                num_beams=None, do_sample=False, temperature=1.0, top_p=1.0, min_new_tokens=None,
                repetition_penalty=1.0, backend="auto", batch_size=batch, gpus_per_actor=gpus, replicas=1,
                dataset_fingerprint="x")


def test_refuse_unfit_names_only_the_cells_that_do_not_fit():
    cells = [_cell("llava-hf/llava-1.5-7b-hf", p) for p in ("fp16", "nf4")]
    cells += [_cell("Qwen/Qwen2-VL-2B-Instruct", "bf16"), _cell("my-own-model", "fp32")]
    configs = {"llava-hf/llava-1.5-7b-hf": LLAVA_15_7B, "Qwen/Qwen2-VL-2B-Instruct": QWEN2_VL_2B}
    refused = refuse_unfit(cells, configs, known_gpu_memory("RTX 5080"))
    assert list(refused) == [cells[0].cell_id]
    assert refused[cells[0].cell_id].startswith("oom (estimated): needs about")
    assert "16.0 GB" in refused[cells[0].cell_id]
    # two L4s per actor hold fp32 LLaVA; half an L4 does not hold fp16 LLaVA
    big = _cell("llava-hf/llava-1.5-7b-hf", "fp32", gpus=2)
    half = _cell("llava-hf/llava-1.5-7b-hf", "fp16", gpus=0.5)
    assert list(refuse_unfit([big, half], configs, known_gpu_memory("L4"))) == [half.cell_id]
    assert refuse_unfit(cells, configs, None) == {}  # unknown GPU: refuse nothing


def test_grid_accepts_accelerator_type_and_memory_override(tmp_path):
    from sweep.execute.pipeline import PipelineSettings
    from sweep.grid.config import ResourcesConfig

    res = ResourcesConfig(accelerator_type="L4", gpu_memory_gb=22)
    assert gpu_memory_bytes(res.accelerator_type, res.gpu_memory_gb) == 22 * GB
    assert ResourcesConfig().accelerator_type is None
    assert PipelineSettings(128, 0.5, None).accelerator_type is None
