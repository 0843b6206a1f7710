"""InstructBLIP with Vicuna (``InstructBlipForConditionalGeneration``): ViT + instruction-aware Q-Former
(4 query tokens, reads the prompt through its own BERT tokenizer) + Llama decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: plain instruction prompt
(e.g. ``"Describe the image."``); the processor prepends ``num_query_tokens`` ``<image>`` tokens before the
BOS and also returns ``qformer_input_ids``/``qformer_attention_mask``.
"""

from __future__ import annotations

from pathlib import Path

from .blip2 import NUM_QUERY_TOKENS, blip_config_kwargs, blip_image_processor
from .common import finish, make_tokenizer, wordpiece_vocab
from .configs import llama_text_config


def build(out_dir: Path, seed: int) -> None:
    from transformers import (
        BertTokenizer,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        LlamaConfig,
    )

    tokenizer = make_tokenizer()
    # Q-Former tokenizer: BERT WordPiece built from an in-memory vocab (``vocab_file`` is ignored in 5.x).
    qformer_tokenizer = BertTokenizer(vocab=wordpiece_vocab())
    # As for BLIP-2, let the processor add "<image>" itself (a named str image_token makes it crash).
    processor = InstructBlipProcessor(
        image_processor=blip_image_processor(),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=NUM_QUERY_TOKENS,
    )
    config = InstructBlipConfig(
        **blip_config_kwargs(tokenizer, vocab_size=len(qformer_tokenizer), pad_token_id=0),
        text_config=LlamaConfig(**llama_text_config(tokenizer, max_position_embeddings=512)),
    )
    finish(InstructBlipForConditionalGeneration, config, processor, out_dir, seed)
