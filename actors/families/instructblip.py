"""InstructBLIP (Vicuna / Flan-T5): BLIP-2 with an instruction-aware Q-Former; plain instruction prompt."""

from actors.families.base import Family


class InstructBlipFamily(Family):
    name = "instructblip"
    model_types = ("instructblip",)
    architectures = ("InstructBlipForConditionalGeneration",)
    vision_modules = ("vision_model", "qformer", "language_projection")
    language_modules = ("language_model",)
    multi_image = "panorama"
    vllm_supported = False
    uses_chat_template = False
    # The settings its authors caption with; a grid that sets num_beams or min_new_tokens overrides them.
    generation_defaults = {"num_beams": 5, "min_new_tokens": 10}


FAMILY = InstructBlipFamily()
