"""BLIP-2 with OPT (``Blip2ForConditionalGeneration``): ViT + Q-Former (4 query tokens) + OPT decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: plain prompt (e.g.
``"a photo of"`` or ``""``); the processor prepends ``num_query_tokens`` ``<image>`` tokens before the BOS
(``</s>`` as in OPT's tokenizer).
"""

from __future__ import annotations

from pathlib import Path

from .common import finish, make_tokenizer, special_ids
from .configs import DECODER, ENCODER, IMAGE_SIZE, vision_config

NUM_QUERY_TOKENS = 4


def blip_config_kwargs(tokenizer, **qformer_overrides) -> dict:
    """What BLIP-2 and InstructBLIP configs share: ViT + Q-Former with 4 queries, the decoder's ids."""
    qformer = dict(ENCODER, cross_attention_frequency=1, encoder_hidden_size=32, max_position_embeddings=128)
    return dict(
        vision_config=vision_config(initializer_range=0.02),  # the default 1e-10 makes every image look alike
        qformer_config={**qformer, **qformer_overrides},
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        **special_ids(tokenizer),
    )


def blip_image_processor():
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def build(out_dir: Path, seed: int) -> None:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, OPTConfig

    # OPT's tokenizer: </s> is both BOS (prepended) and EOS.
    tokenizer = make_tokenizer(
        bos_token="</s>", eos_token="</s>", base_special_tokens=("<s>", "<pad>", "</s>", "<unk>")
    )
    # No named ``image_token`` on the tokenizer: Blip2Processor then adds "<image>" as an AddedToken itself
    # (with a named str token it crashes on ``self.image_token.content``).
    processor = Blip2Processor(
        image_processor=blip_image_processor(), tokenizer=tokenizer, num_query_tokens=NUM_QUERY_TOKENS
    )
    text_config = OPTConfig(
        vocab_size=len(tokenizer),
        **DECODER,  # head_dim 64
        ffn_dim=256,
        word_embed_proj_dim=128,
        max_position_embeddings=512,
        **special_ids(tokenizer),
    )
    config = Blip2Config(**blip_config_kwargs(tokenizer), text_config=text_config, image_text_hidden_size=32)
    finish(Blip2ForConditionalGeneration, config, processor, out_dir, seed)
