"""CPU seconds used on the machine while a command runs, grouped by what each process is (a Ray actor's class,
a Ray daemon, a JVM, the command itself): where a CPU-bound test suite's time goes (docs/testing.md).

    python benchmarks/suite_cpu.py --json cpu.json -- python -m pytest -q -n 2 --dist loadfile ...

Every process on the machine is read once a second (`psutil`); a process's CPU is what it used after it was
first seen (processes older than the command count from the start), grouped under its last Ray name
(`ray::ModelHost`, `ray::ImplicitFunc`, ...) or a daemon's name found in its command line. A process that
lives less than a second can be missed: the totals are a floor. Ray's daemons are not all the command's
children, so every process is read: run it on an otherwise quiet machine. Prints the groups, writes them as
JSON and exits with the command's exit code.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

DAEMONS = ("gcs_server", "raylet/raylet", "dashboard/agent", "dashboard/dashboard", "runtime_env",
           "log_monitor", "autoscaler", "java", "sweep.run", "benchmarks/run.py", "vllm")
IDLE = ("ray::IDLE", "default_worker")


def group_of(proc: psutil.Process) -> str:
    name = proc.name()
    if name.startswith("ray::"):
        return name.split(".")[0][:40]
    line = " ".join(proc.cmdline())[:400]
    fallback = "default_worker" if "default_worker" in line else name[:30]
    return next((d for d in DAEMONS if d in line), fallback)


class Sampler:
    def __init__(self) -> None:
        self.seen: dict[tuple[int, float], list] = {}  # (pid, start time) -> [group, cpu now, cpu at first]
        self.first = True

    def sample(self) -> None:
        for proc in psutil.process_iter():
            try:
                key = (proc.pid, proc.create_time())
                times = proc.cpu_times()
                cpu = times.user + times.system
                group = group_of(proc)
            except (psutil.Error, OSError):
                continue
            known = self.seen.get(key)
            if known is None:
                self.seen[key] = [group, cpu, cpu if self.first else 0.0]
                continue
            if group not in IDLE:  # a Ray worker is named once it takes a task or an actor
                known[0] = group
            known[1] = cpu
        self.first = False

    def totals(self) -> dict:
        cpu: collections.Counter = collections.Counter()
        count: collections.Counter = collections.Counter()
        for group, now, at_first in self.seen.values():
            if now - at_first > 0.01:
                cpu[group] += now - at_first
                count[group] += 1
        groups = [{"group": g, "cpu_s": round(c, 1), "processes": count[g]} for g, c in cpu.most_common()]
        return {"total_cpu_s": round(sum(cpu.values()), 1), "groups": groups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the groups here too")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    sampler = Sampler()
    sampler.sample()
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        sampler.sample()
        time.sleep(1.0)
    sampler.sample()
    result = {"command": command, "exit_code": proc.returncode,
              "wall_s": round(time.perf_counter() - start, 1), **sampler.totals()}
    for row in result["groups"][:25]:
        print(f"{row['cpu_s']:8.1f} CPU-s {row['processes']:4d} processes  {row['group']}")
    print(f"{result['total_cpu_s']:8.1f} CPU-s in all, {result['wall_s']} s of wall, exit {proc.returncode}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
