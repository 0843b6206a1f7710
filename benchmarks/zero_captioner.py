"""A captioner that costs nothing: every request answered at once with a fixed caption (one token).

Plugged in as a user loader (`loader: benchmarks.zero_captioner:build`), so that a cell's measured speed is
the pipeline's own ceiling: decoding, Ray Data, the hops to the model host and back, the host's own work.
"""

from __future__ import annotations

from actors.captioner import Captioner
from actors.contract import CaptionRequest, CaptionResult, LoadReport


class ZeroCaptioner(Captioner):
    def __init__(self, precision: str):
        self.report = LoadReport(backend="custom", backend_reason="zero-cost captioner (benchmark)",
                                 family="custom", device="cpu", load_seconds=0.0, weight_bytes=0,
                                 weights="random")

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        return [CaptionResult("a photo", 1) for _ in requests]


def build(model_id: str, precision: str) -> Captioner:
    return ZeroCaptioner(precision)


class WindowedZeroCaptioner(ZeroCaptioner):
    """The zero-cost captioner as a self-batching engine (vLLM's host path): several batches per call,
    each request "timed" by the engine. Its caption names the sample and the requests of its call, so a
    test reads off the caption table what each call got and that rows come back in request order."""

    latency_kind = "request_e2e"
    batches_per_call = 4

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        n = len(requests)
        return [CaptionResult(f"{r.sample_id} of {n}", 1, 0.001, 0.002) for r in requests]


def build_windowed(model_id: str, precision: str) -> Captioner:
    return WindowedZeroCaptioner(precision)
