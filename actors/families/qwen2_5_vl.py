"""Qwen2.5-VL: windowed-attention ViT ("visual") + Qwen2.5 LM; several images per prompt natively."""

from actors.families.qwen2_vl import Qwen2VLFamily


class Qwen25VLFamily(Qwen2VLFamily):
    name = "qwen2_5_vl"
    architectures = ("Qwen2_5_VLForConditionalGeneration",)


FAMILY = Qwen25VLFamily()
