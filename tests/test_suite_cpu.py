"""benchmarks/suite_cpu.py: a command's CPU seconds by process group, and its exit code passed through."""

import json
import sys
from pathlib import Path

import psutil

from benchmarks.suite_cpu import main

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\nraise SystemExit(3)"


def test_a_burning_child_is_counted_in_its_group_and_its_exit_code_kept(tmp_path: Path):
    out = tmp_path / "cpu.json"
    assert main(["--json", str(out), "--", sys.executable, "-c", BURN]) == 3
    result = json.loads(out.read_text())
    assert result["exit_code"] == 3 and result["wall_s"] >= 0.6
    groups = {row["group"]: row for row in result["groups"]}
    child = groups[psutil.Process().name()[:30]]  # the child runs this interpreter
    assert child["cpu_s"] >= 0.5 and child["processes"] >= 1
    assert result["total_cpu_s"] >= child["cpu_s"]
