"""SmolVLM / Idefics3: SigLIP vision + connector + Llama-style LM; images nested per sample."""

from typing import Any

from PIL import Image

from actors.families.base import Family


class SmolVLMFamily(Family):
    name = "smolvlm"
    model_types = ("smolvlm", "idefics3")
    architectures = ("SmolVLMForConditionalGeneration", "Idefics3ForConditionalGeneration")
    vision_modules = ("vision_model", "connector")
    language_modules = ("text_model",)
    vllm_supported = True

    def images_arg(self, images: list[list[Image.Image]]) -> Any:
        # The Idefics3 processor pairs images with prompts only when they are nested per sample.
        return images


FAMILY = SmolVLMFamily()
