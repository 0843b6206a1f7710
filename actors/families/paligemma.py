"""PaliGemma: SigLIP + Gemma, steered by task prefixes ("caption en"), not by chat."""

from actors.families.base import Family


class PaliGemmaFamily(Family):
    name = "paligemma"
    architectures = ("PaliGemmaForConditionalGeneration",)
    multi_image = "panorama"
    vllm_supported = True
    uses_chat_template = False
    plain_template = "<image>{prompt}"
    task_prompt = "caption en"
    task_prefixes = ("caption", "describe", "cap ", "answer", "question")


FAMILY = PaliGemmaFamily()
