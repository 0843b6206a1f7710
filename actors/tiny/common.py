"""Shared helpers for the tiny random-weight model builders.

Everything here works offline: the tokenizer is a byte-level BPE trained in memory on a small built-in
corpus of caption-like sentences, so no file is ever fetched from the hub.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# Small built-in corpus of caption-like English sentences (the tokenizer is trained on it).
CAPTION_CORPUS: tuple[str, ...] = (
    "A man riding a bicycle down a busy city street.",
    "A woman holding an umbrella in the rain.",
    "Two children playing with a red ball in the park.",
    "A dog running across a green field.",
    "A cat sleeping on a wooden chair.",
    "A plate of pasta with tomato sauce and basil.",
    "A group of people standing at a bus stop.",
    "A soccer player kicking the ball toward the goal.",
    "A yellow taxi waiting at a traffic light.",
    "A bowl of fresh fruit on a kitchen table.",
    "A young girl eating an ice cream cone.",
    "A horse grazing next to a white fence.",
    "A man in a suit talking on his phone.",
    "A pizza with cheese and mushrooms on a tray.",
    "Cars parked along a narrow street at night.",
    "A tennis player serving the ball on a clay court.",
    "A brown bear walking through tall grass.",
    "A woman jogging along the beach at sunset.",
    "A birthday cake with candles on a table.",
    "Two men playing basketball on an outdoor court.",
    "A flock of birds flying over the ocean.",
    "A skateboarder doing a trick on a ramp.",
    "A chef cooking vegetables in a large pan.",
    "A bus driving past tall buildings downtown.",
    "A small boat floating on a calm lake.",
    "A baseball player swinging a bat at a pitch.",
    "A sandwich and a cup of coffee on a plate.",
    "An elephant standing near a river.",
    "People walking on a crowded sidewalk in the city.",
    "A surfer riding a large wave in the sea.",
    "A giraffe eating leaves from a tall tree.",
    "A kitchen with white cabinets and a stove.",
    "A train stopped at a station platform.",
    "A man skiing down a snowy mountain slope.",
    "A bowl of soup with bread on the side.",
    "Two dogs playing with a frisbee on the grass.",
    "A woman reading a book on a park bench.",
    "A motorcycle parked in front of a shop.",
    "A boy flying a kite on a windy day.",
    "A plate of salad with chicken and cheese.",
    "A group of friends sitting around a table eating dinner.",
    "A zebra standing in a dry field.",
    "A runner crossing the finish line of a race.",
    "A street market with fruit and vegetable stands.",
    "A black and white cat looking out of a window.",
    "An airplane flying in a clear blue sky.",
    "A family having a picnic under a tree.",
    "A volleyball game on a sandy beach.",
    "A red fire truck driving down the road.",
    "A close up of a donut with pink frosting.",
    "Describe the image. What is in the picture? Caption this photo.",
)

BASE_SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<pad>")


def seed_everything(seed: int) -> None:
    """Seed every RNG that model construction may touch."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy is always installed with torch
        pass


def train_bpe_tokenizer(
    vocab_size: int = 384,
    special_tokens: Iterable[str] = BASE_SPECIAL_TOKENS,
    corpus: Iterable[str] = CAPTION_CORPUS,
) -> Tokenizer:
    """Train a small byte-level BPE tokenizer in memory (deterministic for a fixed corpus)."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return tok


def make_tokenizer(
    *,
    bos_token: str | None = "<s>",
    eos_token: str = "</s>",
    pad_token: str = "<pad>",
    unk_token: str | None = "<unk>",
    add_bos_token: bool = True,
    add_eos_token: bool = False,
    extra_special_tokens: Mapping[str, str] | list[str] | None = None,
    base_special_tokens: Iterable[str] = BASE_SPECIAL_TOKENS,
    vocab_size: int = 384,
    chat_template: str | None = None,
    padding_side: str = "left",
    **kwargs: Any,
):
    """Wrap a freshly trained BPE tokenizer in a ``PreTrainedTokenizerFast`` with special tokens.

    ``extra_special_tokens`` may be a dict of *named* model-specific tokens (e.g.
    ``{"image_token": "<image>"}``, which then exist as ``tokenizer.image_token`` and
    ``tokenizer.image_token_id``) or a plain list.
    """
    from transformers import PreTrainedTokenizerFast

    base = list(base_special_tokens)
    for t in (bos_token, eos_token, pad_token, unk_token):
        if t is not None and t not in base:
            base.append(t)
    backend = train_bpe_tokenizer(vocab_size=vocab_size, special_tokens=base)
    tok_kwargs: dict[str, Any] = dict(
        tokenizer_object=backend,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=unk_token,
        add_bos_token=add_bos_token,
        add_eos_token=add_eos_token,
        padding_side=padding_side,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    if extra_special_tokens:
        tok_kwargs["extra_special_tokens"] = (
            dict(extra_special_tokens)
            if isinstance(extra_special_tokens, Mapping)
            else list(extra_special_tokens)
        )
    if chat_template is not None:
        tok_kwargs["chat_template"] = chat_template
    tok_kwargs.update(kwargs)
    return PreTrainedTokenizerFast(**tok_kwargs)


def wordpiece_vocab(corpus: Iterable[str] = CAPTION_CORPUS) -> dict[str, int]:
    """A small lower-cased WordPiece vocab (BERT special tokens + corpus words + characters).

    Pass it as ``BertTokenizer(vocab=...)``: in transformers 5.x a ``vocab_file`` argument is ignored.
    """
    import string

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for line in corpus for w in re.findall(r"[a-z]+", line.lower())})
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    for t in chars + words + ["##" + c for c in string.ascii_lowercase + string.digits]:
        if t not in tokens:
            tokens.append(t)
    return {t: i for i, t in enumerate(tokens)}


def special_ids(tokenizer) -> dict[str, int | None]:
    """bos/eos/pad ids of a tokenizer, for configs and generation configs."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def greedy_generation_config(
    tokenizer, *, decoder_start_token_id: int | None = None, max_new_tokens: int = 20
):
    """A generation config with sampling off and the tokenizer's special ids."""
    from transformers import GenerationConfig

    kwargs: dict[str, Any] = dict(
        special_ids(tokenizer), do_sample=False, num_beams=1, max_new_tokens=max_new_tokens
    )
    if decoder_start_token_id is not None:
        kwargs["decoder_start_token_id"] = decoder_start_token_id
    return GenerationConfig(**kwargs)


def _is_embedding(name: str) -> bool:
    return "embed" in name


def spread_weights(
    model, seed: int, std: float = 0.1, keep: Callable[[str], bool] = _is_embedding
) -> None:
    """Re-draw every weight matrix but those named by ``keep`` (embeddings) from N(0, std), from ``seed``.

    At the default init (std 0.02) a 2-layer random model's greedy tokens hardly depend on the image (the
    residual stream is dominated by the token embeddings), so several families produced the same caption for
    every image. With std 0.1 the outputs differ per image, which makes batched-vs-unbatched checks
    meaningful.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # tied weights appear once, under the embedding's name
            if param.dim() >= 2 and not keep(name):
                param.copy_(
                    torch.randn(param.shape, generator=gen, dtype=torch.float32).to(param.dtype) * std
                )


def finish(
    model_class,
    config,
    processor,
    out_dir: Path,
    seed: int,
    generation_config=None,
    keep: Callable[[str], bool] = _is_embedding,
) -> None:
    """The ending of every builder: seed, construct ``model_class(config)``, spread its weights, save.

    Saves model, processor and ``generation_config`` (default: greedy with the tokenizer's special ids) with
    ``save_pretrained`` into ``out_dir``.
    """
    seed_everything(seed)
    model = model_class(config)
    spread_weights(model, seed, keep=keep)
    if generation_config is None:
        generation_config = greedy_generation_config(processor.tokenizer)
    model.generation_config = generation_config
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


# --- chat templates (tiny re-implementations of the real models' templates) -----------------------------
# LLaVA-1.5's, which the zoo's trained models use too, is a family fact: actors.families.llava.

# ChatML with vision markers (Qwen2-VL / Qwen2.5-VL style)
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Mistral-instruct style, as in llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\n<prompt> [/INST]"
LLAVA_NEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ item['text'] }}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ ' [/INST]' }}{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)

# ChatML as in OpenGVLab/InternVL3-*-hf: an image renders as "<IMG_CONTEXT>\n" (the processor expands it).
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# DeepSeek-VL chat style ("User: <image_placeholder>...\n\nAssistant:"), BOS added by the tokenizer.
DEEPSEEK_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] if message['content'] is string "
    "else message['content'][0]['text'] }}{{ '\\n\\n' }}"
    "{% else %}"
    "{{ 'User: ' if message['role'] == 'user' else 'Assistant: ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image_placeholder>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '\\n\\n' if message['role'] == 'user' else eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
