"""DeepSeek-VL (native transformers port): SigLIP + aligner + Llama-style LM."""

from actors.families.base import Family


class DeepseekVLFamily(Family):
    name = "deepseek_vl"
    architectures = ("DeepseekVLForConditionalGeneration",)
    vision_modules = ("vision_model", "aligner")


FAMILY = DeepseekVLFamily()
