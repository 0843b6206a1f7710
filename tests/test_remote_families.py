"""Remote-code families (Phi-3/3.5-vision, InternVL2 chat, MobileVLM, DeepSeek-VL v1) cannot run offline:
their prompts, preprocessing, generation glue, detection and load-time refusals are checked with stand-ins.
Also the Phi-4-multimodal prompt fallback and its vision-attention fix, on a tiny model."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import BatchFeature

from actors.registry import detect_family, get_family
from actors.tiny.common import make_tokenizer

REMOTE = ["phi3_v", "internvl_chat", "mobilevlm", "deepseek_vl_v1"]

# Phi-3(-vision) chat template, as the model's tokenizer renders it.
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def phi3_tokenizer():
    """A real PreTrainedTokenizerFast (trained in memory) with the Phi-3 specials and chat template."""
    return make_tokenizer(
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        base_special_tokens=("<unk>", "<s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"),
        chat_template=PHI3_TEMPLATE,
    )


def frames(n: int, size=(40, 30)) -> list[Image.Image]:
    colors = ["red", "green", "blue", "white"]
    return [Image.new("RGB", size, colors[i % 4]) for i in range(n)]


# --- registry ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "name"),
    [
        ({"model_type": "phi3_v", "architectures": ["Phi3VForCausalLM"]}, "phi3_v"),
        ({"model_type": "internvl_chat", "architectures": ["InternVLChatModel"]}, "internvl_chat"),
        ({"model_type": "mobilevlm", "architectures": ["MobileLlamaForCausalLM"]}, "mobilevlm"),
        ({"model_type": "multi_modality", "architectures": ["MultiModalityCausalLM"]}, "deepseek_vl_v1"),
        ({"model_type": "phi4_multimodal", "architectures": ["Phi4MultimodalForCausalLM"]}, "phi4_mm"),
        # architecture fallback, and the native ports keep their own families
        ({"model_type": "custom", "architectures": ["InternVLChatModel"]}, "internvl_chat"),
        ({"model_type": "custom", "architectures": ["Phi3VForCausalLM"]}, "phi3_v"),
        ({"model_type": "internvl", "architectures": ["InternVLForConditionalGeneration"]}, "internvl"),
        ({"model_type": "deepseek_vl", "architectures": ["DeepseekVLForConditionalGeneration"]},
         "deepseek_vl"),
    ],
)
def test_detection_from_config_dict(config, name):
    assert detect_family(config).name == name


def test_remote_code_flags():
    for name in REMOTE:
        family = get_family(name)
        assert family.requires_remote_code is True
        assert family.describe()["requires_remote_code"] is True
    assert get_family("phi4_mm").requires_remote_code is False
    assert {n: get_family(n).vllm_supported for n in REMOTE} == {
        "phi3_v": True, "internvl_chat": True, "mobilevlm": False, "deepseek_vl_v1": False,
    }


# --- the actor refuses remote code the grid did not allow ---------------------------------------------------


@pytest.fixture
def fake_loader(monkeypatch):
    """Replaces the HF captioner: records what would have been loaded."""
    import actors.hf

    calls = []

    class Recorder:
        def __init__(self, model):
            calls.append((model.path, model.family.name, model.trust_remote_code))

    monkeypatch.setattr(actors.hf, "HFCaptioner", Recorder)
    return calls


@pytest.mark.parametrize("name", REMOTE)
def test_actor_refuses_remote_family_without_trust_remote_code(name, fake_loader):
    from actors.backends import make_captioner

    with pytest.raises(ValueError) as info:
        make_captioner("someone/some-vlm", name, None, False, "fp32", "hf")
    assert "someone/some-vlm" in str(info.value) and "trust_remote_code: true" in str(info.value)
    assert fake_loader == []  # refused before any loading
    make_captioner("someone/some-vlm", name, None, True, "fp32", "hf")
    assert fake_loader == [("someone/some-vlm", name, True)]


def test_actor_refuses_a_detected_remote_family(tmp_path, fake_loader):
    from actors.backends import make_captioner

    config = '{"model_type": "internvl_chat", "architectures": ["InternVLChatModel"]}'
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ValueError, match="trust_remote_code: true"):
        make_captioner(str(tmp_path), None, None, False, "bf16", "hf")
    assert fake_loader == []


# --- Phi-3 / Phi-3.5-vision ------------------------------------------------------------------------------


def test_phi3_v_prompts(phi3_tokenizer):
    family = get_family("phi3_v")
    processor = SimpleNamespace(tokenizer=phi3_tokenizer)
    single = "<|user|>\n<|image_1|>\nDescribe the image.<|end|>\n<|assistant|>\n"
    multi = "<|user|>\n<|image_1|>\n<|image_2|>\n<|image_3|>\nDescribe the images.<|end|>\n<|assistant|>\n"
    assert family.format_prompt(processor, "Describe the image.", 1) == single
    assert family.format_prompt(processor, "Describe the images.", 3) == multi
    # without a chat template the same text is written out
    bare = SimpleNamespace(tokenizer=SimpleNamespace(chat_template=None))
    assert family.format_prompt(bare, "Describe the image.", 1) == single
    assert family.arrange_images(frames(3)) == frames(3)  # native multi-image


class FakePhi3VProcessor:
    """Takes one prompt string at a time, as the remote Phi3VProcessor does; records crops per call."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.image_processor = SimpleNamespace(num_crops=16)
        self.calls = []

    def __call__(self, text, images, return_tensors="pt"):
        assert isinstance(text, str)
        self.calls.append((text, len(images), self.image_processor.num_crops))
        ids = torch.tensor([self.tokenizer.encode(text)])
        return BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                             "pixel_values": torch.zeros(1, len(images), 3, 4, 4, dtype=torch.float64)})


class FakeGenerator(torch.nn.Module):
    """generate() echoes the prompt and appends fixed tokens, recording its inputs."""

    def __init__(self, new_tokens, eos):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.bfloat16))
        self.generation_config = SimpleNamespace(eos_token_id=eos)
        self.config = SimpleNamespace(is_encoder_decoder=False)
        self.new_tokens = new_tokens
        self.calls = []

    def generate(self, input_ids, **kwargs):
        self.calls.append({"input_ids": input_ids, **kwargs})
        return torch.cat([input_ids, torch.tensor([self.new_tokens])], dim=1)


def test_phi3_v_generates_one_sample_per_call(phi3_tokenizer):
    family = get_family("phi3_v")
    processor = FakePhi3VProcessor(phi3_tokenizer)
    end = phi3_tokenizer.convert_tokens_to_ids("<|end|>")
    words = phi3_tokenizer.encode("A dog", add_special_tokens=False)
    model = FakeGenerator([*words, end, phi3_tokenizer.pad_token_id], eos=phi3_tokenizer.eos_token_id)
    results = family.generate(model, processor, ["Describe.", "Compare."], [frames(1), frames(2)],
                              {"max_new_tokens": 8}, torch.device("cpu"))
    assert [r.caption for r in results] == ["A dog", "A dog"]
    assert [r.generated_tokens for r in results] == [len(words) + 1] * 2  # up to and including <|end|>
    assert [(n, crops) for _, n, crops in processor.calls] == [(1, 16), (2, 4)]
    assert processor.calls[1][0].startswith("<|user|>\n<|image_1|>\n<|image_2|>\nCompare.")
    assert len(model.calls) == 2
    call = model.calls[0]
    assert end in call["eos_token_id"] and phi3_tokenizer.eos_token_id in call["eos_token_id"]
    assert call["pixel_values"].dtype == torch.bfloat16 and call["max_new_tokens"] == 8


# --- InternVL2 / 2.5 remote code ------------------------------------------------------------------------


def test_internvl_chat_prompts():
    family = get_family("internvl_chat")
    assert family.format_prompt(None, "Describe the image.", 1) == "<image>\nDescribe the image."
    assert family.format_prompt(None, "Describe.", 2) == "Image-1: <image>\nImage-2: <image>\nDescribe."
    three = family.format_prompt(None, "Describe.", 3)
    assert three == "Image-1: <image>\nImage-2: <image>\nImage-3: <image>\nDescribe."


@pytest.mark.parametrize(
    ("size", "max_num", "n_tiles"),
    [
        ((448, 448), 12, 1),  # one tile, no thumbnail
        ((896, 448), 6, 3),  # 2x1 grid + thumbnail
        ((448, 896), 6, 3),  # 1x2
        ((1344, 448), 12, 4),  # 3x1 + thumbnail
        ((1792, 1792), 12, 10),  # big square: 3x3 wins the tie with 1x1 and 2x2, + thumbnail
        ((100, 50), 12, 3),  # small 2:1 keeps the smaller tied grid (2x1, not 4x2)
        ((1000, 300), 4, 4),  # 10:3 -> closest grid with at most 4 tiles is 3x1, + thumbnail
    ],
)
def test_internvl_chat_tiling(size, max_num, n_tiles):
    from actors.families.internvl_chat import pixel_values

    pv = pixel_values(Image.new("RGB", size, "gray"), max_num)
    assert pv.shape == (n_tiles, 3, 448, 448) and pv.dtype == torch.float32


def test_internvl_chat_tiles_row_major_and_imagenet_normalised():
    from actors.families.internvl_chat import IMAGENET_MEAN, IMAGENET_STD, pixel_values, tile_grid

    assert tile_grid(896, 448, 6) == (2, 1) and tile_grid(448, 896, 6) == (1, 2)
    image = Image.new("RGB", (896, 448), "white")
    image.paste(Image.new("RGB", (448, 448), "black"), (448, 0))  # left white, right black
    pv = pixel_values(image, 6)
    white = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    black = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert torch.allclose(pv[0, :, 100, 100], white, atol=1e-5)  # first tile: the left one
    assert torch.allclose(pv[1, :, 100, 100], black, atol=1e-5)
    assert torch.allclose(pv[2, :, 100, 100], white, atol=1e-5)  # thumbnail: left half white
    assert torch.allclose(pv[2, :, 100, 350], black, atol=1e-5)


class FakeInternVLChat(torch.nn.Module):
    """The two documented entry points of InternVLChatModel, recording their arguments."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.bfloat16))
        self.calls = []

    def batch_chat(self, tokenizer, pixel_values, questions, generation_config, num_patches_list=None):
        self.calls.append(("batch_chat", pixel_values, questions, num_patches_list, generation_config))
        generation_config["eos_token_id"] = 0  # the real one writes into it
        return ["a red square" for _ in questions]

    def chat(self, tokenizer, pixel_values, question, generation_config, num_patches_list=None):
        self.calls.append(("chat", pixel_values, question, num_patches_list, generation_config))
        return "two squares"


def test_internvl_chat_batches_single_images_and_chats_multi_image(phi3_tokenizer):
    family = get_family("internvl_chat")
    model = FakeInternVLChat()
    settings = {"max_new_tokens": 20, "do_sample": False}
    images = [[Image.new("RGB", (896, 448))], frames(2, size=(30, 30)), [Image.new("RGB", (448, 448))]]
    results = family.generate(model, phi3_tokenizer, ["Describe."] * 3, images, settings, torch.device("cpu"))
    assert [r.caption for r in results] == ["a red square", "two squares", "a red square"]
    kind, pv, questions, patches, config = model.calls[0]
    assert kind == "batch_chat" and questions == ["<image>\nDescribe.", "<image>\nDescribe."]
    assert patches == [3, 1] and pv.shape == (4, 3, 448, 448) and pv.dtype == torch.bfloat16
    kind, pv, question, patches, _ = model.calls[1]
    assert kind == "chat" and question == "Image-1: <image>\nImage-2: <image>\nDescribe."
    assert patches == [1, 1] and pv.shape[0] == 2
    assert settings == {"max_new_tokens": 20, "do_sample": False}  # the cell's settings are not mutated
    # tokens counted by re-tokenizing the text, + the end-of-turn token
    expected = len(phi3_tokenizer("a red square", add_special_tokens=False)["input_ids"]) + 1
    assert results[0].generated_tokens == expected
    capped = family.result(phi3_tokenizer, "a red square", {"max_new_tokens": 2})
    assert capped.generated_tokens == 2


# --- MobileVLM ------------------------------------------------------------------------------------------


def test_mobilevlm_prompt_and_single_image():
    family = get_family("mobilevlm")
    assert family.format_prompt(None, "Describe the image.", 1) == (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions. "
        "USER: <image>\nDescribe the image. ASSISTANT:"
    )
    assert family.multi_image == "panorama" and len(family.arrange_images(frames(3))) == 1


@pytest.mark.parametrize("installed", ["nothing", "unrelated PyPI package"])
def test_mobilevlm_load_names_the_authors_code(installed, monkeypatch):
    # nothing importable, or a top-level 'mobilevlm' module without the authors' subpackages
    stand_in = None if installed == "nothing" else types.ModuleType("mobilevlm")
    monkeypatch.setitem(sys.modules, "mobilevlm", stand_in)
    family = get_family("mobilevlm")
    for load in (lambda: family.load_model("mtgv/MobileVLM_V2-3B", {}, {}),
                 lambda: family.load_processor("mtgv/MobileVLM_V2-3B", {})):
        with pytest.raises(ImportError) as info:
            load()
        message = str(info.value)
        assert "github.com/Meituan-AutoML/MobileVLM" in message and "PYTHONPATH" in message
        assert "PyPI" in message  # ...and that the PyPI namesake is not it


def test_mobilevlm_precision_maps_to_the_authors_loader():
    from actors.precision import load_kwargs

    family = get_family("mobilevlm")
    assert family.authors_precision(load_kwargs("int8", family, False)) == (True, False, None)
    assert family.authors_precision(load_kwargs("nf4", family, False)) == (False, True, None)
    assert family.authors_precision(load_kwargs("bf16", family, False)) == (False, False, torch.bfloat16)
    with pytest.raises(ValueError, match="int8-vision"):
        family.authors_precision(load_kwargs("int8-vision", family, False))


# --- DeepSeek-VL v1 (authors' package) ------------------------------------------------------------------

SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that "
    "the user provides, and assist the user with a variety of tasks using natural language."
)


def test_deepseek_vl_v1_prompts():
    family = get_family("deepseek_vl_v1")
    assert family.format_prompt(None, "Describe the image.", 1) == (
        f"{SYSTEM}\n\nUser: <image_placeholder>Describe the image.\n\nAssistant:"
    )
    assert family.format_prompt(None, "Which is brighter?", 2) == (
        f"{SYSTEM}\n\nUser: <image_placeholder> is Figure 1.\n<image_placeholder> is Figure 2.\n"
        "Which is brighter?\n\nAssistant:"
    )
    assert family.conversation("Describe.", 1) == [
        {"role": "User", "content": "<image_placeholder>Describe."}, {"role": "Assistant", "content": ""},
    ]


def test_deepseek_vl_v1_load_names_the_authors_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepseek_vl", None)
    family = get_family("deepseek_vl_v1")
    for load in (lambda: family.load_processor("deepseek-ai/deepseek-vl-1.3b-chat", {}),
                 lambda: family.load_model("deepseek-ai/deepseek-vl-1.3b-chat", {}, {})):
        with pytest.raises(ImportError) as info:
            load()
        assert "deepseek_vl" in str(info.value) and "github.com/deepseek-ai/DeepSeek-VL" in str(info.value)


def test_deepseek_vl_v1_generates_one_batch(phi3_tokenizer):
    """Glue only: process_one per sample, one batchify, one generate over embeddings (new tokens only)."""
    family = get_family("deepseek_vl_v1")
    tok = phi3_tokenizer
    seen = []

    class Batch(SimpleNamespace):
        def to(self, device, dtype):
            seen.append(("to", dtype))
            return self

        def keys(self):
            return self.__dict__.keys()

        def __getitem__(self, key):
            return self.__dict__[key]

    processor = SimpleNamespace(
        tokenizer=tok,
        process_one=lambda conversations, images: seen.append(
            ("one", conversations[0]["content"], len(images))
        ),
        batchify=lambda prepared: Batch(input_ids=None, attention_mask=torch.ones(2, 3)),
    )
    words = tok.encode("A dog", add_special_tokens=False)

    class LanguageModel:
        def generate(self, inputs_embeds, attention_mask, **kwargs):
            seen.append(("generate", kwargs["eos_token_id"], kwargs["max_new_tokens"]))
            return torch.tensor([[*words, tok.eos_token_id, tok.eos_token_id], [*words, *words[:2]]])

    model = FakeGenerator([], eos=tok.eos_token_id)
    model.prepare_inputs_embeds = lambda **batch: torch.zeros(2, 3, 4)
    model.language_model = LanguageModel()
    results = family.generate(model, processor, ["Describe.", "Compare."], [frames(1), frames(2)],
                              {"max_new_tokens": 4}, torch.device("cpu"))
    assert results[0].caption == "A dog" and results[1].caption.startswith("A dog")
    assert [r.generated_tokens for r in results] == [len(words) + 1, len(words) + 2]  # no EOS: all of them
    assert seen[0] == ("one", "<image_placeholder>Describe.", 1)
    assert seen[1][0] == "one" and seen[1][2] == 2
    assert seen[2] == ("to", torch.bfloat16) and seen[3] == ("generate", tok.eos_token_id, 4)


# --- Phi-4-multimodal (native) --------------------------------------------------------------------------


def test_phi4_mm_prompt_with_and_without_processor_template():
    family = get_family("phi4_mm")
    bare = SimpleNamespace(chat_template=None, image_token="<|image|>")
    assert family.format_prompt(bare, "Describe.", 1) == "<|user|><|image|>Describe.<|end|><|assistant|>"
    two = "<|user|><|image|><|image|>Describe.<|end|><|assistant|>"
    assert family.format_prompt(bare, "Describe.", 2) == two

    class WithTemplate:
        chat_template = "x"

        def apply_chat_template(self, messages, add_generation_prompt=True):
            return "|".join(part["type"] for part in messages[0]["content"])

    assert family.format_prompt(WithTemplate(), "Describe.", 2) == "image|image|text"


def test_phi4_mm_vision_attention_is_bidirectional_whatever_the_batch(tmp_path):
    """transformers 5.23 runs Phi-4-MM's SigLIP tower causally when no crop in the call is padded: an unpadded
    image's features then change when a padded image joins its batch. The family's load_model fixes that."""
    import transformers

    from actors.tiny.phi4_mm import build

    build(tmp_path, 0, vision_feature_layer=-1)  # features taken after the attention layer
    processor = transformers.AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    processor.tokenizer.padding_side = "left"
    family = get_family("phi4_mm")
    fixed = family.load_model(str(tmp_path), {"local_files_only": True}, {"dtype": torch.float32}).eval()
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    unpadded = Image.effect_noise((128, 64), 60).convert("RGB")  # fills its 2x1 crop grid exactly
    padded = Image.effect_noise((96, 64), 60).convert("RGB")  # padded out to the 2x1 grid
    prompt = family.format_prompt(processor, "Describe the image.", 1)

    def last_logits(model, images):
        inputs = processor(text=[prompt] * len(images), images=images, padding=True, return_tensors="pt")
        with torch.no_grad():
            return model(**inputs).logits[0, -1]

    alone, batched = last_logits(fixed, [unpadded]), last_logits(fixed, [unpadded, padded])
    assert torch.allclose(alone, batched, atol=1e-4)
    # without the fix the same image's logits change with its batch (this is what the fix is for)
    alone, batched = last_logits(plain, [unpadded]), last_logits(plain, [unpadded, padded])
    assert not torch.allclose(alone, batched, atol=1e-2)
