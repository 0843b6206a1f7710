"""MobileVLM / MobileVLM V2 (e.g. mtgv/MobileVLM_V2-3B; config model_type "mobilevlm"): CLIP ViT-L/14-336 +
LDP projector (``mm_projector``) + MobileLLaMA.

The checkpoints carry no remote code that transformers can load: the model class, image preprocessing and
image-token handling live in the authors' ``mobilevlm`` package, from
https://github.com/Meituan-AutoML/MobileVLM (clone it and put the clone on PYTHONPATH; it has no setup
file). The PyPI project that is also named ``mobilevlm`` is unrelated: do not install it.

Prompt: the LLaVA-v1 conversation the authors use (their ``conv_templates["v1"]``), one image per prompt.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from PIL import Image

from actors.contract import CaptionResult
from actors.families.base import ROOT_DECODER, Family

AUTHORS_REPO = "https://github.com/Meituan-AutoML/MobileVLM"
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
STOP = "</s>"  # the v1 template's closing separator (the tokenizer's EOS)


def authors_code() -> SimpleNamespace:
    """The pieces of the authors' package this family uses, or an ImportError saying what to install."""
    try:
        from mobilevlm.constants import IMAGE_TOKEN_INDEX
        from mobilevlm.model.mobilevlm import load_pretrained_model
        from mobilevlm.utils import process_images, tokenizer_image_token
    except ImportError as exc:
        raise ImportError(
            "MobileVLM checkpoints need the authors' 'mobilevlm' code, which is not on PyPI: clone "
            f"{AUTHORS_REPO} and add the clone to PYTHONPATH on every worker (the PyPI package named "
            f"'mobilevlm' is a different project and does not provide it). Import failed: {exc}"
        ) from exc
    return SimpleNamespace(
        IMAGE_TOKEN_INDEX=IMAGE_TOKEN_INDEX,
        load_pretrained_model=load_pretrained_model,
        process_images=process_images,
        tokenizer_image_token=tokenizer_image_token,
    )


class MobileVLMFamily(Family):
    name = "mobilevlm"
    architectures = ("MobileLlamaForCausalLM",)
    vision_modules = ("vision_tower", "mm_projector")
    language_modules = ROOT_DECODER
    multi_image = "panorama"  # trained on one image per conversation
    requires_remote_code = True
    uses_chat_template = False
    plain_template = SYSTEM + " USER: <image>\n{prompt} ASSISTANT:"

    def load_processor(self, path: str, common: dict[str, Any]) -> Any:
        """The authors' loader returns tokenizer, model and image processor together, so they are all made in
        load_model (and kept on the model); this only fails fast, before any weights, when the code is
        missing."""
        authors_code()
        return None

    def load_model(self, path: str, common: dict[str, Any], precision_kwargs: dict[str, Any]) -> Any:
        import torch

        code = authors_code()
        load_8bit, load_4bit, dtype = self.authors_precision(precision_kwargs)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # The authors' loader takes no revision and always loads fp16 unless it quantizes (LLM.int8 or NF4,
        # with its own settings); a bf16/fp32 cell casts afterwards.
        tokenizer, model, image_processor, _ = code.load_pretrained_model(
            path, load_8bit, load_4bit, device_map={"": device}, device=device
        )
        if dtype is not None and not (load_8bit or load_4bit):
            model = model.to(dtype)
        model.vlm_sweep_tokenizer = tokenizer
        model.vlm_sweep_image_processor = image_processor
        return model

    def authors_precision(self, precision_kwargs: dict[str, Any]) -> tuple[bool, bool, Any]:
        """(load_8bit, load_4bit, float dtype) for the authors' loader from our from_pretrained kwargs."""
        quant = precision_kwargs.get("quantization_config")
        if quant is None:
            return False, False, precision_kwargs.get("dtype")
        if type(quant).__name__ != "BitsAndBytesConfig":
            raise ValueError("MobileVLM: the authors' loader takes a float dtype or bitsandbytes int8/nf4, "
                             f"not a {type(quant).__name__} (torchao precisions): use int8 or nf4")
        if getattr(quant, "load_in_4bit", False):
            return False, True, None
        skipped = " ".join(getattr(quant, "llm_int8_skip_modules", None) or [])
        if any(re.escape(f) in skipped for f in self.language_modules):
            raise ValueError(
                "MobileVLM: int8-vision is not available; the authors' loader quantizes the MobileLLaMA side "
                "(projector included) and keeps the CLIP tower in fp16: use int8 or nf4"
            )
        return True, False, None

    def generate(self, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
                 generate_kwargs: dict[str, Any], device: Any) -> list[Any]:
        """One sample per model call: the authors' multimodal input merge pads uneven batches on the right and
        cannot build their attention mask without labels, so batches are not safe to send as one."""
        import torch

        from actors.generation import count_generated

        code = authors_code()
        tokenizer = model.vlm_sweep_tokenizer
        image_processor = model.vlm_sweep_image_processor
        tower = model.get_vision_tower()
        vision_dtype = next((p.dtype for p in tower.parameters() if p.dtype.is_floating_point), torch.float16)
        eos_ids = {tokenizer.eos_token_id} - {None}
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kwargs = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad_id, "use_cache": True,
                  **generate_kwargs}
        results = []
        for prompt, sample_images in zip(prompts, images, strict=True):
            image = self.arrange_images(sample_images)[0]
            pixels = code.process_images([image], image_processor, model.config)
            pixels = pixels.to(device, dtype=vision_dtype)
            text = self.format_prompt(None, prompt, 1)
            input_ids = code.tokenizer_image_token(
                text, tokenizer, code.IMAGE_TOKEN_INDEX, return_tensors="pt"
            ).unsqueeze(0).to(device)
            with torch.inference_mode():
                out = model.generate(input_ids, images=pixels, **kwargs)
            out = out[:, input_ids.shape[1]:]
            caption = tokenizer.batch_decode(out, skip_special_tokens=True)[0].strip()
            caption = caption.removesuffix(STOP).strip()
            results.append(CaptionResult(caption, count_generated(out, eos_ids)[0]))
        return results


FAMILY = MobileVLMFamily()
