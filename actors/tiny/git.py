"""GIT (``GitForCausalLM``): CLIP-style ViT whose patch features are prefixed to a BERT-style causal decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (GIT is in that mapping in transformers 5.x;
``AutoModelForCausalLM`` loads the same class). No chat template: plain prompt. The tokenizer is a BERT
WordPiece tokenizer like the real one, so a text prompt becomes ``[CLS] prompt [SEP]``; pass
``return_token_type_ids=False`` to the processor (``GitForCausalLM`` does not take token_type_ids).
For pure captioning, ``generate(pixel_values=...)`` starts from ``[CLS]`` alone.
"""

from __future__ import annotations

from pathlib import Path

from .common import finish, greedy_generation_config, wordpiece_vocab
from .configs import DECODER, IMAGE_SIZE, vision_config


def build(out_dir: Path, seed: int) -> None:
    from transformers import BertTokenizer, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = BertTokenizer(
        vocab=wordpiece_vocab(), padding_side="left", model_input_names=["input_ids", "attention_mask"]
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = GitProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = GitConfig(
        vision_config=vision_config(),
        vocab_size=len(tokenizer),
        **DECODER,  # head_dim 64
        intermediate_size=256,
        max_position_embeddings=512,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    gen = greedy_generation_config(tokenizer)
    gen.bos_token_id, gen.eos_token_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    finish(GitForCausalLM, config, processor, out_dir, seed, gen)
