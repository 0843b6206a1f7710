"""LLaVA-NeXT (v1.6, Vicuna/Mistral): AnyRes tiling; several images per prompt natively."""

from actors.families.base import Family


class LlavaNextFamily(Family):
    name = "llava_next"
    architectures = ("LlavaNextForConditionalGeneration",)
    vllm_supported = True


FAMILY = LlavaNextFamily()
