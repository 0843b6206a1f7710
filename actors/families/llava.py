"""LLaVA-1.5: CLIP vision tower + projector + Llama/Vicuna, one image per prompt natively."""

from actors.families.base import Family


class LlavaFamily(Family):
    name = "llava"
    model_types = ("llava",)
    architectures = ("LlavaForConditionalGeneration",)
    vision_modules = ("vision_tower", "multi_modal_projector")
    language_modules = ("language_model",)
    # LLaVA-1.5 was trained on single images; several images in one prompt degrade it.
    multi_image = "panorama"
    vllm_supported = True


FAMILY = LlavaFamily()
