"""LLaVA-1.5: CLIP vision tower + projector + Llama/Vicuna, one image per prompt natively."""

from actors.families.base import Family

# LLaVA-1.5's chat template as llava-hf checkpoints ship it: "USER: <image>\n<prompt> ASSISTANT:".
# Models made here in the llava layout (the zoo's toy captioners, actors.tiny's random-weight llava) carry it.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ item['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


class LlavaFamily(Family):
    name = "llava"
    architectures = ("LlavaForConditionalGeneration",)
    # LLaVA-1.5 was trained on single images; several images in one prompt degrade it.
    multi_image = "panorama"
    vllm_supported = True


FAMILY = LlavaFamily()
