"""SmolVLM (``SmolVLMForConditionalGeneration``, the Idefics3 architecture): SigLIP-style vision tower,
pixel-shuffle connector (scale factor 2) + Llama decoder.

Load with ``AutoProcessor`` (``SmolVLMProcessor``, needs torchvision and ``num2words``) +
``AutoModelForImageTextToText``. Prompt: chat template ``<|im_start|>User:<image>Describe the image.
<end_of_utterance>\\nAssistant:``. Images are split into up to 2x2 tiles of 32 px plus a global image;
each tile becomes ``<fake_token_around_image><row_i_col_j>`` + 16 ``<image>`` tokens, so the prompt
length depends on the image size. Batched images must be nested: ``[[img0], [img1], ...]``.
"""

from __future__ import annotations

from pathlib import Path

from .common import finish, make_tokenizer
from .configs import IMAGE_SIZE, llama_text_config, vision_config, vlm_config

TILE_SIZE = IMAGE_SIZE  # vision encoder image size = max_image_size
# transformers 5.20's SmolVLM ``inputs_merger`` cuts the image features into blocks of the vision
# ``patch_size`` tokens, so a tile's token count must be a multiple of it: 4-px patches make 64 patches,
# pixel-shuffled by 2 into 16 tokens per tile (8-px patches gave 4, which 5.20 rejects).
PATCH_SIZE = 4
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (TILE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2  # 16 tokens per tile
MAX_GRID = 6  # <row_i_col_j> tokens exist for i, j in 1..6 like the real tokenizer

# The real SmolVLM template (transformers' DEFAULT_CHAT_TEMPLATE for SmolVLM).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}"
    "{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    row_col = [f"<row_{i}_col_{j}>" for i in range(1, MAX_GRID + 1) for j in range(1, MAX_GRID + 1)]
    tokenizer = make_tokenizer(
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        add_bos_token=False,  # the chat template writes <|im_start|> itself
        base_special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>"),
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "image_token": "<image>",
            "global_image_token": "<global-img>",
            "video_token": "<video>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens({"extra_special_tokens": row_col}, replace_extra_special_tokens=False)

    image_kwargs = dict(
        size={"longest_edge": 2 * TILE_SIZE},
        max_image_size={"longest_edge": TILE_SIZE},
        do_image_splitting=True,
    )
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(**image_kwargs),
        video_processor=SmolVLMVideoProcessor(**image_kwargs),
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    text = llama_text_config(tokenizer, model_type="llama")
    config = vlm_config(SmolVLMConfig, tokenizer, vision_config(patch_size=PATCH_SIZE), text,
                        scale_factor=SCALE_FACTOR)
    finish(SmolVLMForConditionalGeneration, config, processor, out_dir, seed)
