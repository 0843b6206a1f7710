"""The per-family part of the trainer: an untrained model + processor of each family at 64-px images.

Each builder makes the family's real transformers classes, its processor (image tokens, chat template or
task prompt as the family's checkpoints carry them; the templates are the ones ``actors/tiny`` reproduces)
and a word-level tokenizer over the shapes vocabulary with the family's special tokens. Everything else
(prompting, batching, loss) is the shared loop's (``zoo.trainer.loop``).
"""

from __future__ import annotations

from typing import Any

from zoo.trainer import shapes
from zoo.trainer.parts import Recipe, Size, ids, seeded, word_tokenizer

IMAGE = shapes.IMAGE_SIZE  # 64
PATCH = 16  # 4x4 patches: short image sequences keep CPU training short
QWEN_PATCH = 8  # Qwen2-VL merges 2x2 patches into one token: 8-px patches give its 16 tokens


def vit(size: Size, **extra: Any) -> dict[str, Any]:
    """A CLIP/SigLIP-style vision tower sub-config at the shapes' image size."""
    return dict(hidden_size=size.vision_hidden, intermediate_size=2 * size.vision_hidden,
                num_hidden_layers=size.vision_layers, num_attention_heads=2, image_size=IMAGE,
                **{"patch_size": PATCH, **extra})


def decoder(size: Size, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """A Llama-style decoder sub-config sized by ``size`` for ``tokenizer``."""
    return {"vocab_size": len(tokenizer), "hidden_size": size.lm_hidden,
            "intermediate_size": size.lm_intermediate, "num_hidden_layers": size.lm_layers,
            "num_attention_heads": size.lm_heads, "num_key_value_heads": size.lm_heads,
            "max_position_embeddings": 256, **ids(tokenizer), **extra}


def qwen_vl(size: Size, seed: int, classes: tuple[type, type, type], **vision: Any) -> tuple[Any, Any]:
    """Qwen2-VL and Qwen2.5-VL: ``classes`` (config, model, processor) over one tokenizer, chat template and
    image processor; ``vision`` is the family's own vision sub-config."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from actors.tiny.common import QWEN2_VL_CHAT_TEMPLATE

    config_class, model_class, processor_class = classes
    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
             "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
    tok = word_tokenizer(("<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", *named.values()), named,
                         bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk="<unk>", add_bos=False,
                         chat_template=QWEN2_VL_CHAT_TEMPLATE)
    # 64 px as they are: 8x8 patches of 8 px, merged 2x2 into 16 image tokens (each 16 px wide, as LLaVA's).
    # The first model's 14-px patches (64 px cut to 56, 4 tokens of 28 px) put the centre shape on the
    # corner of all four tokens, and it learned the background colour only.
    pixels = IMAGE * IMAGE
    kw = dict(size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=QWEN_PATCH, merge_size=2)
    processor = processor_class(image_processor=Qwen2VLImageProcessor(**kw),
                                video_processor=Qwen2VLVideoProcessor(**kw), tokenizer=tok,
                                chat_template=QWEN2_VL_CHAT_TEMPLATE)
    half = size.head_dim // 2  # M-RoPE's sections (time, height, width) cover half the head
    section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    config = config_class(
        text_config=decoder(size, tok, rope_parameters=rope),
        vision_config=dict(depth=size.vision_layers, num_heads=2, patch_size=QWEN_PATCH, spatial_merge_size=2,
                           temporal_patch_size=2, **vision),
        **{f"{k}_id": tok.convert_tokens_to_ids(v) for k, v in named.items()},
    )
    return seeded(model_class, config, seed), processor


def build_qwen2_vl(size: Size, seed: int) -> tuple[Any, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    return qwen_vl(size, seed, (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor),
                   embed_dim=size.vision_hidden, mlp_ratio=2, hidden_size=size.lm_hidden)


def build_qwen2_5_vl(size: Size, seed: int) -> tuple[Any, Any]:
    """Qwen2.5-VL's own tower: SwiGLU blocks, RMSNorm, windowed attention with full-attention blocks."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    # Windows of 32 px (2x2 merged tokens, a quadrant); the last block attends over the whole image, as the
    # checkpoints interleave windowed blocks with full ones (fullatt_block_indexes).
    return qwen_vl(size, seed, (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor),
                   hidden_size=size.vision_hidden, intermediate_size=2 * size.vision_hidden,
                   out_hidden_size=size.lm_hidden, window_size=IMAGE // 2,
                   fullatt_block_indexes=[size.vision_layers - 1])


def build_smolvlm(size: Size, seed: int) -> tuple[Any, Any]:
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    from actors.tiny.smolvlm import SMOLVLM_CHAT_TEMPLATE

    named = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
             "global_image_token": "<global-img>", "video_token": "<video>",
             "end_of_utterance_token": "<end_of_utterance>"}
    row_col = tuple(f"<row_{i}_col_{j}>" for i in range(1, 4) for j in range(1, 4))
    tok = word_tokenizer(("<|endoftext|>", "<|im_start|>", "<|im_end|>", *named.values(), *row_col), named,
                         bos="<|im_start|>", eos="<end_of_utterance>", pad="<|im_end|>", unk="<|endoftext|>",
                         add_bos=False, chat_template=SMOLVLM_CHAT_TEMPLATE)
    # One 64-px image, no tiling: <fake_token_around_image><global-img> + 16 <image> (8-px patches, shuffled
    # 2x2). transformers 5.20 reads the image tokens in blocks of vision patch_size: 16 is a multiple of 8.
    kw = dict(size={"longest_edge": IMAGE}, max_image_size={"longest_edge": IMAGE}, do_image_splitting=False)
    processor = SmolVLMProcessor(image_processor=SmolVLMImageProcessor(**kw),
                                 video_processor=SmolVLMVideoProcessor(**kw), tokenizer=tok,
                                 image_seq_len=(IMAGE // 8) ** 2 // 4, chat_template=SMOLVLM_CHAT_TEMPLATE)
    text = decoder(size, tok, model_type="llama", head_dim=size.head_dim, tie_word_embeddings=False)
    config = SmolVLMConfig(vision_config=vit(size, patch_size=8), text_config=text,
                           image_token_id=tok.image_token_id, scale_factor=2, **ids(tok))
    return seeded(SmolVLMForConditionalGeneration, config, seed), processor


def build_blip2(size: Size, seed: int) -> tuple[Any, Any]:
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
    )

    queries = 8
    # OPT's tokenizer: </s> is both BOS (prepended) and EOS; Blip2Processor adds its own <image> token.
    tok = word_tokenizer(("<s>", "<pad>", "</s>", "<unk>"), bos="</s>", eos="</s>", pad="<pad>", unk="<unk>",
                         add_bos=True)
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": IMAGE, "width": IMAGE}),
                               tokenizer=tok, num_query_tokens=queries)
    v = size.vision_hidden
    qformer = dict(hidden_size=v, intermediate_size=2 * v, num_hidden_layers=1, num_attention_heads=2,
                   cross_attention_frequency=1, encoder_hidden_size=v, max_position_embeddings=128,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    text = OPTConfig(vocab_size=len(tok), hidden_size=size.lm_hidden, num_hidden_layers=size.lm_layers,
                     num_attention_heads=size.lm_heads, ffn_dim=size.lm_intermediate,
                     word_embed_proj_dim=size.lm_hidden, max_position_embeddings=256, **ids(tok))
    config = Blip2Config(vision_config=vit(size, initializer_range=0.02), qformer_config=qformer,
                         text_config=text, num_query_tokens=queries, image_text_hidden_size=v,
                         image_token_index=tok.convert_tokens_to_ids("<image>"), **ids(tok))
    model = seeded(Blip2ForConditionalGeneration, config, seed)
    # transformers 5.20 starts the query tokens at zero: identical queries stay identical under training
    # (no query position embedding breaks the tie) and the first trained model ignored its images (its
    # captions were the same for a blank image). Drawn as BLIP-2's own recipe does, N(0, 0.02).
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.02, generator=generator)
        # The Q-Former is the image's only road to the LM, and BLIP-2 starts it from BERT's trained weights.
        # Drawn at N(0, 0.02) at width 32, its value and output projections pass ~1% of the image's
        # variation (the rest is the constant queries), and the LM learned to ignore it: the image features
        # of the first model differed by 0.2% between images. At fan-in scale they pass it whole.
        for layer in model.qformer.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, layer.in_features**-0.5, generator=generator)
    return model, processor


def build_git(size: Size, seed: int) -> tuple[Any, Any]:
    from transformers import BertTokenizer, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    from actors.tiny.common import wordpiece_vocab

    words = " ".join(shapes.vocabulary())
    tok = BertTokenizer(vocab=wordpiece_vocab([words]), padding_side="left",
                        model_input_names=["input_ids", "attention_mask"])
    square = {"height": IMAGE, "width": IMAGE}
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size=square)
    processor = GitProcessor(image_processor=image_processor, tokenizer=tok)
    config = GitConfig(vision_config=vit(size), vocab_size=len(tok), hidden_size=size.lm_hidden,
                       num_hidden_layers=size.lm_layers, num_attention_heads=size.lm_heads,
                       intermediate_size=size.lm_intermediate, max_position_embeddings=256,
                       bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                       pad_token_id=tok.pad_token_id)
    return seeded(GitForCausalLM, config, seed), processor


def build_paligemma(size: Size, seed: int) -> tuple[Any, Any]:
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tok = word_tokenizer(("<pad>", "<eos>", "<bos>", "<unk>", "<image>"), {"image_token": "<image>"},
                         bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", add_bos=True)
    image_processor = SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE})
    image_processor.image_seq_length = (IMAGE // PATCH) ** 2  # read by PaliGemmaProcessor
    # The processor adds PaliGemma's 1024 <locXXXX> + 128 <segXXX> tokens: built before the vocabulary size.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    text = decoder(size, tok, model_type="gemma", num_key_value_heads=1, head_dim=size.head_dim)
    config = PaliGemmaConfig(vision_config=vit(size, model_type="siglip_vision_model", vision_use_head=False),
                             text_config=text, image_token_index=tok.image_token_id, vocab_size=len(tok),
                             projection_dim=size.lm_hidden, hidden_size=size.lm_hidden, **ids(tok))
    return seeded(PaliGemmaForConditionalGeneration, config, seed), processor


def build_florence2(size: Size, seed: int) -> tuple[Any, Any]:
    from transformers import (
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    tok = word_tokenizer(("<s>", "<pad>", "</s>", "<unk>", "<image>"), {"image_token": "<image>"},
                         bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=False)
    image_processor = CLIPImageProcessor(size={"height": IMAGE, "width": IMAGE},
                                         crop_size={"height": IMAGE, "width": IMAGE}, do_center_crop=False)
    image_processor.image_seq_length = (IMAGE // 32) ** 2 + 1  # DaViT's 2x2 grid (stride 32) + 1 pooled
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tok)
    h, v = size.lm_hidden, size.vision_hidden
    vision = dict(depths=[1, 1, 1, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2],
                  patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True],
                  embed_dim=[v // 2, v, v, 2 * v], num_heads=[1, 2, 2, 4], num_groups=[1, 2, 2, 4],
                  window_size=2, drop_path_rate=0.0, projection_dim=h, max_position_embeddings=16)
    text = dict(model_type="bart", vocab_size=len(tok), d_model=h, encoder_layers=size.lm_layers,
                decoder_layers=size.lm_layers, encoder_attention_heads=size.lm_heads,
                decoder_attention_heads=size.lm_heads, encoder_ffn_dim=size.lm_intermediate,
                decoder_ffn_dim=size.lm_intermediate, max_position_embeddings=256,
                decoder_start_token_id=tok.eos_token_id, **ids(tok))
    config = Florence2Config(vision_config=vision, text_config=text, image_token_id=tok.image_token_id,
                             **ids(tok))
    return seeded(Florence2ForConditionalGeneration, config, seed), processor


def build_llava(size: Size, seed: int) -> tuple[Any, Any]:
    """LLaVA-1.5's classes: CLIP tower (16 image tokens, CLS dropped) + projector + Llama; its template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    from actors.families.llava import LLAVA_CHAT_TEMPLATE

    # The shapes vocabulary only (no TEMPLATE_WORDS): the shipped LLaVA models' tokenizer.
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", "<image>", *shapes.vocabulary()])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>",
                                  extra_special_tokens={"image_token": "<image>"}, add_bos_token=True,
                                  add_eos_token=False, padding_side="left", model_max_length=512,
                                  clean_up_tokenization_spaces=False, chat_template=LLAVA_CHAT_TEMPLATE)
    square = {"height": IMAGE, "width": IMAGE}
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size=square)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH,
                               vision_feature_select_strategy="default",
                               num_additional_image_tokens=1,  # CLIP's CLS token, dropped by "default"
                               chat_template=LLAVA_CHAT_TEMPLATE, image_token="<image>")
    vision = CLIPVisionConfig(hidden_size=size.vision_hidden, intermediate_size=2 * size.vision_hidden,
                              num_hidden_layers=size.vision_layers, num_attention_heads=2, image_size=IMAGE,
                              patch_size=PATCH, projection_dim=size.vision_hidden)
    text = LlamaConfig(**decoder(size, tok, head_dim=size.head_dim, tie_word_embeddings=False))
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.image_token_id,
                         image_seq_length=(IMAGE // PATCH) ** 2, vision_feature_select_strategy="default",
                         vision_feature_layer=-1,  # the last layer: a 1-layer tower would see only embeddings
                         **ids(tok))
    return seeded(LlavaForConditionalGeneration, config, seed), processor


RECIPES: dict[str, Recipe] = {
    "llava": Recipe("llava", "LlavaForConditionalGeneration (CLIP vision tower + Llama LM)", build_llava),
    "qwen2_vl": Recipe("qwen2_vl", "Qwen2VLForConditionalGeneration (ViT + 2x2 merger + Qwen2 LM, M-RoPE)",
                       build_qwen2_vl, extra_eos=("<|endoftext|>",)),
    "qwen2_5_vl": Recipe("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration (windowed ViT + 2x2 merger + "
                         "Qwen2 LM, M-RoPE)", build_qwen2_5_vl, extra_eos=("<|endoftext|>",),
                         vision_tower="model.visual"),
    "smolvlm": Recipe("smolvlm", "SmolVLMForConditionalGeneration (SigLIP + pixel-shuffle connector + Llama)",
                      build_smolvlm),
    "blip2": Recipe("blip2", "Blip2ForConditionalGeneration (ViT + Q-Former + OPT)", build_blip2),
    "git": Recipe("git", "GitForCausalLM (CLIP ViT features prefixed to a BERT-style decoder)", build_git,
                  bos_attr="cls_token_id", eos_attr="sep_token_id"),
    "paligemma": Recipe("paligemma", "PaliGemmaForConditionalGeneration (SigLIP + Gemma, prefix-LM)",
                        build_paligemma, suffix_fills={"token_type_ids": 1}),
    "florence2": Recipe("florence2", "Florence2ForConditionalGeneration (DaViT + BART encoder-decoder)",
                        build_florence2, encoder_decoder=True),
}
