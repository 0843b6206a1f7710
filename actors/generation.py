"""The generate() path shared by every family whose processor takes (text, images) batches."""

from __future__ import annotations

from typing import Any

from PIL import Image

from actors.contract import CaptionResult


def count_generated(token_rows: Any, eos_ids: set[int]) -> list[int]:
    """Tokens each row generated, up to and including its first EOS. generate() pads a row only after
    its EOS, so a pad-valued token before any EOS is a real (if odd) token and counts."""
    counts = []
    for row in token_rows.tolist():
        ends = [i for i, tok in enumerate(row) if tok in eos_ids]
        counts.append(ends[0] + 1 if ends else len(row))
    return counts


def eos_and_pad(model: Any, tokenizer: Any) -> tuple[set[int], int | None]:
    gen_cfg = model.generation_config
    eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), None)
    return eos_ids, pad


def cast_floats(inputs: Any, model: Any) -> Any:
    """Pixel tensors follow the model's float dtype (fp16/bf16 cells); ids and masks stay integer."""
    import torch

    dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32)
    for key, value in inputs.items():
        if torch.is_tensor(value) and value.is_floating_point():
            inputs[key] = value.to(dtype)
    return inputs


def generate_batch(
    family: Any, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
    generate_kwargs: dict, device: Any,
) -> list[CaptionResult]:
    import torch

    tokenizer = getattr(processor, "tokenizer", processor)
    eos_ids, pad_id = eos_and_pad(model, tokenizer)
    inputs = cast_floats(family.build_inputs(processor, prompts, images).to(device), model)
    with torch.inference_mode():
        out = model.generate(**inputs, **generate_kwargs, pad_token_id=pad_id)
    # decoder-only output repeats the prompt; encoder-decoder output starts with the decoder start token
    prompt_len = 1 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    out = out[:, prompt_len:]
    captions = tokenizer.batch_decode(out, skip_special_tokens=True)
    counts = count_generated(out, eos_ids)
    return [CaptionResult(c.strip(), n) for c, n in zip(captions, counts, strict=True)]
