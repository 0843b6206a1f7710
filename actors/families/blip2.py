"""BLIP-2 (OPT / Flan-T5): ViT + Q-Former; no chat template, the documented plain Q/A prompt."""

from actors.families.base import Family


class Blip2Family(Family):
    name = "blip2"
    model_types = ("blip-2",)
    architectures = ("Blip2ForConditionalGeneration",)
    vision_modules = ("vision_model", "qformer", "language_projection")
    multi_image = "panorama"
    vllm_supported = True
    uses_chat_template = False
    plain_template = "Question: {prompt} Answer:"


FAMILY = Blip2Family()
