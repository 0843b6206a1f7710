"""Check pip's resolution report of `.[vllm]` (the GPU install): vLLM and the torch it was built for, and the
transformers it resolves to is the one the test suite runs on (this interpreter's).

    pip install --dry-run --ignore-installed --use-feature=fast-deps --report R.json -e ".[vllm]"
    python .ci/vllm_resolution.py R.json
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

WANTED = {"vllm": "0.33.0", "torch": "2.14.0", "torchvision": "0.29.0"}


def main(report_path: str) -> int:
    report = json.loads(Path(report_path).read_text())
    resolved = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    problems = [f"{name}: resolved {resolved.get(name)}, the extra pins {version}"
                for name, version in WANTED.items() if resolved.get(name) != version]
    tested = md.version("transformers")
    if resolved.get("transformers") != tested:
        problems.append(f"transformers: .[vllm] resolves to {resolved.get('transformers')}, "
                        f"the suite runs on {tested}")
    for line in problems:
        print(f"vllm extra: {line}", file=sys.stderr)
    if not problems:
        print(f"vllm extra resolves: {len(resolved)} packages, vllm {resolved['vllm']}, torch "
              f"{resolved['torch']}, transformers {resolved['transformers']} (the suite's)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
