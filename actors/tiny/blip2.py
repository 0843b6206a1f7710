"""BLIP-2 with OPT (``Blip2ForConditionalGeneration``): ViT + Q-Former (4 query tokens) + OPT decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: plain prompt (e.g.
``"a photo of"`` or ``""``); the processor prepends ``num_query_tokens`` ``<image>`` tokens before the BOS
(``</s>`` as in OPT's tokenizer).
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    special_ids,
    spread_weights,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_QUERY_TOKENS = 4


def blip_vision_config() -> dict:
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        initializer_range=0.02,  # the default 1e-10 makes every image look alike
    )


def blip_qformer_config(**extra) -> dict:
    return dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        cross_attention_frequency=1,
        encoder_hidden_size=32,
        max_position_embeddings=128,
        **extra,
    )


def blip_image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def build(out_dir: Path, seed: int) -> None:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, OPTConfig

    # OPT's tokenizer: </s> is both BOS (prepended) and EOS.
    tokenizer = make_tokenizer(
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        base_special_tokens=("<s>", "<pad>", "</s>", "<unk>"),
    )
    # No named ``image_token`` on the tokenizer: Blip2Processor then adds "<image>" as an AddedToken itself
    # (with a named str token it crashes on ``self.image_token.content``).
    processor = Blip2Processor(
        image_processor=blip_image_processor(), tokenizer=tokenizer, num_query_tokens=NUM_QUERY_TOKENS
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    ids = special_ids(tokenizer)
    text_config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        ffn_dim=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64
        word_embed_proj_dim=128,
        max_position_embeddings=512,
        **ids,
    )
    config = Blip2Config(
        vision_config=blip_vision_config(),
        qformer_config=blip_qformer_config(),
        text_config=text_config,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_text_hidden_size=32,
        image_token_index=image_token_id,
        **ids,
    )
    seed_everything(seed)
    model = Blip2ForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
