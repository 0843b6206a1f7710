"""Florence-2 (native ``Florence2ForConditionalGeneration``): DaViT vision encoder + BART encoder-decoder.

Load with ``AutoProcessor`` + ``AutoModelForImageTextToText``. No chat template: task-token prompt such as
``"<CAPTION>"`` (the processor rewrites it to "What does the image describe?" and writes
``<image>`` x ``image_seq_length`` + ``<s>`` + prompt + ``</s>``). Encoder-decoder: ``generate`` returns only
decoder tokens (starting with ``decoder_start_token_id`` = ``</s>``), not the prompt.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    CLIPImageProcessor,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
)

from .common import finish, greedy_generation_config, make_tokenizer, special_ids
from .configs import vlm_config

IMAGE_SIZE = 64
TOTAL_STRIDE = 4 * 2 * 2 * 2  # product of patch_stride
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // TOTAL_STRIDE) ** 2 + 1  # 2x2 grid + 1 pooled token = 5


def build(out_dir: Path, seed: int) -> None:
    tokenizer = make_tokenizer(
        add_bos_token=False,  # Florence2Processor writes <s> ... </s> itself (add_special_tokens=False)
        base_special_tokens=("<s>", "<pad>", "</s>", "<unk>"),
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = CLIPImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
    )
    image_processor.image_seq_length = IMAGE_SEQ_LENGTH  # read by Florence2Processor, saved in its config
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
    d_model = 128
    config = vlm_config(
        Florence2Config,
        tokenizer,
        vision=dict(
            depths=[1, 1, 1, 1],
            patch_size=[7, 3, 3, 3],
            patch_stride=[4, 2, 2, 2],
            patch_padding=[3, 1, 1, 1],
            patch_prenorm=[False, True, True, True],
            embed_dim=[16, 32, 32, 64],
            num_heads=[1, 2, 2, 4],
            num_groups=[1, 2, 2, 4],
            window_size=2,
            drop_path_rate=0.0,
            projection_dim=d_model,
            max_position_embeddings=16,
        ),
        text=dict(
            model_type="bart",
            vocab_size=len(tokenizer),
            d_model=d_model,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,  # head_dim 64
            decoder_attention_heads=2,
            encoder_ffn_dim=256,
            decoder_ffn_dim=256,
            max_position_embeddings=256,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=tokenizer.eos_token_id,
            **special_ids(tokenizer),
        ),
    )
    gen = greedy_generation_config(tokenizer, decoder_start_token_id=tokenizer.eos_token_id)
    finish(Florence2ForConditionalGeneration, config, processor, out_dir, seed, gen)
