"""DeepSeek-VL v1, original checkpoints (deepseek-ai/deepseek-vl-1.3b-chat, 7b-chat; config model_type
"multi_modality", ``MultiModalityCausalLM``): SigLIP (+ SAM for 7B) vision + MLP aligner + DeepSeek LLM.

Needs the authors' ``deepseek_vl`` package (``VLChatProcessor``, ``MultiModalityCausalLM``) from
https://github.com/deepseek-ai/DeepSeek-VL; importing it registers the "multi_modality" config with
``AutoModelForCausalLM``. (The native transformers port of the same weights is the ``deepseek_vl`` family.)

Prompt: the authors' "deepseek" conversation with the processor's system prompt, as their card's example gives
it to ``VLChatProcessor``: ``{system}\\n\\nUser: <image_placeholder>{prompt}\\n\\nAssistant:``; several images
follow the processor's documented multi-image form, ``<image_placeholder> is Figure 1.\\n...``.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from actors.contract import CaptionResult
from actors.families.base import Family

AUTHORS_REPO = "https://github.com/deepseek-ai/DeepSeek-VL"
# VLChatProcessor.system_prompt, which the processor puts before every conversation.
SYSTEM = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
IMAGE_TAG = "<image_placeholder>"


def authors_package() -> Any:
    """``deepseek_vl.models`` (VLChatProcessor, MultiModalityCausalLM), or an ImportError saying what to
    install."""
    try:
        import deepseek_vl.models as models
    except ImportError as exc:
        raise ImportError(
            "DeepSeek-VL v1 checkpoints need the authors' 'deepseek_vl' package (VLChatProcessor, "
            f"MultiModalityCausalLM): pip install git+{AUTHORS_REPO} on every worker. Import failed: {exc}"
        ) from exc
    return models


class DeepseekVLV1Family(Family):
    name = "deepseek_vl_v1"
    model_types = ("multi_modality",)
    architectures = ("MultiModalityCausalLM",)
    auto_class = "AutoModelForCausalLM"
    vision_modules = ("vision_model", "aligner")
    requires_remote_code = True
    uses_chat_template = False

    def user_content(self, prompt: str, n_images: int) -> str:
        prompt = self.prompt_for(prompt)
        if n_images == 1:
            return f"{IMAGE_TAG}{prompt}"
        return "".join(f"{IMAGE_TAG} is Figure {i}.\n" for i in range(1, n_images + 1)) + prompt

    def conversation(self, prompt: str, n_images: int) -> list[dict[str, str]]:
        """The conversation list VLChatProcessor takes (images are passed to it separately)."""
        return [
            {"role": "User", "content": self.user_content(prompt, n_images)},
            {"role": "Assistant", "content": ""},
        ]

    def format_prompt(self, processor: Any, prompt: str, n_images: int) -> str:
        """The text VLChatProcessor renders from ``conversation()``, written out (for logs and tests)."""
        return f"{SYSTEM}\n\nUser: {self.user_content(prompt, n_images)}\n\nAssistant:"

    def load_processor(self, path: str, common: dict[str, Any]) -> Any:
        models = authors_package()
        return models.VLChatProcessor.from_pretrained(path, revision=common.get("revision"))

    def load_model(self, path: str, common: dict[str, Any], precision_kwargs: dict[str, Any]) -> Any:
        authors_package()  # registers "multi_modality" with the Auto classes
        return super().load_model(path, common, precision_kwargs)

    def generate(self, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
                 generate_kwargs: dict[str, Any], device: Any) -> list[Any]:
        """Batched as the authors' code allows: one ``process_one`` per sample, ``batchify`` (left padding),
        ``prepare_inputs_embeds`` and one ``language_model.generate`` over the embeddings, whose output holds
        only the new tokens."""
        import torch

        from actors.generation import count_generated

        tokenizer = processor.tokenizer
        dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32)
        prepared = []
        for prompt, sample_images in zip(prompts, images, strict=True):
            sample_images = self.arrange_images(sample_images)
            prepared.append(processor.process_one(
                conversations=self.conversation(prompt, len(sample_images)), images=sample_images
            ))
        batch = processor.batchify(prepared).to(device, dtype=dtype)
        kwargs = {"pad_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id,
                  "eos_token_id": tokenizer.eos_token_id, "use_cache": True, **generate_kwargs}
        with torch.inference_mode():
            embeds = model.prepare_inputs_embeds(**batch)
            out = model.language_model.generate(
                inputs_embeds=embeds, attention_mask=batch.attention_mask, **kwargs
            )
        captions = tokenizer.batch_decode(out, skip_special_tokens=True)
        counts = count_generated(out, {tokenizer.eos_token_id})
        return [CaptionResult(c.strip(), n) for c, n in zip(captions, counts, strict=True)]


FAMILY = DeepseekVLV1Family()
