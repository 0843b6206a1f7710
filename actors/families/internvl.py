"""InternVL (native transformers port, e.g. OpenGVLab/InternVL3-*-hf): tiles + pixel shuffle + ChatML."""

from actors.families.base import Family


class InternVLFamily(Family):
    name = "internvl"
    architectures = ("InternVLForConditionalGeneration",)
    vllm_supported = True


FAMILY = InternVLFamily()
