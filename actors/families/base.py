"""What a model family must say about itself, with the behaviour most chat-template VLMs share."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from PIL import Image

from actors.contract import CaptionResult
from actors.generation import Generation, generate_grouped
from actors.length_groups import DEFAULT_SLACK

MultiImage = Literal["native", "panorama"]
# The vision side of the LLaVA layout: a vision tower and a projector into the language model.
LLAVA_VISION = ("vision_tower", "multi_modal_projector")
# A causal LM whose decoder sits at the model's root (`model.*`), the vision encoder beside it: the layout
# of the Phi-3-vision, Phi-4-multimodal and MobileLLaMA ports.
ROOT_DECODER = ("model.layers", "model.embed_tokens", "model.norm")


def panorama(images: list[Image.Image], height: int | None = None) -> Image.Image:
    """Side-by-side strip of the images at one height, for families that take one image per prompt."""
    if len(images) == 1:
        return images[0]
    height = height or min(img.height for img in images)
    resized = [img.resize((max(1, round(img.width * height / img.height)), height)) for img in images]
    strip = Image.new("RGB", (sum(img.width for img in resized), height))
    x = 0
    for img in resized:
        strip.paste(img, (x, 0))
        x += img.width
    return strip


def module_matches(name: str, fragment: str) -> bool:
    """`fragment` (one or more dotted name parts) names this module or one of its ancestors."""
    return re.search(rf"(^|\.){re.escape(fragment)}(\.|$)", name) is not None


class Family:
    """Adapter for one model family. Subclasses override class attributes and, rarely, a method."""

    name: ClassVar[str]
    # config.json's model_type(s); a family that does not set them is named after its model_type
    # (`__init_subclass__`).
    model_types: ClassVar[tuple[str, ...]]
    architectures: ClassVar[tuple[str, ...]] = ()
    auto_class: ClassVar[str] = "AutoModelForImageTextToText"
    # Module-name fragments of the vision side (tower + projector/connector); by default the LLaVA layout
    # that transformers' native VLM ports share.
    vision_modules: ClassVar[tuple[str, ...]] = LLAVA_VISION
    # Module-name fragments of the language model (lm_head is always treated as language); by default the
    # wrapper's `language_model`, as in transformers' *ForConditionalGeneration classes.
    language_modules: ClassVar[tuple[str, ...]] = ("language_model",)
    # The vocabulary projection when it is not called lm_head: kept in float under bitsandbytes, as
    # transformers keeps lm_head (bitsandbytes' packed AVX512-BF16 CPU kernel also needs out_features % 32
    # == 0, which vocabularies such as GIT's 30522 are not).
    output_head_modules: ClassVar[tuple[str, ...]] = ()
    multi_image: ClassVar[MultiImage] = "native"
    vllm_supported: ClassVar[bool] = False
    requires_remote_code: ClassVar[bool] = False
    uses_chat_template: ClassVar[bool] = True
    # Plain-prompt families: the text around the grid's prompt.
    plain_template: ClassVar[str] = "{prompt}"
    # Task-token families (Florence-2, PaliGemma): this prompt replaces natural-language grid prompts,
    # unless the grid prompt already starts with one of `task_prefixes`.
    task_prompt: ClassVar[str | None] = None
    task_prefixes: ClassVar[tuple[str, ...]] = ()
    # Applied under the cell's own settings: a grid value always wins.
    generation_defaults: ClassVar[dict[str, Any]] = {}
    # Token-budget sharing: the smaller max_new_tokens of a greedy cell are cut from one generation, timed by
    # its decode steps (`generate_budgets`). False where `generate` is the family's own (remote code, one
    # call per sample, text-only outputs): the host then generates each budget on its own. A subclass that
    # overrides `generate` without saying otherwise is marked False (`__init_subclass__`).
    shares_token_budgets: ClassVar[bool] = True
    # Requests of one call grouped by prompt length before generate() (`actors.length_groups`): a group
    # splits off where a prompt is more than this fraction longer than the group's shortest; None: one
    # generate() per call, however the lengths differ.
    length_group_slack: ClassVar[float | None] = DEFAULT_SLACK
    # The processor can run in the decode tasks (`actors.prepare`): `build_inputs` on one sample at a time
    # with a processor loaded without the weights, the host padding the batch (`generate_prepared`). False
    # where `generate` is the family's own (it needs the PIL images); a subclass that overrides `generate`
    # without saying otherwise is marked False (`__init_subclass__`).
    prepares_off_host: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "model_types" not in cls.__dict__:
            cls.model_types = (cls.name,)
        if "generate" in cls.__dict__ and "shares_token_budgets" not in cls.__dict__:
            cls.shares_token_budgets = False
        if "generate" in cls.__dict__ and "prepares_off_host" not in cls.__dict__:
            cls.prepares_off_host = False

    def prompt_for(self, grid_prompt: str) -> str:
        if self.task_prompt is None or grid_prompt.startswith(self.task_prefixes or (self.task_prompt,)):
            return grid_prompt
        return self.task_prompt

    def format_prompt(self, processor: Any, prompt: str, n_images: int) -> str:
        prompt = self.prompt_for(prompt)
        if not self.uses_chat_template:
            return self.plain_template.format(prompt=prompt)
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)

    def arrange_images(self, images: list[Image.Image]) -> list[Image.Image]:
        """The images one prompt carries: all of them natively, or one panorama."""
        if self.multi_image == "panorama" and len(images) > 1:
            return [panorama(images)]
        return images

    def images_arg(self, images: list[list[Image.Image]]) -> Any:
        """How a batch of per-sample image lists is handed to the processor."""
        if all(len(imgs) == 1 for imgs in images):
            return [imgs[0] for imgs in images]
        return images

    def processor_kwargs(self) -> dict[str, Any]:
        return {}

    def build_inputs(self, processor: Any, prompts: list[str], images: list[list[Image.Image]]) -> Any:
        images = [self.arrange_images(imgs) for imgs in images]
        texts = [self.format_prompt(processor, p, len(imgs)) for p, imgs in zip(prompts, images, strict=True)]
        return processor(
            text=texts,
            images=self.images_arg(images),
            padding=True,
            return_tensors="pt",
            **self.processor_kwargs(),
        )

    def load_processor(self, path: str, common: dict[str, Any]) -> Any:
        import transformers

        processor = transformers.AutoProcessor.from_pretrained(path, **common)
        getattr(processor, "tokenizer", processor).padding_side = "left"  # batched decoder-only generation
        return processor

    def load_model(self, path: str, common: dict[str, Any], precision_kwargs: dict[str, Any]) -> Any:
        import transformers

        return getattr(transformers, self.auto_class).from_pretrained(path, **common, **precision_kwargs)

    def generate(self, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
                 generate_kwargs: dict[str, Any], device: Any) -> list[CaptionResult]:
        """Caption a batch; returns one CaptionResult per prompt, in order."""
        return generate_grouped(self, model, processor, prompts, images, generate_kwargs, device,
                                slack=self.length_group_slack).results

    def generate_budgets(self, model: Any, processor: Any, prompts: list[str],
                         images: list[list[Image.Image]], generate_kwargs: dict[str, Any], device: Any,
                         budgets: tuple[int, ...]) -> Generation:
        """One generation at the kwargs' max_new_tokens with every budget of `budgets` cut from it (only
        called when `shares_token_budgets` and the settings allow it: greedy, one beam)."""
        return generate_grouped(self, model, processor, prompts, images, generate_kwargs, device, budgets,
                                slack=self.length_group_slack)

    def generate_prepared(self, model: Any, processor: Any, prepared: list[dict[str, Any]],
                          generate_kwargs: dict[str, Any], device: Any, budgets: tuple[int, ...] = ()
                          ) -> Generation:
        """`generate_budgets` for requests whose processor ran in a decode task (`prepares_off_host`)."""
        return generate_grouped(self, model, processor, [], [], generate_kwargs, device, budgets,
                                slack=self.length_group_slack, prepared=prepared)

    def describe(self) -> dict[str, Any]:
        """What the family does, for logs and the dry-run plan."""
        return {
            "family": self.name,
            "multi_image": self.multi_image,
            "prompt_style": "chat_template" if self.uses_chat_template else "plain",
            "vllm_supported": self.vllm_supported,
            "requires_remote_code": self.requires_remote_code,
            "shares_token_budgets": self.shares_token_budgets,
            "prepares_off_host": self.prepares_off_host,
        }

    def __repr__(self) -> str:
        return f"<family {self.name}>"
