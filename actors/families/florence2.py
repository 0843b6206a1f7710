"""Florence-2 (native): DaViT + BART-style encoder-decoder, steered by task tokens such as <CAPTION>."""

from actors.families.base import Family


class Florence2Family(Family):
    name = "florence2"
    architectures = ("Florence2ForConditionalGeneration",)
    multi_image = "panorama"
    vllm_supported = True
    uses_chat_template = False
    task_prompt = "<CAPTION>"
    task_prefixes = ("<",)  # <CAPTION>, <DETAILED_CAPTION>, <MORE_DETAILED_CAPTION>


FAMILY = Florence2Family()
