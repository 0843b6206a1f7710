"""Train tiny LLaVA captioners (CLIP vision tower + Llama LM) on the synthetic shapes dataset, on CPU.

The models are real ``LlavaForConditionalGeneration`` checkpoints with a word-level tokenizer over the
dataset's vocabulary and the LLaVA-1.5 chat template, saved with their processor, so the sweep's ``llava``
family loads and prompts them exactly like llava-hf checkpoints. Training is teacher forcing on
(prompt + caption + EOS) with the loss on the caption tokens only; one of the 5 references is drawn per
image per step.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.trainer import shapes
from zoo.trainer.loop import log_progress, optimizer_step, run_facts, zoo_card
from zoo.trainer.parts import TRAIN_PROMPT

REPO_ROOT = Path(__file__).resolve().parents[2]
ZOO_DIR = REPO_ROOT / "zoo"
PATCH_SIZE = 16  # 4x4 = 16 image tokens: the LM sequence, hence CPU training time, stays short
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")


@dataclass(frozen=True)
class ModelSize:
    name: str
    vision_hidden: int
    vision_layers: int
    vision_intermediate: int
    lm_hidden: int
    lm_layers: int
    lm_intermediate: int
    lm_heads: int
    head_dim: int
    steps: int
    lr: float
    batch_size: int = 32
    # LLaVA's recipe: start from an already trained vision tower (here the named size's) and train the
    # projector and the language model on top of it.
    vision_from: str | None = None


SIZES = {
    "small": ModelSize("small", vision_hidden=32, vision_layers=1, vision_intermediate=64, lm_hidden=64,
                       lm_layers=1, lm_intermediate=128, lm_heads=2, head_dim=32, steps=1500, lr=3e-3),
    # base = small's trained vision tower + a bigger LM. Trained from scratch, base stayed on the
    # colour-only loss plateau (~0.96) for 1600 steps (64-wide 2-layer tower, and with small's tower
    # shape too), while small breaks through by ~800: base starts from small's tower, as LLaVA starts
    # from a pretrained CLIP.
    "base": ModelSize("base", vision_hidden=32, vision_layers=1, vision_intermediate=64, lm_hidden=128,
                      lm_layers=2, lm_intermediate=256, lm_heads=2, head_dim=64, steps=1200, lr=2e-3,
                      batch_size=16, vision_from="small"),
}


def build_tokenizer():
    """A word-level tokenizer over the dataset's vocabulary with the LLaVA-1.5 chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from actors.families.llava import LLAVA_CHAT_TEMPLATE

    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *shapes.vocabulary()])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation; decode joins with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        add_bos_token=True,
        add_eos_token=False,
        padding_side="left",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )


def build_processor():
    from transformers import CLIPImageProcessor, LlavaProcessor

    from actors.families.llava import LLAVA_CHAT_TEMPLATE

    size = shapes.IMAGE_SIZE
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )


def build_model(size: ModelSize, tokenizer: Any, seed: int):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    vision_config = CLIPVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_intermediate,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=2,
        image_size=shapes.IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=size.vision_hidden,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.lm_hidden,
        intermediate_size=size.lm_intermediate,
        num_hidden_layers=size.lm_layers,
        num_attention_heads=size.lm_heads,
        num_key_value_heads=size.lm_heads,
        head_dim=size.head_dim,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        **ids,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_seq_length=(shapes.IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,  # the last layer: a 1-layer tower would otherwise see only embeddings
        **ids,
    )
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(config)


def prompt_ids(processor: Any, prompt: str = TRAIN_PROMPT) -> list[int]:
    """The token ids the ``llava`` family feeds for one image and ``prompt`` (image token expanded)."""
    from actors.families.llava import FAMILY

    text = FAMILY.format_prompt(processor, prompt, 1)
    img = shapes.render(shapes.make_split("val", n=1)[0])
    return processor(text=[text], images=[img], return_tensors="pt")["input_ids"][0].tolist()


def encode_captions(tokenizer: Any, scenes: list[shapes.Scene]) -> list[list[list[int]]]:
    eos = tokenizer.eos_token_id
    out = []
    for s in scenes:
        out.append([tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in s.captions])
    return out


def make_batch(prefix: list[int], captions: list[list[int]], pad_id: int):
    import torch

    width = len(prefix) + max(len(c) for c in captions)
    ids = torch.full((len(captions), width), pad_id, dtype=torch.long)
    labels = torch.full((len(captions), width), -100, dtype=torch.long)
    mask = torch.zeros((len(captions), width), dtype=torch.long)
    for i, cap in enumerate(captions):
        row = prefix + cap
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(prefix) : len(row)] = torch.tensor(cap)
        mask[i, : len(row)] = 1
    return ids, labels, mask


def pixel_values(processor: Any, scenes: list[shapes.Scene]):
    import torch

    images = [shapes.render(s) for s in scenes]
    return torch.cat(
        [processor.image_processor(images[i : i + 256], return_tensors="pt")["pixel_values"]
         for i in range(0, len(images), 256)]
    )


def mean_loss(model: Any, prefix: list[int], pixels: Any, caps: list[list[list[int]]], pad_id: int) -> float:
    import torch

    losses = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(caps), 50):
            batch = [c[0] for c in caps[start : start + 50]]
            ids, labels, mask = make_batch(prefix, batch, pad_id)
            out = model(input_ids=ids, pixel_values=pixels[start : start + 50], attention_mask=mask,
                        labels=labels)
            losses.append(float(out.loss))
    model.train()
    return sum(losses) / len(losses)


def trained_vision_tower(model_dir: Path) -> dict:
    """The vision tower weights of a trained zoo model (float32), to start another size from."""
    import torch
    from transformers import LlavaForConditionalGeneration

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no trained model to start the vision tower from")
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    return {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}


def train_one(size: ModelSize, out_dir: Path, seed: int = shapes.DEFAULT_SEED, n_train: int | None = None,
              steps: int | None = None, log_every: int = 100) -> dict:
    """Train one size and save it (model + processor + ZOO_MODEL.json) into ``out_dir``.

    A size with ``vision_from`` starts from that size's trained vision tower, read from its folder beside
    ``out_dir``."""
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    rng = random.Random(seed)
    steps = steps or size.steps
    start = time.perf_counter()
    processor = build_processor()
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id
    scenes = shapes.make_split("train", seed, n_train)
    val_scenes = shapes.make_split("val", seed)
    prefix = prompt_ids(processor)
    caps, val_caps = encode_captions(tokenizer, scenes), encode_captions(tokenizer, val_scenes)
    pixels, val_pixels = pixel_values(processor, scenes), pixel_values(processor, val_scenes)
    model = build_model(size, tokenizer, seed)
    if size.vision_from:
        source = Path(out_dir).parent / f"shapes-llava-{size.vision_from}"
        model.model.vision_tower.load_state_dict(trained_vision_tower(source))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=size.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    order: list[int] = []
    model.train()
    recent: list[float] = []
    for step in range(steps):
        if len(order) < size.batch_size:
            order += rng.sample(range(len(scenes)), len(scenes))
        idx, order = order[: size.batch_size], order[size.batch_size :]
        ids, labels, mask = make_batch(prefix, [rng.choice(caps[i]) for i in idx], pad_id)
        loss = model(input_ids=ids, pixel_values=pixels[idx], attention_mask=mask, labels=labels).loss
        recent = (recent + [optimizer_step(loss, model, opt, sched)])[-50:]
        log_progress(size.name, step, steps, recent, start, log_every)
    train_seconds = time.perf_counter() - start
    val_loss = mean_loss(model, prefix, val_pixels, val_caps, pad_id)

    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad_id, do_sample=False, num_beams=1, max_new_tokens=32,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out_dir)  # fp16 on disk halves the size; loads at any dtype
    processor.save_pretrained(out_dir)
    vision_from = f"shapes-llava-{size.vision_from}" if size.vision_from else None
    meta = zoo_card(f"shapes-llava-{size.name}",
                    {"architecture": "LlavaForConditionalGeneration (CLIP vision tower + Llama LM)",
                     "parameters": n_params, "size": asdict(size), "vision_tower_from": vision_from},
                    run_facts(seed, len(scenes), len(val_scenes), steps, size.batch_size, size.lr, recent,
                              val_loss, train_seconds),
                    "python -m zoo.trainer train")
    (out_dir / "ZOO_MODEL.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def train_all(out: Path = ZOO_DIR, seed: int = shapes.DEFAULT_SEED, sizes: tuple[str, ...] = tuple(SIZES),
              steps: int | None = None, threads: int = 1) -> list[dict]:
    import torch

    # One thread: on a few shared cores, intra-op threads fight each other (measured 4x slower with 2).
    torch.set_num_threads(threads)
    metas = []
    total = time.perf_counter()
    for name in sizes:
        meta = train_one(SIZES[name], Path(out) / f"shapes-llava-{name}", seed=seed, steps=steps)
        print(f"{meta['name']}: {meta['parameters']} params, {meta['steps']} steps, "
              f"train loss {meta['final_train_loss']}, val loss {meta['val_loss']}, "
              f"{meta['train_seconds']} s", flush=True)
        metas.append(meta)
    print(f"trained {len(metas)} models in {time.perf_counter() - total:.0f} s", flush=True)
    return metas
