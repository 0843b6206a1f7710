"""Everything the benchmarks take from the model side (`actors.*`), and the only module that imports it:
when the model side's names move, this file is the one edit.

Imported: `actors.contract` (`ModelRef`, `LoadSpec`, `GenerationSettings`, `CaptionRequest`),
`actors.backends.load_captioner` and `resolve_family`, `actors.model_host.effective_generation`,
`actors.resolve.resolve_model`;
used of a captioner: `generate(requests, kwargs)`, `.family.generation_defaults`, `.report`.
"""

from __future__ import annotations

from typing import Any


def model_path(model_id: str) -> str:
    """Where the model's files are (`tiny:<family>` is built on first use)."""
    from actors.resolve import resolve_model

    return resolve_model(model_id)[0]


def load_captioner(model_id: str, precision: str, weights_mode: str = "real") -> Any:
    """What a model host loads for this model and precision on the HF backend, in this process."""
    from actors.backends import load_captioner as load
    from actors.contract import LoadSpec, ModelRef

    return load(LoadSpec(ModelRef(model_id, weights=weights_mode), precision, backend="hf"))


def exact_length_generation(prompt: str, max_new_tokens: int) -> dict[str, Any]:
    """Greedy, exactly max_new_tokens new tokens (min = max), no family defaults: every variant generates
    the same work."""
    from actors.contract import GenerationSettings

    settings = GenerationSettings(prompt, max_new_tokens, num_beams=1, min_new_tokens=max_new_tokens)
    return settings.generate_kwargs()


def cell_generation(captioner: Any, prompt: str, max_new_tokens: int) -> dict[str, Any]:
    """What a host generates with for a greedy cell of this budget: the family's defaults under it."""
    from actors.contract import GenerationSettings
    from actors.model_host import effective_generation

    settings = GenerationSettings(prompt, max_new_tokens, num_beams=1)
    return effective_generation(captioner.family.generation_defaults, settings.generate_kwargs())


def caption(captioner: Any, items: list[tuple[str, Any]], prompt: str, kwargs: dict[str, Any]
            ) -> list[tuple[str, int]]:
    """One batch of (sample id, PIL image) → (caption, generated tokens) per item, in order."""
    from actors.contract import CaptionRequest

    requests = [CaptionRequest(sample_id, [image], prompt) for sample_id, image in items]
    return [(r.caption, r.generated_tokens) for r in captioner.generate(requests, kwargs)]


def generate_padding(captioner: Any, images: list[Any], prompt: str, kwargs: dict[str, Any], grouped: bool
                     ) -> tuple[list[str], int]:
    """One HF call over these images (one request each): grouped by prompt length
    (`actors.generation.generate_grouped`, the family's slack) or as one padded batch (`generate_batch`);
    (captions in request order, pad tokens in the attention masks of its generate() calls)."""
    from actors.generation import generate_batch, generate_grouped

    family, model, processor = captioner.family, captioner.model, captioner.processor
    prompts, per_request = [prompt] * len(images), [[image] for image in images]
    if grouped:
        out = generate_grouped(family, model, processor, prompts, per_request, kwargs, captioner.device,
                               slack=family.length_group_slack)
    else:
        out = generate_batch(family, model, processor, prompts, per_request, kwargs, captioner.device)
    return [r.caption for r in out.results], out.padding_tokens


def prompt_tokens(model_id: str, prompt: str) -> int:
    """The prompt's length in tokens as the model's tokenizer reads it after its family's template (one
    image placeholder); the processor only, no weights."""
    from actors.backends import resolve_family
    from actors.resolve import resolve_model

    path = resolve_model(model_id)[0]
    family = resolve_family(path, None, None)
    processor = family.load_processor(path, {"revision": None, "trust_remote_code": False})
    tokenizer = getattr(processor, "tokenizer", processor)
    return len(tokenizer(family.format_prompt(processor, prompt, 1))["input_ids"])
