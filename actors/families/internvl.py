"""InternVL (native transformers port, e.g. OpenGVLab/InternVL3-*-hf): tiles + pixel shuffle + ChatML."""

from actors.families.base import Family


class InternVLFamily(Family):
    name = "internvl"
    model_types = ("internvl",)
    architectures = ("InternVLForConditionalGeneration",)
    vision_modules = ("vision_tower", "multi_modal_projector")
    language_modules = ("language_model",)
    multi_image = "native"
    vllm_supported = True


FAMILY = InternVLFamily()
