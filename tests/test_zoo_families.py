"""The zoo across families: the generic trainer's batches are the family's inference inputs plus the caption,
every shipped model is a small real checkpoint of its family, and each family's prompt path keeps its
trained quality (a template or image-token regression makes the CIDEr drop, and fails here).

Measured (``zoo_quality.measure``, beside this file: the first 24 images of ``zoo/shapes-data/test-200``,
fp32, greedy, 32 tokens; CIDEr-D with document frequencies from the split's 1,000 references; the paired
gains over the errors are in docs/zoo-families.md):

| model | trained [95% bootstrap] | image blanked | template broken (which error) |
|---|---|---|---|
| shapes-llava-base | 2.42 [2.16, 2.65] | 0.28 | 1.46 (no generation prompt) |
| shapes-llava-small | 1.85 [1.51, 2.16] | 0.23 | 1.03 (no generation prompt) |
| shapes-smolvlm-base | 1.58 [1.27, 1.90] | 0.32 | 1.15 (no generation prompt) |
| shapes-qwen25vl-small | 1.30 [1.06, 1.54] | 0.66 | 0.95 (no generation prompt) |
| shapes-git-small | 0.98 [0.76, 1.21] | 0.56 | 0.35 (grid prompt as text) |
| shapes-qwen2vl-small | 0.95 [0.73, 1.20] | 0.25 | 0.69 (no generation prompt) |
| shapes-blip2-small | 0.94 [0.66, 1.22] | 0.53 | 0.50 (no "Question: ... Answer:") |
| shapes-florence2-small | 0.58 [0.40, 0.76] | 0.58 | 0.58 (<OCR>, not <CAPTION>) |
| shapes-paligemma-small | 0.58 [0.43, 0.70] | 0.24 | 0.21 (grid prompt, not "caption en") |

Every model but Florence-2 depends on its image and on its template (docs/zoo-families.md says how the
four that did not were fixed, and why Florence-2 still does not).
"""

import json

import pytest
import zoo_quality

from zoo.trainer import shapes
from zoo.trainer.catalog import ZOO, ZOO_DIR
from zoo.trainer.families import RECIPES
from zoo.trainer.loop import caption_ids, training_batch
from zoo.trainer.parts import TRAIN_PROMPT, Size

N_IMAGES = 24
FAMILY_OF = {name: spec.recipe.family for name, spec in ZOO.items()}
# Per model: the CIDEr it must reach on the first N_IMAGES test images, about 80% of what it measured (the
# table above). Every model must also beat both errors: the lower bound of its trained CIDEr's 95% bootstrap
# interval above the error run's mean, and the error costing at least MIN_GAIN of it, so losing the image or
# breaking the template fails here.
ERRORS = ("blank_image", "broken_template")
MIN_GAIN = 0.15  # each error costs at least this share of the trained CIDEr
FLOOR: dict[str, float] = {
    "shapes-llava-small": 1.5,
    "shapes-llava-base": 1.9,
    "shapes-git-small": 0.78,
    "shapes-smolvlm-base": 1.25,
    "shapes-blip2-small": 0.75,
    "shapes-paligemma-small": 0.46,
    "shapes-qwen2vl-small": 0.76,
    "shapes-qwen25vl-small": 1.04,
    "shapes-florence2-small": 0.46,
}


@pytest.mark.parametrize("family", sorted(RECIPES))
def test_training_batch_is_the_inference_prompt_plus_the_caption(family):
    from actors.registry import get_family

    recipe = RECIPES[family]
    _, processor = recipe.build(Size(), 0)
    scenes = shapes.make_split("val", 0, 3)
    images = [shapes.render(s) for s in scenes]
    caps = [c[0] for c in caption_ids(processor.tokenizer, scenes, recipe.eos_id(processor.tokenizer))]
    batch = training_batch(recipe, processor, images, caps)
    prompt = get_family(family).build_inputs(processor, [TRAIN_PROMPT] * 3, [[im] for im in images])
    labels = batch["labels"]
    for i, cap in enumerate(caps):
        assert [t for t in labels[i].tolist() if t != -100] == cap  # the loss sees the caption + EOS only
        assert cap[-1] == recipe.eos_id(processor.tokenizer)
    if recipe.encoder_decoder:  # the encoder reads the prompt as at inference; the caption is the decoder's
        assert batch["input_ids"].tolist() == prompt["input_ids"].tolist()
        return
    n = prompt["input_ids"].shape[1]
    assert batch["input_ids"][:, :n].tolist() == prompt["input_ids"].tolist()
    assert (labels[:, :n] == -100).all()
    for key, fill in recipe.suffix_fills.items():  # PaliGemma: the caption is the causal suffix
        assert batch[key][:, :n].tolist() == prompt[key].tolist()
        assert set(batch[key][:, n:].flatten().tolist()) == {fill}


def test_trainer_is_reproducible_from_its_seed(tmp_path):
    from zoo.trainer.loop import train_spec

    spec = ZOO["shapes-git-small"]
    a = train_spec(spec, tmp_path / "a", seed=3, steps=4, n_train=16, log_every=0)
    b = train_spec(spec, tmp_path / "b", seed=3, steps=4, n_train=16, log_every=0)
    assert a["final_train_loss"] == b["final_train_loss"] and a["val_loss"] == b["val_loss"]
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("a", "b")]
    assert weights[0] == weights[1]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_shipped_model_is_a_small_checkpoint_of_its_family(name):
    from actors.registry import detect_family

    folder = ZOO_DIR / name
    meta = json.loads((folder / "ZOO_MODEL.json").read_text())
    assert meta["toy"] is True and "synthetic" in meta["description"]
    assert meta["family"] == ZOO[name].recipe.family and meta["steps"] == ZOO[name].steps
    assert detect_family(json.loads((folder / "config.json").read_text())).name == meta["family"]
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert max(sizes.values()) < 2_000_000 and sum(sizes.values()) < 3_000_000


# Florence-2 still writes the same caption for every image and prompt (0.58 / 0.58 / 0.58): its validation
# loss is the same with the batch's images rotated (gap <= 0.002 from step 0 to 1,500), whatever was tried
# (learning rate, fan-in BART or cross-attention, frozen or slowed vision tower, base size; see
# docs/zoo-families.md), so the shipped model is the earlier one and its check is an expected failure until
# the family trains.
BLIND = pytest.mark.xfail(strict=True, reason="shapes-florence2-small ignores its image and prompt")


@pytest.mark.slow  # one model load and 3 x 24 captions per model
@pytest.mark.parametrize("name", [pytest.param(n, marks=BLIND) if n == "shapes-florence2-small" else n
                                  for n in sorted(ZOO)])
def test_family_prompt_path_keeps_the_trained_quality(name):
    scores = zoo_quality.measure(ZOO_DIR / name, FAMILY_OF[name], N_IMAGES)
    means = {k: zoo_quality.mean(v) for k, v in scores.items()}
    low, high = zoo_quality.trained_interval(scores["trained"])
    gains = {e: zoo_quality.paired_gain(scores["trained"], scores[e]) for e in ERRORS}
    print(name, {k: round(v, 3) for k, v in means.items()}, f"trained 95% [{low:.3f}, {high:.3f}]",
          {e: f"{g.estimate:.3f} [{g.low:.3f}, {g.high:.3f}]" for e, g in gains.items()})
    assert means["trained"] >= FLOOR[name]
    for error in ERRORS:
        assert low > means[error], f"{name}: {error} {means[error]:.3f} within the trained interval"
        assert means["trained"] - means[error] >= MIN_GAIN * means["trained"], f"{name}: {error}"
