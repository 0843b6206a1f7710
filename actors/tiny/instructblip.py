"""InstructBLIP with Vicuna (``InstructBlipForConditionalGeneration``): ViT + instruction-aware Q-Former
(4 query tokens, reads the prompt through its own BERT tokenizer) + Llama decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: plain instruction prompt
(e.g. ``"Describe the image."``); the processor prepends ``num_query_tokens`` ``<image>`` tokens before the
BOS and also returns ``qformer_input_ids``/``qformer_attention_mask``.
"""

from __future__ import annotations

from pathlib import Path

from .blip2 import NUM_QUERY_TOKENS, blip_image_processor, blip_qformer_config, blip_vision_config
from .common import (
    greedy_generation_config,
    make_tokenizer,
    save_model_and_processor,
    seed_everything,
    special_ids,
    spread_weights,
    wordpiece_vocab,
)


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
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    ids = special_ids(tokenizer)
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        **ids,
    )
    config = InstructBlipConfig(
        vision_config=blip_vision_config(),
        qformer_config=blip_qformer_config(vocab_size=len(qformer_tokenizer), pad_token_id=0),
        text_config=text_config,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=image_token_id,
        **ids,
    )
    seed_everything(seed)
    model = InstructBlipForConditionalGeneration(config)
    spread_weights(model, seed)
    save_model_and_processor(model, processor, out_dir, greedy_generation_config(tokenizer))
