"""Deterministic stand-in models for fault tests, loaded through the custom-loader path.

They run inside Ray actors, so they talk to the test through files under $VLM_SWEEP_FAULT_DIR:
calls.log gets one line per generate() call with the number of requests, loads.log one line per load.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from actors.captioner import Captioner
from actors.contract import CaptionRequest, CaptionResult, LoadReport


def _fault_dir() -> Path:
    path = Path(os.environ["VLM_SWEEP_FAULT_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


class ScriptedCaptioner(Captioner):
    def __init__(self, model_id: str, mode: str):
        self.model_id = model_id
        self.mode = mode
        with open(_fault_dir() / "loads.log", "a") as f:
            f.write(f"{model_id} {os.getpid()}\n")
        self.report = LoadReport(backend="custom", backend_reason="", family="custom", device="cpu",
                                 load_seconds=0.0, weight_bytes=1, weights="random")

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        fault_dir = _fault_dir()
        with open(fault_dir / "calls.log", "a") as f:
            f.write(f"{self.model_id} {len(requests)}\n")
        if self.mode == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.mode == "die-once":
            calls = (fault_dir / "calls.log").read_text().splitlines()
            marker = fault_dir / "died"
            if len(calls) == 3 and not marker.exists():
                marker.write_text("1")
                os._exit(1)  # the actor process dies mid-cell, once
        if self.mode == "fill-disk-once":  # at its second batch, the disk of $VLM_SWEEP_FAULT_FILL fills
            calls = (fault_dir / "calls.log").read_text().splitlines()
            marker = fault_dir / "filled"
            if len(calls) == 2 and not marker.exists():
                marker.write_text("1")
                ballast = Path(os.environ["VLM_SWEEP_FAULT_FILL"])
                # batches are in flight ahead of the writes: fill only once the first batch is on disk
                deadline = time.time() + 60
                written = "out/cells/*/parts/[!.]*.parquet"
                while not list(ballast.parent.glob(written)) and time.time() < deadline:
                    time.sleep(0.05)
                _fill(ballast)
        if self.mode == "named-die-reused":
            _die_once_in_a_reused_process(fault_dir, self.model_id)
        if self.mode.startswith("named"):  # the caption says which model answered
            return [CaptionResult(f"{self.model_id} saw {r.sample_id}", 3) for r in requests]
        if self.mode == "slow":
            time.sleep(float(os.environ.get("VLM_SWEEP_FAULT_SLEEP", "0.5")))
        if self.mode == "pixels":  # the caption is a function of the decoded image alone
            return [CaptionResult(_describe(r.images[0]), 6) for r in requests]
        words = max(1, generate_kwargs["max_new_tokens"] // 2)
        return [CaptionResult(" ".join(["a", "photo", "of", r.sample_id, "with", "things"][:words]), words)
                for r in requests]


def _die_once_in_a_reused_process(fault_dir: Path, model_id: str) -> None:
    """The process dies at its second generate() for a model that is not the first this process loaded (a
    host process kept from an earlier load), once: Ray restarts it with its first load's arguments and
    retries the batch. (At the second: the cell's first batch came from the process that began it.)"""
    pid = str(os.getpid())
    firsts = [line.split()[0] for line in (fault_dir / "loads.log").read_text().splitlines()
              if line.split()[1] == pid]
    calls = (fault_dir / "calls.log").read_text().splitlines()
    mine = [line for line in calls if line.split()[0] == model_id]
    marker = fault_dir / "died"
    if firsts and firsts[0] != model_id and len(mine) == 2 and not marker.exists():
        marker.write_text(f"{model_id} {pid}")
        os._exit(1)


def _describe(image) -> str:
    """A few words from the image's pixels: its dominant channel, brightness and orientation."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    means = pixels.reshape(-1, 3).mean(axis=0)
    colour = ("red", "green", "blue")[int(means.argmax())]
    light = "dark" if means.mean() < 100 else "bright" if means.mean() > 150 else "plain"
    shape = "wide" if image.width > image.height else "tall"
    return f"a {light} {colour} {shape} photo of a table with a cat"


def _fill(path: Path) -> None:
    """Write zeros to `path` until its file system has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def pixels(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "pixels")


def counting(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "count")


def named(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "named")


def named_die_reused(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "named-die-reused")


def slow(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "slow")


def oom(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "oom")


def die_once(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "die-once")


def fill_disk_once(model_id: str, precision: str) -> Captioner:
    return ScriptedCaptioner(model_id, "fill-disk-once")


def load_fails(model_id: str, precision: str) -> Captioner:
    """A model whose load raises every time (a missing weights file): one line in loads.log per attempt."""
    with open(_fault_dir() / "loads.log", "a") as f:
        f.write(f"{model_id} {os.getpid()} failed\n")
    raise FileNotFoundError(f"no weights file in {model_id}")
