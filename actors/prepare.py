"""A family's processor run outside the model host: in the CPU decode tasks that already feed it, so the
host's device only generates (`actors.contract.Preprocessor`).

Each sample is processed alone (chat template, resize, patching, tokenization: the family's own
`build_inputs`), so a task's output does not depend on which samples share its piece; the host pads a batch
of them back into what the processor gives for the whole batch (`actors.collate`: token-aligned tensors
padded on the tokenizer's side with its pad id, the others concatenated), per length group and per OOM half
alike.
Nothing here imports the driver, Ray or MLflow."""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from actors.contract import PreparedInputs, Preprocessor, SampleBatch

# INPUT_ERRORS: what a processor raises on an input it rejects; that sample becomes an error row with the
# message, as on the host
from actors.generation_retry import INPUT_ERRORS, input_error


def images_of(batch: SampleBatch, i: int) -> list[Image.Image]:
    """The sample's frames (video scenes, JPEG bytes) or its one decoded image."""
    if batch.frames_jpeg is not None:
        return [Image.open(io.BytesIO(bytes(b))).convert("RGB") for b in batch.frames_jpeg[i]]
    if batch.pixels is None:
        raise ValueError(f"sample {batch.sample_ids[i]} has no pixels: its batch was prepared in a decode "
                         "task (SampleBatch.prepared), for a host that takes prepared inputs")
    return [Image.fromarray(np.asarray(batch.pixels[i], dtype=np.uint8))]


@lru_cache(maxsize=4)
def load_preprocessor(spec: Preprocessor) -> tuple[Any, Any]:
    """(family, processor) of the spec, loaded once per worker process: the processor's files only (the
    model's local folder, or its hub id where this node lacks that folder), never the weights."""
    from actors.registry import get_family

    family = get_family(spec.family)
    source = spec.path if os.path.isdir(spec.path) else spec.model_id
    processor = family.load_processor(source, {"revision": spec.revision,
                                               "trust_remote_code": spec.trust_remote_code})
    return family, processor


def prepare_batch(batch: SampleBatch, spec: Preprocessor, prompt: str) -> SampleBatch:
    """The batch with each decoded sample's model inputs built by the spec's processor (`prepared`) and
    its pixels dropped (the host needs only the tensors); a sample the processor rejects is an error row
    with the processor's message, decode errors pass through."""
    family, processor = load_preprocessor(spec)
    errors = list(batch.errors)
    tensors: list[dict[str, Any] | None] = []
    start = time.perf_counter()
    for i, error in enumerate(errors):
        if error:
            tensors.append(None)
            continue
        try:
            inputs = family.build_inputs(processor, [prompt], [images_of(batch, i)])
        except INPUT_ERRORS as err:
            errors[i] = input_error(err)
            tensors.append(None)
            continue
        tensors.append(dict(inputs.items()))
    seconds = time.perf_counter() - start
    return replace(batch, errors=errors, pixels=None if batch.frames_jpeg is None else batch.pixels,
                   prepared=PreparedInputs(tensors, seconds))
