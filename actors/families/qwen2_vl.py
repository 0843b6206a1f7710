"""Qwen2-VL: dynamic-resolution ViT ("visual") + Qwen2 LM, several images per prompt natively."""

from actors.families.base import Family


class Qwen2VLFamily(Family):
    name = "qwen2_vl"
    architectures = ("Qwen2VLForConditionalGeneration",)
    vision_modules = ("visual",)
    vllm_supported = True


FAMILY = Qwen2VLFamily()
