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
