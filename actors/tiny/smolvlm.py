"""SmolVLM (``SmolVLMForConditionalGeneration``, the Idefics3 architecture): SigLIP-style vision tower,
pixel-shuffle connector (scale factor 2) + Llama decoder.

Load with ``AutoProcessor`` (``SmolVLMProcessor``, needs torchvision and ``num2words``) +
``AutoModelForImageTextToText``. Prompt: chat template ``<|im_start|>User:<image>Describe the image.
<end_of_utterance>\\nAssistant:``. Images are split into up to 2x2 tiles of 32 px plus a global image;
each tile becomes ``<fake_token_around_image><row_i_col_j>`` + 4 ``<image>`` tokens, so the prompt
length depends on the image size. Batched images must be nested: ``[[img0], [img1], ...]``.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    spread_weights,
)

TILE_SIZE = 32  # vision encoder image size = max_image_size
PATCH_SIZE = 8
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (TILE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2  # 4 tokens per tile
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
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = SmolVLMConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=TILE_SIZE,
            patch_size=PATCH_SIZE,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
            **ids,
        ),
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.image_token_id,
        **ids,
    )
    seed_everything(seed)
    model = SmolVLMForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
