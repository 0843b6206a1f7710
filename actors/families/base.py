"""What a model family must say about itself, with the behaviour most chat-template VLMs share."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from PIL import Image

MultiImage = Literal["native", "panorama"]


class Family:
    """Adapter for one model family. Subclasses override class attributes and, rarely, a method."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    architectures: ClassVar[tuple[str, ...]] = ()
    auto_class: ClassVar[str] = "AutoModelForImageTextToText"
    # Module-name fragments of the vision side (tower + projector): kept out of LM quantization.
    vision_modules: ClassVar[tuple[str, ...]]
    # Module-name fragments of the language model (for vision-only quantization).
    language_modules: ClassVar[tuple[str, ...]]
    multi_image: ClassVar[MultiImage] = "native"
    vllm_supported: ClassVar[bool] = False
    uses_chat_template: ClassVar[bool] = True
    generation_defaults: ClassVar[dict[str, Any]] = {}

    def format_prompt(self, processor: Any, prompt: str, n_images: int) -> str:
        if not self.uses_chat_template:
            return prompt
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)

    def images_arg(self, images: list[list[Image.Image]]) -> Any:
        """How a batch of per-sample image lists is handed to the processor."""
        if all(len(imgs) == 1 for imgs in images):
            return [imgs[0] for imgs in images]
        return images

    def processor_kwargs(self) -> dict[str, Any]:
        return {}

    def build_inputs(self, processor: Any, prompts: list[str], images: list[list[Image.Image]]) -> Any:
        texts = [self.format_prompt(processor, p, len(imgs)) for p, imgs in zip(prompts, images, strict=True)]
        return processor(
            text=texts,
            images=self.images_arg(images),
            padding=True,
            return_tensors="pt",
            **self.processor_kwargs(),
        )

    def __repr__(self) -> str:
        return f"<family {self.name}>"
