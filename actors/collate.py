"""Per-sample processor outputs (built in the decode tasks: `actors.prepare`) padded back into one batch on
the host, as the processor pads a batch. Pure tensor work: imports nothing of the project."""

from __future__ import annotations

from typing import Any


def collate(samples: list[dict[str, Any]], pad_token_id: int | None, padding_side: str = "left") -> Any:
    """One batch of per-sample processor outputs, as the processor would have built it for the batch:
    the tensors aligned with `input_ids` padded to the longest (`input_ids` with the pad id, the others,
    attention mask included, with 0) on `padding_side`, every other tensor concatenated along its first
    dimension (pixel values, image grids: per image, in sample order)."""
    import torch
    from transformers import BatchFeature

    if not samples:
        raise ValueError("collate needs at least one sample")
    longest = max(int(s["input_ids"].shape[-1]) for s in samples)
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if not all(torch.is_tensor(v) for v in values):
            raise TypeError(f"prepared input {key!r} is not a tensor in every sample")
        if all(v.shape == s["input_ids"].shape for v, s in zip(values, samples, strict=True)):
            fill = pad_token_id if key == "input_ids" else 0
            if fill is None:
                raise ValueError("the tokenizer has no pad token id: cannot pad prepared inputs")
            out[key] = torch.cat([pad(v, longest, fill, padding_side) for v in values])
        else:
            out[key] = torch.cat(values)
    return BatchFeature(out)


def pad(row: Any, length: int, fill: int, side: str) -> Any:
    """A (1, n) tensor padded with `fill` to (1, length) on `side`."""
    import torch

    extra = length - int(row.shape[-1])
    if extra <= 0:
        return row
    filler = torch.full((*row.shape[:-1], extra), fill, dtype=row.dtype)
    return torch.cat([filler, row] if side == "left" else [row, filler], dim=-1)
