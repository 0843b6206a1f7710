"""The zoo's models beyond LLaVA: family recipe, size and training budget of each shipped folder.

Sizes and budgets differ on purpose, so the sweep's Pareto front has something to separate: small models
trained long (cheap and good), larger ones trained briefly (costlier and worse). ``train_seconds`` in each
ZOO_MODEL.json is what one run took on the project's shared 2-core machine.
"""

from __future__ import annotations

import time
from pathlib import Path

from zoo.trainer import shapes
from zoo.trainer.families import RECIPES
from zoo.trainer.parts import Size, ZooSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
ZOO_DIR = REPO_ROOT / "zoo"

SMALL = Size(vision_hidden=32, vision_layers=1, lm_hidden=64, lm_layers=1, lm_heads=2)
# Qwen2.5-VL's tower interleaves windowed and full-attention blocks: two, so both kinds are trained.
SMALL_2V = Size(vision_hidden=32, vision_layers=2, lm_hidden=64, lm_layers=1, lm_heads=2)
BASE = Size(vision_hidden=32, vision_layers=1, lm_hidden=128, lm_layers=2, lm_heads=2)

ZOO: dict[str, ZooSpec] = {
    spec.name: spec
    for spec in (
        ZooSpec("shapes-llava-small", RECIPES["llava"], SMALL, steps=1500, lr=3e-3),
        # base from scratch stayed on the colour-only loss plateau (~0.96) for 1600 steps, where small breaks
        # through by ~800: it starts from small's trained tower (train small first)
        ZooSpec("shapes-llava-base", RECIPES["llava"], BASE, steps=1200, lr=2e-3, batch_size=16,
                vision_from="shapes-llava-small"),
        ZooSpec("shapes-git-small", RECIPES["git"], SMALL, steps=1500, lr=3e-3),
        ZooSpec("shapes-qwen2vl-small", RECIPES["qwen2_vl"], SMALL, steps=1500, lr=3e-3, batch_size=16),
        ZooSpec("shapes-qwen25vl-small", RECIPES["qwen2_5_vl"], SMALL_2V, steps=2400, lr=3e-3, batch_size=16),
        ZooSpec("shapes-blip2-small", RECIPES["blip2"], SMALL, steps=1000, lr=3e-3, batch_size=16),
        # PaliGemma at base size stayed on the colour-only plateau (train loss 0.95 after 800 steps; LLaVA's
        # base did too from scratch), reading its image too little to tell it from a blank one
        ZooSpec("shapes-paligemma-small", RECIPES["paligemma"], SMALL, steps=1500, lr=3e-3, batch_size=16),
        ZooSpec("shapes-florence2-small", RECIPES["florence2"], SMALL, steps=400, lr=2e-3, batch_size=16),
        # larger, a shorter budget: the "larger and worse" corner
        ZooSpec("shapes-smolvlm-base", RECIPES["smolvlm"], BASE, steps=400, lr=2e-3, batch_size=16),
    )
}


def train_zoo(names: list[str], out: Path = ZOO_DIR, seed: int = shapes.DEFAULT_SEED,
              steps: int | None = None, threads: int = 1) -> list[dict]:
    """Train the named zoo models one after the other into ``out/<name>``."""
    import torch

    from zoo.trainer.loop import train_spec

    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise KeyError(f"unknown zoo models {unknown}; known: {sorted(ZOO)}")
    # One thread: on a few shared cores, intra-op threads fight each other (measured 4x slower with 2).
    torch.set_num_threads(threads)
    metas = []
    total = time.perf_counter()
    for name in names:
        meta = train_spec(ZOO[name], Path(out) / name, seed=seed, steps=steps)
        print(f"{name}: {meta['parameters']} params, {meta['steps']} steps, train loss "
              f"{meta['final_train_loss']}, val loss {meta['val_loss']}, {meta['train_seconds']} s",
              flush=True)
        metas.append(meta)
    print(f"trained {len(metas)} models in {time.perf_counter() - total:.0f} s", flush=True)
    return metas
