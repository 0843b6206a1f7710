"""One training loop for every family of the zoo: teacher forcing through the family's own inference path.

A batch is built exactly as the sweep builds it at inference (``family.build_inputs``: the family's prompt
rule, chat template, image tokens and processor), then the caption tokens + EOS are appended to the
decoder's input (decoder-only families) or given as the decoder's labels (encoder-decoder families), with
the loss on the caption tokens only. So a zoo model is prompted in the sweep as it was trained, and a
family whose prompt path breaks loses its captions (``tests/test_zoo_families.py``).
One of the 5 references is drawn per image per step; everything is seeded.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo.trainer import shapes
from zoo.trainer.parts import TRAIN_PROMPT, Recipe, ZooSpec


def caption_ids(tokenizer: Any, scenes: list[shapes.Scene], eos: int) -> list[list[list[int]]]:
    """Each scene's 5 references as token ids + EOS (no BOS: they continue the prompt)."""
    return [[tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in s.captions] for s in scenes]


def pad_rows(rows: list[list[int]], fill: int) -> Any:
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=torch.long)


def training_batch(recipe: Recipe, processor: Any, images: list[Any], captions: list[list[int]]) -> dict:
    """The family's inference inputs for ``images`` + the captions as targets (see the module docstring)."""
    import torch

    from actors.registry import get_family

    family = get_family(recipe.family)
    inputs = dict(family.build_inputs(processor, [TRAIN_PROMPT] * len(images), [[im] for im in images]))
    inputs.pop("labels", None)  # PaliGemma's processor returns prompt "labels"; ours follow
    if recipe.encoder_decoder:
        inputs["labels"] = pad_rows(captions, -100)
        return inputs
    pad = processor.tokenizer.pad_token_id
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    cap_ids, cap_mask = pad_rows(captions, pad), (pad_rows(captions, -100) != -100).long()
    n = ids.shape[1]
    for key, value in list(inputs.items()):  # per-token side inputs (mm_token_type_ids, token_type_ids)
        if key not in ("input_ids", "attention_mask") and torch.is_tensor(value) and value.shape == ids.shape:
            fill = recipe.suffix_fills.get(key, 0)
            inputs[key] = torch.cat([value, torch.full_like(cap_ids, fill)], dim=1)
    inputs["input_ids"] = torch.cat([ids, cap_ids], dim=1)
    inputs["attention_mask"] = torch.cat([mask, cap_mask], dim=1)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, n:] = torch.where(cap_mask.bool(), cap_ids, -100)
    inputs["labels"] = labels
    return inputs


def cosine_with_warmup(steps: int):
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return lr_at


def mean_loss(model: Any, recipe: Recipe, processor: Any, images: list[Any],
              caps: list[list[list[int]]]) -> float:
    import torch

    losses = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), 50):
            batch = training_batch(recipe, processor, images[start : start + 50],
                                   [c[0] for c in caps[start : start + 50]])
            losses.append(float(model(**batch).loss))
    model.train()
    return sum(losses) / len(losses)


def train_spec(spec: ZooSpec, out_dir: Path, seed: int = shapes.DEFAULT_SEED, steps: int | None = None,
               n_train: int | None = None, log_every: int = 100) -> dict:
    """Train one zoo model and save it (model + processor + ZOO_MODEL.json) into ``out_dir``."""
    import torch

    recipe = spec.recipe
    torch.manual_seed(seed)
    rng = random.Random(seed)
    steps = steps or spec.steps
    start = time.perf_counter()
    model, processor = recipe.build(spec.size, seed)
    if spec.vision_from:
        tower = model.get_submodule(recipe.vision_tower)
        tower.load_state_dict(trained_vision_tower(type(model), Path(out_dir).parent / spec.vision_from,
                                                   recipe.vision_tower))
    eos = recipe.eos_id(processor.tokenizer)
    scenes, val_scenes = shapes.make_split("train", seed, n_train), shapes.make_split("val", seed)
    images, val_images = [shapes.render(s) for s in scenes], [shapes.render(s) for s in val_scenes]
    caps = caption_ids(processor.tokenizer, scenes, eos)
    val_caps = caption_ids(processor.tokenizer, val_scenes, eos)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(steps))
    order: list[int] = []
    recent: list[float] = []
    model.train()
    for step in range(steps):
        if len(order) < spec.batch_size:
            order += rng.sample(range(len(scenes)), len(scenes))
        idx, order = order[: spec.batch_size], order[spec.batch_size :]
        targets = [rng.choice(caps[i]) for i in idx]
        batch = training_batch(recipe, processor, [images[i] for i in idx], targets)
        recent = (recent + [optimizer_step(model(**batch).loss, model, opt, sched)])[-50:]
        log_progress(spec.name, step, steps, recent, start, log_every)
    train_seconds = time.perf_counter() - start
    val_loss = mean_loss(model, recipe, processor, val_images, val_caps)
    model.eval()
    model.generation_config = recipe.generation_config(processor.tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out_dir)  # fp16 on disk halves the size; loads at any dtype
    processor.save_pretrained(out_dir)
    meta = zoo_card(spec.name, {"family": recipe.family, "architecture": recipe.architecture,
                                "parameters": n_params, "size": asdict(spec.size),
                                "vision_tower_from": spec.vision_from},
                    run_facts(seed, len(scenes), len(val_scenes), steps, spec.batch_size, spec.lr, recent,
                              val_loss, train_seconds),
                    f"python -m zoo.trainer train-zoo {spec.name}")
    (out_dir / "ZOO_MODEL.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def trained_vision_tower(model_class: type, model_dir: Path, module: str) -> dict:
    """The vision tower weights (float32) of a trained zoo model, to start another one from."""
    import torch

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no trained model to start the vision tower from")
    source = model_class.from_pretrained(model_dir, dtype=torch.float32)
    return {k: v.clone() for k, v in source.get_submodule(module).state_dict().items()}


def optimizer_step(loss: Any, model: Any, opt: Any, sched: Any) -> float:
    """One AdamW step on `loss`, gradients clipped at norm 1 (every zoo model trains this way)."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.item()


def log_progress(name: str, step: int, steps: int, recent: list[float], start: float, log_every: int) -> None:
    if log_every and (step + 1) % log_every == 0:
        print(f"  {name} step {step + 1}/{steps} loss {sum(recent) / len(recent):.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


def run_facts(seed: int, n_train: int, n_val: int, steps: int, batch_size: int, lr: float,
              recent: list[float], val_loss: float, train_seconds: float) -> dict:
    """What a training run was: its data, its schedule, where its losses ended."""
    return {"dataset": {"generator": "zoo.trainer.shapes", "seed": seed, "n_train": n_train, "n_val": n_val,
                        "image_size": shapes.IMAGE_SIZE},
            "steps": steps, "batch_size": batch_size, "lr": lr,
            "final_train_loss": round(sum(recent) / len(recent), 4), "val_loss": round(val_loss, 4),
            "train_seconds": round(train_seconds, 1)}


def zoo_card(name: str, model: dict, run: dict, reproduce: str) -> dict:
    """A zoo model's ZOO_MODEL.json: marked toy, the model's facts, the run's, the library versions."""
    import torch
    import transformers

    return {"name": name, "toy": True,
            "description": "toy model trained on synthetic data (zoo.trainer.shapes: coloured shapes on "
                           "plain backgrounds); its captions mean nothing outside that dataset",
            **model, "prompt": TRAIN_PROMPT, **run,
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "torch": torch.__version__, "transformers": transformers.__version__, "reproduce": reproduce}
