"""A window: several consecutive batches captioned in one generate() call (a backend that schedules
requests itself, `Captioner.batches_per_call`), answered per batch as if each had run alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from actors.contract import BatchResult, SampleResult, on_first


def latency_kind(claimed: str, samples: list[SampleResult]) -> str:
    """`request_e2e` only when the engine timed every captioned request (vLLM's beam search does not):
    else the batch's wall time is what its latency is."""
    if claimed != "request_e2e":
        return claimed
    timed = all(s.request_e2e_sec == s.request_e2e_sec for s in samples if not s.error)
    return claimed if timed else "batch_wall"


def split_window(result: BatchResult, sizes: Sequence[int]) -> list[BatchResult]:
    """One result of consecutive batches (`sizes` samples each) as one result per batch, in order.

    Each batch keeps the window's start/end and host facts, its own samples and budget rows, and the
    window's energy on the first batch only (so sums stay right). Its latency: with `request_e2e` the
    longest end-to-end latency the engine measured for the batch's requests (when each batch was done),
    else the window's wall time, which every image of it waited. A batch with nothing captioned has 0."""
    if sum(sizes) != len(result.samples) or any(n < 0 for n in sizes):
        raise ValueError(f"window of {len(result.samples)} samples cannot be split into batches of {sizes}")
    out: list[BatchResult] = []
    start = 0
    energy, emissions = on_first(result.energy_kwh, len(sizes)), on_first(result.emissions_kg, len(sizes))
    preprocess = on_first(result.preprocess_sec, len(sizes))
    for k, n in enumerate(sizes):
        samples = result.samples[start:start + n]
        captioned = sum(1 for s in samples if not s.error)
        e2e = [s.request_e2e_sec for s in samples if not s.error and s.request_e2e_sec == s.request_e2e_sec]
        if not captioned:
            latency = 0.0
        elif result.latency_kind == "request_e2e" and len(e2e) == captioned:
            latency = max(e2e)
        else:
            latency = result.latency_sec
        rows = slice(start, start + n)
        budgets = {t: replace(b, captions=b.captions[rows], generated_tokens=b.generated_tokens[rows])
                   for t, b in result.budgets.items()}
        out.append(replace(result, samples=samples, captioned=captioned, latency_sec=latency,
                           budgets=budgets, energy_kwh=energy[k], emissions_kg=emissions[k],
                           preprocess_sec=preprocess[k]))
        start += n
    return out
