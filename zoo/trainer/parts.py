"""What every zoo recipe shares: the size knobs, the word-level tokenizer over the shapes vocabulary, the
training prompt, and the shape of a recipe (the per-family part of the trainer)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.trainer import shapes

TRAIN_PROMPT = "Describe this image in one sentence."
# Words the families' own prompt text adds around the grid prompt (Qwen's default system prompt, BLIP-2's
# "Question: ... Answer:", PaliGemma's "caption en", Florence-2's rewrite of <CAPTION>): in the vocabulary,
# so a prompt reads as words, not as <unk>s.
TEMPLATE_WORDS = ("system", "You", "are", "helpful", "assistant", "user", "User", "Assistant", "Question",
                  "Answer", "caption", "en", "does", "describe", "the", "What")


@dataclass(frozen=True)
class Size:
    """The knobs of a zoo model; each family maps them onto its own config."""

    vision_hidden: int = 32
    vision_layers: int = 1
    lm_hidden: int = 64
    lm_layers: int = 1
    lm_heads: int = 2

    @property
    def head_dim(self) -> int:
        return self.lm_hidden // self.lm_heads

    @property
    def lm_intermediate(self) -> int:
        return 2 * self.lm_hidden


@dataclass(frozen=True)
class Recipe:
    """The per-family part of the trainer: how to build an untrained model + its processor, and what the
    loop must know about the family's inputs."""

    family: str  # an actors.families name: the sweep loads and prompts the model through it
    architecture: str
    build: Callable[[Size, int], tuple[Any, Any]]
    encoder_decoder: bool = False
    # Per-token side inputs extended over the caption with this value (PaliGemma: 1 = the causal suffix).
    suffix_fills: Mapping[str, int] = field(default_factory=dict)
    # The stop tokens of generation beyond the tokenizer's EOS (Qwen stops on <|endoftext|> too).
    extra_eos: tuple[str, ...] = ()
    # Where the tokenizer keeps the sequence's start and stop ids (GIT's BERT tokenizer: [CLS] and [SEP]).
    bos_attr: str = "bos_token_id"
    eos_attr: str = "eos_token_id"
    # The vision tower's module path: what a ZooSpec's ``vision_from`` copies from another zoo model.
    vision_tower: str = "model.vision_tower"

    def eos_id(self, tokenizer: Any) -> int:
        return getattr(tokenizer, self.eos_attr)

    def generation_config(self, tokenizer: Any, max_new_tokens: int = 32) -> Any:
        from transformers import GenerationConfig

        eos = [self.eos_id(tokenizer), *(tokenizer.convert_tokens_to_ids(t) for t in self.extra_eos)]
        kwargs: dict[str, Any] = dict(bos_token_id=getattr(tokenizer, self.bos_attr),
                                      pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=eos if len(eos) > 1 else eos[0], do_sample=False,
                                      num_beams=1, max_new_tokens=max_new_tokens)
        if self.encoder_decoder:
            kwargs["decoder_start_token_id"] = tokenizer.eos_token_id
        return GenerationConfig(**kwargs)


@dataclass(frozen=True)
class ZooSpec:
    """One shipped zoo model: its recipe, size and training budget."""

    name: str
    recipe: Recipe
    size: Size
    steps: int
    lr: float
    batch_size: int = 32
    # LLaVA's recipe: start from the trained vision tower of this zoo model (same family and tower size, read
    # from its folder beside this one's), as LLaVA starts from a pretrained CLIP.
    vision_from: str | None = None


def word_tokenizer(specials: tuple[str, ...], named: Mapping[str, str] | None = None, *,
                   bos: str | None, eos: str, pad: str, unk: str, add_bos: bool,
                   chat_template: str | None = None):
    """A word-level tokenizer over the shapes vocabulary (+ the families' template words): one token per
    caption word keeps sequences, hence CPU training, short. ``specials`` become special tokens first."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(shapes.vocabulary()) | set(TEMPLATE_WORDS))
    vocab = {t: i for i, t in enumerate([*specials, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation; decode joins with spaces
    kwargs: dict[str, Any] = dict(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk,
        add_bos_token=add_bos, add_eos_token=False, padding_side="left", model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    if named:
        kwargs["extra_special_tokens"] = dict(named)
    if chat_template is not None:
        kwargs["chat_template"] = chat_template
    tokenizer = PreTrainedTokenizerFast(**kwargs)
    # Every special keeps its id and is split out before the word split (``<|im_start|>system``).
    added = [AddedToken(t, special=True, normalized=False) for t in specials]
    tokenizer.add_tokens(added, special_tokens=True)
    return tokenizer


def seeded(model_class: type, config: Any, seed: int) -> Any:
    """``model_class(config)`` at its own (HF default) initialisation, drawn from ``seed``."""
    import torch

    torch.manual_seed(seed)
    return model_class(config)


def ids(tokenizer: Any) -> dict[str, int | None]:
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
