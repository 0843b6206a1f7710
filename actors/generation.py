"""The generate() path shared by every family whose processor takes (text, images) batches, and token-budget
sharing: the smaller max_new_tokens of a cell cut from one greedy generation, timed by its decode steps."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from actors.contract import CaptionResult
from actors.length_groups import DEFAULT_SLACK, in_request_order, length_groups

Measured = Literal["decode_step_times", "own_generation"]


@dataclass
class BudgetCut:
    """What a generation capped at one smaller budget t gives, for the requests of one call."""

    results: list[CaptionResult]
    latency_sec: float  # from the start of the call until every sequence had stopped or reached t tokens
    measured: Measured


@dataclass
class Generation:
    """One call's captions at its max_new_tokens, its wall time, and the budgets cut from it."""

    results: list[CaptionResult]
    latency_sec: float
    budgets: dict[int, BudgetCut] = field(default_factory=dict)
    # Pad positions in the attention masks of the generate() calls (prompt padding; 0 when not counted)
    padding_tokens: int = 0

    def merge(self, other: Generation) -> Generation:
        """Two halves of a batch (the OOM retry, or two length groups) generated one after the other:
        captions in order, times summed (a budget's second half would start once its first half had
        stopped)."""
        return Generation(
            self.results + other.results, self.latency_sec + other.latency_sec,
            {t: merge_cuts(cut, other.budgets[t]) for t, cut in self.budgets.items() if t in other.budgets},
            self.padding_tokens + other.padding_tokens,
        )

    def reordered(self, groups: list[list[int]]) -> Generation:
        """This generation of the groups' requests (concatenated in group order) in request order."""
        cuts = {t: BudgetCut(in_request_order(groups, cut.results), cut.latency_sec, cut.measured)
                for t, cut in self.budgets.items()}
        return Generation(in_request_order(groups, self.results), self.latency_sec, cuts, self.padding_tokens)


# The processor's seconds (chat template, resize, patching, tokenization) of the generate calls made in
# this thread inside `preprocess_clock`, apart from generate(): a model host reads them per batch.
_clock = threading.local()


@contextmanager
def preprocess_clock() -> Iterator[list[float]]:
    """Yields a one-item list: the seconds `build_inputs` took in this thread inside the block, NaN when no
    processor call went through it (vLLM runs its own processing; families with their own generate code)."""
    total = [math.nan]
    outer = getattr(_clock, "total", None)
    _clock.total = total
    try:
        yield total
    finally:
        _clock.total = outer


def build_inputs_timed(family: Any, processor: Any, prompts: list[str],
                       images: list[list[Image.Image]]) -> Any:
    """`family.build_inputs`, its seconds added to the active `preprocess_clock`."""
    start = time.perf_counter()
    inputs = family.build_inputs(processor, prompts, images)
    total = getattr(_clock, "total", None)
    if total is not None:
        total[0] = (0.0 if math.isnan(total[0]) else total[0]) + time.perf_counter() - start
    return inputs


def merge_cuts(first: BudgetCut, second: BudgetCut) -> BudgetCut:
    return BudgetCut(first.results + second.results, first.latency_sec + second.latency_sec, first.measured)


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


def sharing_blocker(generation_config: Any, generate_kwargs: dict, budgets: tuple[int, ...]) -> str:
    """Why a generation with these settings does not hold, as its first t tokens, what a generation capped
    at each budget t produces; "" when it does (greedy, one beam, nothing that depends on the cap).

    A setting counts as the generate() call sees it: the cell's kwargs over the model's generation_config."""

    def setting(name: str) -> Any:
        return generate_kwargs[name] if name in generate_kwargs else getattr(generation_config, name, None)

    if setting("do_sample"):
        return "sampling (do_sample)"
    if (setting("num_beams") or 1) > 1:
        return f"beam search (num_beams={setting('num_beams')})"
    if (setting("num_beam_groups") or 1) > 1:
        return f"group beam search (num_beam_groups={setting('num_beam_groups')})"
    if setting("penalty_alpha"):
        return "contrastive search (penalty_alpha)"
    if (setting("num_return_sequences") or 1) > 1:
        return "several sequences per prompt (num_return_sequences)"
    if setting("forced_eos_token_id") is not None:
        return "forced_eos_token_id (EOS is forced at the cap's last token)"
    if setting("cache_implementation") not in (None, "dynamic"):
        return f"a {setting('cache_implementation')} cache (sized by the cap)"
    if setting("max_time"):
        return "max_time (a time cap)"
    min_length = generate_kwargs.get("min_length")
    if min_length and budgets and min_length > min(budgets):
        return "min_length above the smallest budget (clamped per budget)"
    return ""


def step_clock() -> Any:
    """A stopping criterion that never stops anything and records `time.perf_counter()` each time
    generate() has appended a token to every row (call k: k tokens generated). On CUDA it synchronizes
    first, so stamp k is when step k's token was on the device; generate()'s own stop check reads the
    device right after the criteria every step (`unfinished_sequences.max() == 0`), so that wait costs
    nothing extra."""
    import torch
    from transformers import StoppingCriteria

    class StepClock(StoppingCriteria):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if input_ids.is_cuda:
                torch.cuda.synchronize(input_ids.device)
            self.stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StepClock()


def decode(tokenizer: Any, out: Any, eos_ids: set[int]) -> list[CaptionResult]:
    captions = tokenizer.batch_decode(out, skip_special_tokens=True)
    counts = count_generated(out, eos_ids)
    return [CaptionResult(c.strip(), n) for c, n in zip(captions, counts, strict=True)]


def cut_budget(tokenizer: Any, out: Any, eos_ids: set[int], t: int, stamps: list[float],
               start: float) -> BudgetCut:
    """What a generation capped at t gives: the first t columns of every row, and the time of the step at
    which its last running row stopped (EOS) or reached t. A capped generation ends at step k = the
    longest row's count up to t, so its output is exactly the first k columns (rows that had ended are
    padded after their EOS, as here). The latency ends at that step: decoding the captions (well under a
    millisecond) is not in it, so latencies never decrease with t and never pass the whole generation's."""
    k = max(count_generated(out[:, :t], eos_ids), default=0)
    step_end = stamps[min(k, len(stamps)) - 1] if k and stamps else start
    return BudgetCut(decode(tokenizer, out[:, :k], eos_ids), step_end - start, "decode_step_times")


def generate_batch(
    family: Any, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
    generate_kwargs: dict, device: Any, budgets: tuple[int, ...] = (), inputs: Any = None,
) -> Generation:
    """One batched generate() at the kwargs' max_new_tokens. Each budget t of `budgets` (greedy, one beam:
    the caller checks `sharing_blocker`) is cut from it, timed by the decode step it ended at. `inputs`:
    the processor's output for these prompts when the caller already built it (its time is then not in
    the latency: the host counts it in its own overhead)."""
    import torch
    from transformers import StoppingCriteriaList

    start = time.perf_counter()
    tokenizer = getattr(processor, "tokenizer", processor)
    eos_ids, pad_id = eos_and_pad(model, tokenizer)
    if inputs is None:
        inputs = build_inputs_timed(family, processor, prompts, images)
    padding = pad_count(inputs)
    inputs = cast_floats(inputs.to(device), model)
    clock = step_clock() if budgets else None
    extra = {"stopping_criteria": StoppingCriteriaList([clock])} if clock is not None else {}
    with torch.inference_mode():
        out = model.generate(**inputs, **generate_kwargs, pad_token_id=pad_id, **extra)
    # decoder-only output repeats the prompt; encoder-decoder output starts with the decoder start token
    prompt_len = 1 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    out = out[:, prompt_len:]
    results = decode(tokenizer, out, eos_ids)
    latency = time.perf_counter() - start
    cuts = {t: cut_budget(tokenizer, out, eos_ids, t, clock.stamps, start) for t in budgets} if clock else {}
    return Generation(results, latency, cuts, padding)


def pad_count(inputs: Any) -> int:
    """Pad positions of a processor output: zeros of its attention mask (0 without a mask)."""
    mask = inputs.get("attention_mask") if hasattr(inputs, "get") else None
    return int((mask == 0).sum()) if mask is not None else 0


def prompt_lengths(inputs: Any) -> list[int] | None:
    """Each prompt's length in tokens, image tokens included (its attention mask's ones); None without a
    mask (the processor does not pad, or says nothing about it)."""
    mask = inputs.get("attention_mask") if hasattr(inputs, "get") else None
    if mask is None or mask.dim() != 2:
        return None
    return [int(n) for n in mask.sum(dim=1).tolist()]


def generate_grouped(
    family: Any, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
    generate_kwargs: dict, device: Any, budgets: tuple[int, ...] = (), slack: float | None = DEFAULT_SLACK,
    prepared: list[dict[str, Any]] | None = None,
) -> Generation:
    """`generate_batch` over the requests grouped by prompt length (`actors.length_groups`): one
    generate() per group, one after the other, results in request order; latencies and budget cuts summed
    as for the OOM retry's halves, so a batch's latency stays the wall time of the generate() calls it was
    in. One group (similar lengths, or `slack` None): exactly one `generate_batch` on the inputs already
    built. The lengths come from one processor call on the whole batch; a split builds each group's inputs
    again (the processor runs twice for those images, only when splitting saves padding). `prepared`: the
    requests' processor outputs built elsewhere, one per request (`generate_prepared`)."""
    if prepared is not None:  # built in the decode tasks (`actors.prepare`): padded here, per group
        return generate_prepared(model, processor, prepared, generate_kwargs, device, budgets, slack)
    inputs = build_inputs_timed(family, processor, prompts, images)
    lengths = prompt_lengths(inputs) if slack is not None else None
    groups = length_groups(lengths, len(prompts), slack) if lengths else [list(range(len(prompts)))]
    if len(groups) == 1:
        return generate_batch(family, model, processor, prompts, images, generate_kwargs, device, budgets,
                              inputs=inputs)
    parts = [generate_batch(family, model, processor, [prompts[i] for i in g], [images[i] for i in g],
                            generate_kwargs, device, budgets) for g in groups]
    return merged_groups(parts, groups)


def merged_groups(parts: list[Generation], groups: list[list[int]]) -> Generation:
    """The groups' generations, one after the other, as one generation in request order."""
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    return merged.reordered(groups)


def generate_prepared(model: Any, processor: Any, prepared: list[dict[str, Any]], generate_kwargs: dict,
                      device: Any, budgets: tuple[int, ...] = (), slack: float | None = DEFAULT_SLACK
                      ) -> Generation:
    """`generate_grouped` over requests whose processor ran elsewhere (`actors.prepare`, one output per
    request, unpadded): the lengths are theirs, and each group is padded as the processor pads a batch
    (`actors.collate`), so the inputs, and the captions, are those of the host-side path."""
    from actors.collate import collate

    tokenizer = getattr(processor, "tokenizer", processor)
    side = getattr(tokenizer, "padding_side", "left")

    def inputs_of(group: list[int]) -> Any:
        return collate([prepared[i] for i in group], tokenizer.pad_token_id, side)

    everyone = list(range(len(prepared)))
    groups = [everyone]
    if slack is not None and all("attention_mask" in p for p in prepared):  # as `prompt_lengths` reads them
        groups = length_groups([int(p["attention_mask"].sum()) for p in prepared], len(prepared), slack)
    if len(groups) == 1:  # one batch in request order, as the host-side path generates it
        return generate_batch(None, model, processor, [], [], generate_kwargs, device, budgets,
                              inputs=inputs_of(everyone))
    parts = [generate_batch(None, model, processor, [], [], generate_kwargs, device, budgets,
                            inputs=inputs_of(g)) for g in groups]
    return merged_groups(parts, groups)
