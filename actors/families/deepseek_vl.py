"""DeepSeek-VL (native transformers port): SigLIP + aligner + Llama-style LM."""

from actors.families.base import Family


class DeepseekVLFamily(Family):
    name = "deepseek_vl"
    model_types = ("deepseek_vl",)
    architectures = ("DeepseekVLForConditionalGeneration",)
    vision_modules = ("vision_model", "aligner")
    language_modules = ("language_model",)
    multi_image = "native"
    vllm_supported = False


FAMILY = DeepseekVLFamily()
