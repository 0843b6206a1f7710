"""benchmarks/gpu_check.py: the real-size architectures are the checkpoints' sizes, and the whole check runs
(scaled down, on CPU) in an interpreter where nothing but torch/transformers and the model side imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_archs, gpu_check

REPO = Path(__file__).resolve().parents[1]
ABSENT = ("ray", "mlflow", "sweep", "vllm", "bitsandbytes", "pycocoevalcap", "codecarbon")

# As on a bare GPU machine: these packages are not found, whatever is installed here.
BARE_RUN = r"""
import json, runpy, sys

ABSENT = tuple(json.loads(sys.argv[1]))

from testkit.bare import hide_packages

hide_packages(ABSENT)
sys.argv = ["gpu_check", *sys.argv[2:]]
try:
    runpy.run_module("benchmarks.gpu_check", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    print(json.dumps({"loaded": sorted(m for m in ABSENT if m in sys.modules)}))
    raise
"""


@pytest.mark.slow  # builds a 152k-token tokenizer and two 7B-class configs: 6-11 s here
def test_the_real_size_architectures_have_the_checkpoints_sizes():
    """Built on the meta device (no memory): parameter counts of Qwen2-VL-2B-Instruct (2.21 B) and
    llava-1.5-7b-hf (7.06 B), tokenizers of the configs' vocabulary with the special tokens at their real
    ids, and the image tokens a 448-px image gets (Qwen2-VL: 16x16 merged patches; LLaVA: 24x24)."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    expected = {"qwen2_vl-2b": (2.209e9, 151936, 151655, 256), "llava-1.5-7b": (7.063e9, 32064, 32000, 576)}
    for make in gpu_archs.architectures(tiny=False):
        parts = make()
        params, vocab, image_id, image_tokens = expected[parts.name]
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(parts.config, dtype=torch.bfloat16)
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=1e-3), parts.name
        tokenizer = parts.processor.tokenizer
        assert len(tokenizer) == vocab == model.config.text_config.vocab_size
        assert tokenizer.convert_tokens_to_ids(tokenizer.image_token) == image_id
        image = Image.fromarray(gpu_archs.synthetic_images(1, parts.image_side)[0])
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi."}]}]
        text = parts.processor.apply_chat_template(messages, add_generation_prompt=True)
        ids = parts.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0]
        assert int((ids == image_id).sum()) == image_tokens, parts.name


@pytest.mark.slow
def test_the_check_runs_scaled_down_without_ray_mlflow_sweep_or_bitsandbytes(tmp_path):
    out = tmp_path / "out"
    args = ["--tiny", "--out", str(out), "--batch-sizes", "1,4", "--new-tokens", "6", "--repeats", "1"]
    proc = subprocess.run([sys.executable, "-c", BARE_RUN, json.dumps(ABSENT), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["loaded"] == []
    result = json.loads((out / "gpu_check.json").read_text())
    measured = [r for r in result["rows"] if "images_per_sec" in r]
    models = ("qwen2_vl-2b-tiny", "llava-1.5-7b-tiny")
    assert {(r["model"], r["path"], r["batch_size"]) for r in measured} == {
        (m, p, b) for m in models for p in ("bare", "host") for b in (1, 4)}
    for r in measured:  # min_new_tokens: random weights never stop early, so every row is bs x 6 tokens
        assert r["generated_tokens_per_batch"] == r["batch_size"] * 6, r
        assert r["images_per_sec"] > 0 and r["tokens_per_sec"] == pytest.approx(r["images_per_sec"] * 6)
    skipped = {(r["model"], r["precision"]): r["skipped"] for r in result["rows"] if "skipped" in r}
    assert set(skipped.values()) == {"bitsandbytes not installed"} and len(skipped) == 4
    assert len(result["host_vs_bare"]) == 4 and result["tiny"] is True
    markdown = (out / "gpu_check.md").read_text()
    assert "| llava-1.5-7b-tiny | host | bf16 | 4 |" in markdown and "bitsandbytes not installed" in markdown


def test_real_sizes_refuse_a_machine_without_cuda_and_a_spent_budget_skips(tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        assert gpu_check.main(["--out", str(tmp_path / "real")]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert gpu_check.main(["--tiny", "--out", str(tmp_path), "--budget-s", "0"]) == 0
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert rows and not [r for r in rows if "images_per_sec" in r]
    assert {r["skipped"] for r in rows if r["precision"] == "bf16"} == {"time budget spent"}
