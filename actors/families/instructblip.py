"""InstructBLIP (Vicuna / Flan-T5): BLIP-2 with an instruction-aware Q-Former; plain instruction prompt."""

from actors.families.blip2 import Blip2Family


class InstructBlipFamily(Blip2Family):
    name = "instructblip"
    architectures = ("InstructBlipForConditionalGeneration",)
    vllm_supported = False
    plain_template = "{prompt}"  # the instruction alone, not BLIP-2's Q/A frame
    # The settings its authors caption with; a grid that sets num_beams or min_new_tokens overrides them.
    generation_defaults = {"num_beams": 5, "min_new_tokens": 10}


FAMILY = InstructBlipFamily()
