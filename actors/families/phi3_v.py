"""Phi-3-vision-128k-instruct and Phi-3.5-vision-instruct (remote code, ``Phi3VForCausalLM``): CLIP
ViT-L/14-336 with HD crops (``vision_embed_tokens``) + the Phi-3-mini decoder.

Prompt, as the model cards write it: the tokenizer's chat template applied to one user message whose content
is ``<|image_1|>\\n<|image_2|>\\n...{prompt}``, i.e.
``<|user|>\\n<|image_1|>\\n{prompt}<|end|>\\n<|assistant|>\\n``.
The remote processor replaces each ``<|image_N|>`` with that image's feature slots.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from actors.contract import CaptionResult
from actors.families.base import ROOT_DECODER, Family


def flash_attn_usable() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


class Phi3VisionFamily(Family):
    name = "phi3_v"
    architectures = ("Phi3VForCausalLM",)
    auto_class = "AutoModelForCausalLM"
    vision_modules = ("vision_embed_tokens",)
    language_modules = ROOT_DECODER
    vllm_supported = True
    requires_remote_code = True
    # HD crops per image (Phi3VImageProcessor.num_crops). The Phi-3.5-vision card: "for best performance, use
    # num_crops=4 for multi-frame, num_crops=16 for single-frame". 16 is also the Phi-3-vision-128k default.
    single_image_crops = 16
    multi_image_crops = 4

    @staticmethod
    def image_placeholders(n_images: int) -> str:
        return "".join(f"<|image_{i}|>\n" for i in range(1, n_images + 1))

    def format_prompt(self, processor: Any, prompt: str, n_images: int) -> str:
        content = self.image_placeholders(n_images) + self.prompt_for(prompt)
        tokenizer = getattr(processor, "tokenizer", processor)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template every Phi-3(.5)-vision tokenizer ships, written out.
        return f"<|user|>\n{content}<|end|>\n<|assistant|>\n"

    def load_model(self, path: str, common: dict[str, Any], precision_kwargs: dict[str, Any]) -> Any:
        import transformers

        # The cards load with flash_attention_2 and say to use 'eager' where flash_attn is not installed.
        attn = "flash_attention_2" if flash_attn_usable() else "eager"
        return transformers.AutoModelForCausalLM.from_pretrained(
            path, **common, **precision_kwargs, attn_implementation=attn
        )

    def set_crops(self, processor: Any, n_images: int) -> None:
        image_processor = getattr(processor, "image_processor", None)
        if image_processor is not None and hasattr(image_processor, "num_crops"):
            image_processor.num_crops = self.single_image_crops if n_images == 1 else self.multi_image_crops

    def generate(self, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
                 generate_kwargs: dict[str, Any], device: Any) -> list[Any]:
        """One sample per model call. The remote ``Phi3VProcessor`` takes a single prompt string (it splits
        that one string on the ``<|image_N|>`` tags and numbers the images within it), so a batch cannot be
        tokenized in one processor call; each sample is processed and generated on its own."""
        import torch

        from actors.generation import cast_floats, count_generated, eos_and_pad

        tokenizer = getattr(processor, "tokenizer", processor)
        eos_ids, pad_id = eos_and_pad(model, tokenizer)
        # The cards stop on tokenizer.eos_token_id (<|endoftext|>); a chat turn ends with <|end|> first.
        end_id = tokenizer.convert_tokens_to_ids("<|end|>")
        if isinstance(end_id, int) and end_id != getattr(tokenizer, "unk_token_id", None):
            eos_ids.add(end_id)
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        kwargs = {"eos_token_id": sorted(eos_ids), "pad_token_id": pad_id, **generate_kwargs}
        results = []
        for prompt, sample_images in zip(prompts, images, strict=True):
            sample_images = self.arrange_images(sample_images)
            self.set_crops(processor, len(sample_images))
            text = self.format_prompt(processor, prompt, len(sample_images))
            inputs = cast_floats(processor(text, sample_images, return_tensors="pt").to(device), model)
            with torch.inference_mode():
                out = model.generate(**inputs, **kwargs)
            out = out[:, inputs["input_ids"].shape[1]:]
            caption = tokenizer.batch_decode(
                out, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )[0]
            results.append(CaptionResult(caption.strip(), count_generated(out, eos_ids)[0]))
        return results


FAMILY = Phi3VisionFamily()
