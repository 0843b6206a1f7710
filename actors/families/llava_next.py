"""LLaVA-NeXT (v1.6, Vicuna/Mistral): AnyRes tiling; several images per prompt natively."""

from actors.families.base import Family


class LlavaNextFamily(Family):
    name = "llava_next"
    model_types = ("llava_next",)
    architectures = ("LlavaNextForConditionalGeneration",)
    vision_modules = ("vision_tower", "multi_modal_projector")
    language_modules = ("language_model",)
    multi_image = "native"
    vllm_supported = True


FAMILY = LlavaNextFamily()
