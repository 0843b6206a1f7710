"""Every registered family, through the real adapter path: detect → load → prompt → batched generate."""

import json
from pathlib import Path

import pytest
from PIL import Image

from actors.backends import make_captioner
from actors.contract import CaptionRequest
from actors.families.base import panorama
from actors.registry import UnknownFamilyError, detect_family, get_family, known_families
from actors.resolve import resolve_model

# Remote-code families cannot run offline: tests/test_remote_families.py covers their prompts.
NATIVE = [name for name in known_families() if not get_family(name).requires_remote_code]
GREEDY = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False, "num_beams": 1}


@pytest.fixture(scope="module")
def images(coco_mini: Path) -> list[Image.Image]:
    paths = sorted((coco_mini / "val2017").glob("*.jpg"))[:3]
    # landscape, portrait, square: dynamic-resolution families get prompts of different lengths (left padding)
    sizes = [(96, 64), (48, 96), (80, 80)]
    return [Image.open(p).convert("RGB").resize(size) for p, size in zip(paths, sizes, strict=True)]


@pytest.mark.parametrize("name", NATIVE)
def test_family_detected_from_config_json(name):
    path, weights = resolve_model(f"tiny:{name}")
    assert weights == "random"
    config = json.loads((Path(path) / "config.json").read_text())
    assert detect_family(config).name == name


@pytest.mark.parametrize("name", NATIVE)
def test_batched_captions_match_one_by_one(name, images):
    captioner = make_captioner(f"tiny:{name}", None, None, False, "fp32", "hf")
    assert captioner.report.family == name and captioner.report.weights == "random"
    batch = captioner.generate([CaptionRequest(str(i), [img], "Describe the image.")
                                for i, img in enumerate(images)], GREEDY)
    single = [captioner.generate([CaptionRequest("x", [img], "Describe the image.")], GREEDY)[0]
              for img in images]
    assert [r.caption for r in batch] == [r.caption for r in single]
    assert all(r.generated_tokens == 4 for r in batch)
    # several images per prompt: natively or as one panorama, never an error
    multi = captioner.generate([CaptionRequest("m", images[:2], "Describe the images.")], GREEDY)
    assert multi[0].generated_tokens == 4


def test_unknown_family_lists_known_ones():
    with pytest.raises(UnknownFamilyError) as info:
        detect_family({"model_type": "mystery_vlm", "architectures": ["MysteryForCausalLM"]})
    assert "mystery_vlm" in str(info.value) and "llava" in str(info.value) and "qwen2_vl" in str(info.value)
    with pytest.raises(UnknownFamilyError):
        get_family("nope")


def test_detection_falls_back_to_architectures_and_override_wins():
    config = {"model_type": "custom", "architectures": ["LlavaForConditionalGeneration"]}
    assert detect_family(config).name == "llava"
    captioner = make_captioner("tiny:llava_next", "llava_next", None, False, "fp32", "hf")
    assert captioner.report.family == "llava_next"


@pytest.mark.parametrize(
    ("precision", "vision", "language"),
    # "float": the side left unquantized, in float_dtype_name's dtype (float32 on CPU, bf16/fp16 on CUDA)
    [("int8", "float", "int8"), ("int8-vision", "int8", "float"), ("nf4", "float", "nf4"),
     ("fp16", "float16", "float16")],
)
def test_per_module_precision(precision, vision, language):
    import torch

    from actors.precision import float_dtype_name

    unquantized = float_dtype_name(precision, torch.cuda.is_available())
    captioner = make_captioner("tiny:llava", None, None, False, precision, "hf")
    formats = captioner.report.module_precisions
    assert formats["vision"].split("+")[0] == (unquantized if vision == "float" else vision)
    assert formats["language"].split("+")[0] == (unquantized if language == "float" else language)
    sizes = captioner.report.module_weight_bytes
    assert sizes["vision"] > 0 and sizes["language"] > 0


def test_int8_shrinks_only_the_quantized_side():
    import torch

    from actors.precision import float_dtype_name

    fp32 = make_captioner("tiny:llava", None, None, False, "fp32", "hf").report.module_weight_bytes
    int8 = make_captioner("tiny:llava", None, None, False, "int8", "hf").report.module_weight_bytes
    assert int8["language"] < 0.6 * fp32["language"]
    # the vision side is not quantized: as big as an unquantized load in its dtype (fp32 on CPU, bf16/fp16
    # on CUDA)
    same = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[
        float_dtype_name("int8", torch.cuda.is_available())]
    unquantized = fp32 if same == "fp32" else make_captioner(
        "tiny:llava", None, None, False, same, "hf").report.module_weight_bytes
    assert int8["vision"] == unquantized["vision"]


def test_task_token_and_plain_prompts():
    florence = get_family("florence2")
    assert florence.format_prompt(None, "Describe this image.", 1) == "<CAPTION>"
    assert florence.format_prompt(None, "<DETAILED_CAPTION>", 1) == "<DETAILED_CAPTION>"
    assert get_family("paligemma").format_prompt(None, "Describe it.", 1) == "<image>caption en"
    assert get_family("blip2").format_prompt(None, "what is shown?", 1) == "Question: what is shown? Answer:"


def test_panorama_keeps_height_and_concatenates_width():
    imgs = [Image.new("RGB", (40, 20)), Image.new("RGB", (10, 10))]
    strip = panorama(imgs)
    assert strip.size == (20 + 10, 10)  # both brought to the smaller height, side by side
    assert get_family("instructblip").arrange_images(imgs) != imgs
    assert get_family("qwen2_vl").arrange_images(imgs) == imgs


def _bnb_linear_counts(model, family) -> dict[str, int]:
    from actors.families.base import module_matches

    counts = {"vision": 0, "language": 0}
    for name, module in model.named_modules():
        if type(module).__name__ != "Linear8bitLt":
            continue
        side = "vision" if any(module_matches(name, f) for f in family.vision_modules) else "language"
        counts[side] += 1
    return counts


@pytest.mark.parametrize("name", ["llava", "qwen2_vl", "blip2"])
def test_int8_and_int8_vision_quantize_opposite_sides(name):
    int8 = make_captioner(f"tiny:{name}", None, None, False, "int8", "hf")
    counts = _bnb_linear_counts(int8.model, int8.family)
    assert counts["language"] > 0 and counts["vision"] == 0, counts
    vision = make_captioner(f"tiny:{name}", None, None, False, "int8-vision", "hf")
    counts = _bnb_linear_counts(vision.model, vision.family)
    assert counts["vision"] > 0 and counts["language"] == 0, counts


class RecordingProcessor:
    """Stand-in processor: records what a family hands it."""

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, add_generation_prompt=True):
        return "|".join(part["type"] for part in messages[0]["content"])

    def __call__(self, text, images, **kwargs):
        self.calls.append((text, images))
        return {}


def test_multi_image_family_gets_every_frame_and_single_image_family_one_strip():
    frames = [Image.new("RGB", (32, 24), c) for c in ("red", "green", "blue")]
    native = RecordingProcessor()
    get_family("qwen2_vl").build_inputs(native, ["Describe."], [frames])
    text, images = native.calls[0]
    assert text == ["image|image|image|text"] and len(images[0]) == 3
    single = RecordingProcessor()
    get_family("instructblip").build_inputs(single, ["Describe."], [frames])
    text, images = single.calls[0]
    assert len(images) == 1 and images[0].size == (3 * 32, 24)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8", "int8-vision", "nf4"])
@pytest.mark.parametrize("name", NATIVE)
def test_every_precision_loads_and_generates(name, precision, images):
    captioner = make_captioner(f"tiny:{name}", None, None, False, precision, "hf")
    results = captioner.generate([CaptionRequest("0", [images[0]], "Describe the image.")],
                                 {**GREEDY, "max_new_tokens": 2, "min_new_tokens": 2})
    assert results[0].generated_tokens == 2
    formats = captioner.report.module_precisions
    # tiny models are mostly embeddings (kept in float), so check presence rather than majority
    if precision in ("int8", "nf4"):
        assert precision in formats["language"].split("+") and precision not in formats["vision"], formats
    if precision == "int8-vision":
        assert "int8" in formats["vision"].split("+") and "int8" not in formats["language"], formats
