"""A deterministic synthetic captioning dataset: 1-3 coloured shapes on a plain background.

Every image carries 5 reference captions written from 5 different templates with random synonyms, so
the references say the same thing in different words, like COCO's. Splits are drawn from their own seeded
generators and written in the COCO captions format (``captions.json`` + ``images/``), which
``sweep.data.sources.load_coco_samples`` reads like any COCO folder.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

IMAGE_SIZE = 64
N_REFERENCES = 5
DEFAULT_SEED = 0
SPLIT_SIZES = {"train": 3000, "val": 100, "test": 50}
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}  # each split has its own generator
SPLIT_ID_BASE = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000}

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 210, 30),
    "purple": (150, 50, 190),
}
BACKGROUNDS = {"white": (250, 250, 250), "black": (15, 15, 15), "gray": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 5, "large": 9}  # radius in pixels at IMAGE_SIZE 64
# Canonical order of positions: captions always list objects in this order.
POSITIONS = {"left": (13, 32), "top": (32, 12), "center": (32, 32), "bottom": (32, 52), "right": (51, 32)}

SHAPE_WORDS = {
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangle", "wedge"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
POSITION_WORDS = {
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "at the top edge"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom edge"),
    "center": ("in the center", "in the middle", "at the center"),
}
BACKGROUND_WORDS = {"white": ("white",), "black": ("black", "dark"), "gray": ("gray", "grey")}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}

# Words of the prompts the zoo models are asked with (the grid's default prompt among them).
PROMPT_WORDS = ("USER", "ASSISTANT", ":", "Describe", "this", "image", "in", "one", "sentence", ".",
                "Caption", "What", "is", "the", "?", "picture", "photo", "a")


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    image_id: int
    background: str
    objects: tuple[Obj, ...]
    jitter: tuple[tuple[int, int], ...]
    captions: tuple[str, ...]

    @property
    def file_name(self) -> str:
        return f"{self.image_id}.png"


def _phrase(rng: random.Random, o: Obj, with_size: bool = True, with_position: bool = True) -> str:
    words = ["a"]
    if with_size:
        words.append(rng.choice(SIZE_WORDS[o.size]))
    words += [o.colour, rng.choice(SHAPE_WORDS[o.shape])]
    if with_position:
        words.append(rng.choice(POSITION_WORDS[o.position]))
    return " ".join(words)


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return " , ".join(phrases[:-1]) + " and " + phrases[-1]


def captions_for(rng: random.Random, background: str, objects: tuple[Obj, ...]) -> tuple[str, ...]:
    """Five captions, one per template (so they always differ), synonyms drawn from ``rng``."""
    n = len(objects)
    bg = rng.choice(BACKGROUND_WORDS[background])
    full = _join([_phrase(rng, o) for o in objects])
    no_size = _join([_phrase(rng, o, with_size=False) for o in objects])
    full2 = _join([_phrase(rng, o) for o in objects])
    no_pos = _join([_phrase(rng, o, with_position=False) for o in objects])
    full3 = _join([_phrase(rng, o) for o in objects])
    noun = "shape" if n == 1 else "shapes"
    return (
        full,
        f"{no_size} on a {bg} background",
        f"{COUNT_WORDS[n]} {noun} : {full2}",
        f"{no_pos} on a {rng.choice(BACKGROUND_WORDS[background])} background",
        f"an image showing {full3}",
    )


def make_scene(rng: random.Random, image_id: int) -> Scene:
    n = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
    chosen = set(rng.sample(list(POSITIONS), n))
    positions = [p for p in POSITIONS if p in chosen]  # canonical order
    objects = tuple(
        Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), p) for p in positions
    )
    background = rng.choice(list(BACKGROUNDS))
    jitter = tuple((rng.randint(-1, 1), rng.randint(-1, 1)) for _ in objects)
    return Scene(image_id, background, objects, jitter, captions_for(rng, background, objects))


def render(scene: Scene) -> Image.Image:
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for o, (dx, dy) in zip(scene.objects, scene.jitter, strict=True):
        cx, cy = POSITIONS[o.position]
        cx, cy, r = cx + dx, cy + dy, SIZES[o.size]
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif o.shape == "square":
            s = round(r * 0.85)
            draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r - 1), (cx + r, cy + r - 1)], fill=fill)
    return img


def make_split(split: str, seed: int = DEFAULT_SEED, n: int | None = None) -> list[Scene]:
    """The scenes of one split; the same (split, seed, n) always gives the same scenes."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SIZES)}")
    rng = random.Random(seed * 1000 + SPLIT_OFFSETS[split])
    count = SPLIT_SIZES[split] if n is None else n
    return [make_scene(rng, SPLIT_ID_BASE[split] + i) for i in range(count)]


def vocabulary() -> list[str]:
    """Every word any caption or zoo prompt can contain, sorted (the zoo tokenizer's vocabulary)."""
    words: set[str] = set(PROMPT_WORDS)
    for table in (SHAPE_WORDS, SIZE_WORDS, POSITION_WORDS, BACKGROUND_WORDS):
        for synonyms in table.values():
            for s in synonyms:
                words.update(s.split())
    words.update(COLOURS)
    words.update(COUNT_WORDS.values())
    words.update(("a", "an", "and", ",", ":", "on", "background", "shape", "shapes", "image", "showing"))
    return sorted(words)


def coco_json(scenes: list[Scene], description: str) -> dict:
    images = [{"id": s.image_id, "file_name": s.file_name, "width": IMAGE_SIZE, "height": IMAGE_SIZE}
              for s in scenes]
    annotations = []
    for s in scenes:
        for c in s.captions:
            annotations.append({"id": len(annotations) + 1, "image_id": s.image_id, "caption": c})
    return {"info": {"description": description}, "images": images, "annotations": annotations}


def split_folder_name(split: str, n: int | None = None) -> str:
    """``test`` for a split at its own size, ``test-200`` for 200 images of it (the first 200 scenes of the
    split's generator: a larger split holds the smaller one)."""
    return split if n is None or n == SPLIT_SIZES[split] else f"{split}-{n}"


def write_split(out: Path, split: str, seed: int = DEFAULT_SEED, n: int | None = None) -> Path:
    """Write ``out/<name>/captions.json`` and ``out/<name>/images/*.png`` (name: ``split_folder_name``);
    returns the split folder."""
    scenes = make_split(split, seed, n)
    folder = Path(out) / split_folder_name(split, n)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for s in scenes:
        render(s).save(folder / "images" / s.file_name, optimize=True)
    desc = f"zoo.trainer.shapes synthetic captions, split={split}, seed={seed}, {len(scenes)} images"
    (folder / "captions.json").write_text(json.dumps(coco_json(scenes, desc), indent=1) + "\n")
    return folder


def write_dataset(out: Path, seed: int = DEFAULT_SEED, splits: tuple[str, ...] = tuple(SPLIT_SIZES),
                  sizes: dict[str, int] | None = None) -> list[Path]:
    return [write_split(out, s, seed, (sizes or {}).get(s)) for s in splits]
