"""Phi-4-multimodal (native transformers port, ``Phi4MultimodalForCausalLM``): SigLIP vision tower + MLP
projector (``image_embed``), a Conformer audio encoder (``audio_embed``, unused here) and a Phi-4-mini decoder
that takes vision through a LoRA adapter (``vision-lora/`` in the checkpoint).

Only the native checkpoint format (config model_type "phi4_multimodal") is handled; the remote-code format
(model_type "phi4mm", ``Phi4MMForCausalLM``) is a different loader and is not covered by this family.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from actors.families.base import ROOT_DECODER, Family

log = logging.getLogger(__name__)

VISION_LORA = "vision-lora"  # subfolder of the checkpoint holding the vision LoRA of the decoder


class Phi4MultimodalFamily(Family):
    name = "phi4_mm"
    model_types = ("phi4_multimodal",)
    architectures = ("Phi4MultimodalForCausalLM",)
    auto_class = "AutoModelForCausalLM"
    # model.embed_tokens_extend.image_embed = vision tower (img_processor) + projector (img_projection_*).
    # The audio encoder (embed_tokens_extend.audio_embed) is on neither side: it never runs for captioning.
    vision_modules = ("image_embed",)
    # module_matches anchors whole name parts, so "model.embed_tokens" does not match "embed_tokens_extend".
    language_modules = ROOT_DECODER
    vllm_supported = True

    def format_prompt(self, processor: Any, prompt: str, n_images: int) -> str:
        """Phi-4 chat format: ``<|user|>`` + one image token per image + prompt + ``<|end|><|assistant|>``.

        The model card writes images as ``<|image_1|>``, ``<|image_2|>``... (the remote-code processor's
        placeholders); the native processor instead expands one fixed token, ``tokenizer.image_token``, per
        image, so that is what goes into the prompt. The processor's chat template is used when it has one:
        in transformers 5.23 ``Phi4MultimodalProcessor.from_pretrained`` drops the saved template (its
        ``__init__`` has no ``chat_template`` parameter), so the format is written out here as a fallback.
        """
        prompt = self.prompt_for(prompt)
        if getattr(processor, "chat_template", None):
            return super().format_prompt(processor, prompt, n_images)
        image_token = getattr(processor, "image_token", None) or "<|image|>"
        return f"<|user|>{image_token * n_images}{prompt}<|end|><|assistant|>"

    def load_model(self, path: str, common: dict[str, Any], precision_kwargs: dict[str, Any]) -> Any:
        model = super().load_model(path, common, precision_kwargs)
        self._fix_vision_attention(model)
        if _has_vision_lora(path, common.get("revision")):
            try:
                import peft  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    f"{path} has a '{VISION_LORA}' adapter (Phi-4-multimodal reads images through it); "
                    "loading it needs the 'peft' package: pip install peft"
                ) from exc
            model.load_adapter(
                path,
                adapter_name="vision",
                adapter_kwargs={"subfolder": VISION_LORA, "revision": common.get("revision")},
            )
            model.set_adapter("vision")
        return model

    @staticmethod
    def _fix_vision_attention(model: Any) -> None:
        """The vision tower is SigLIP, which attends bidirectionally, but transformers 5.23 marks
        ``Phi4MultimodalVisionAttention.is_causal = True``. SDPA honours that flag only when no attention
        mask is passed, i.e. when every crop of every image in the call is unpadded; otherwise a padding mask
        makes attention bidirectional. Left alone, an image's features would depend on which other images
        share its batch (and be causal for well-fitting images). Bidirectional is what the model was trained
        with, so force it everywhere."""
        for module in model.modules():
            if type(module).__name__ == "Phi4MultimodalVisionAttention":
                module.is_causal = False


def _has_vision_lora(path: str, revision: str | None) -> bool:
    marker = f"{VISION_LORA}/adapter_config.json"
    local = Path(path)
    if local.is_dir():
        return (local / marker).is_file()
    from huggingface_hub import file_exists, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, marker, revision=revision), str):
        return True
    try:
        return file_exists(path, marker, revision=revision)
    except Exception as exc:  # offline and not cached: the base weights still load
        log.warning("could not check %s for a %s adapter (%s); loading without it", path, VISION_LORA, exc)
        return False


FAMILY = Phi4MultimodalFamily()
