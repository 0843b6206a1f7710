"""What a batch's generation does when it fails: on CUDA out of memory it is retried at half the batch
size; on an input the processor rejects, image by image, so that only the rejected images are lost."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TypeVar

from actors.captioner import Captioner
from actors.contract import CaptionRequest, CaptionResult
from actors.generation import Generation

Chunked = TypeVar("Chunked")


class CellOutOfMemory(RuntimeError):
    """Raised as `oom: ...` so the cell's failure reason reads `oom`."""


def with_oom_retry(call: Callable[[list[CaptionRequest]], Chunked], requests: list[CaptionRequest],
                   merge: Callable[[Chunked, Chunked], Chunked]) -> Chunked:
    """CUDA out of memory: retry once at half the batch size (two halves, `merge`d), then give up with
    `oom`."""
    import torch

    try:
        return call(requests)
    except torch.cuda.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if len(requests) == 1:
        raise CellOutOfMemory("oom: CUDA out of memory at batch size 1")
    half = (len(requests) + 1) // 2
    try:
        return merge(call(requests[:half]), call(requests[half:]))
    except torch.cuda.OutOfMemoryError as err:
        raise CellOutOfMemory(f"oom: CUDA out of memory at batch size {len(requests)} and {half}") from err


# What a processor or model raises on an input it rejects (Qwen2-VL: "absolute aspect ratio must be smaller
# than 200", a ValueError). CUDA out of memory is a RuntimeError: never one of these.
INPUT_ERRORS = (ValueError, TypeError, LookupError)


def input_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def generate_per_image(call: Callable[[list[CaptionRequest]], Generation],
                       requests: list[CaptionRequest]) -> tuple[Generation, dict[int, str]]:
    """The requests' generation (OOM retry included) and {position: error} of the requests that raise an
    input error: a batch that raises one is retried image by image, so only the images that raise alone
    are lost (their error, the processor's message), and the others are captioned."""
    try:
        return with_oom_retry(call, requests, Generation.merge), {}
    except INPUT_ERRORS as err:
        if len(requests) == 1:
            return Generation([], 0.0), {0: input_error(err)}
    generation: Generation | None = None
    failed: dict[int, str] = {}
    for j, request in enumerate(requests):
        try:
            one = with_oom_retry(call, [request], Generation.merge)
        except INPUT_ERRORS as err:
            failed[j] = input_error(err)
            continue
        generation = one if generation is None else generation.merge(one)
    return generation or Generation([], 0.0), failed


def generate_with_oom_retry(captioner: Captioner, requests: list[CaptionRequest],
                            kwargs: dict) -> list[CaptionResult]:
    return with_oom_retry(lambda chunk: captioner.generate(chunk, kwargs), requests, operator.add)
