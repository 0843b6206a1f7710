"""GIT: image features prefixed inside one transformer; captions start from [CLS], no text prompt."""

from typing import Any

from PIL import Image

from actors.families.base import Family


class GitFamily(Family):
    name = "git"
    architectures = ("GitForCausalLM",)
    vision_modules = ("image_encoder", "visual_projection")
    language_modules = ("git.embeddings", "git.encoder", "output")
    output_head_modules = ("output",)
    multi_image = "panorama"
    uses_chat_template = False

    def build_inputs(self, processor: Any, prompts: list[str], images: list[list[Image.Image]]) -> Any:
        import torch

        images = [self.arrange_images(imgs)[0] for imgs in images]
        inputs = processor(images=images, return_tensors="pt")
        # GIT captions unprompted: generation starts from [CLS] alone (what generate() does without
        # input_ids); passing it explicitly keeps the prompt length known for every family alike.
        cls_id = processor.tokenizer.cls_token_id
        inputs["input_ids"] = torch.full((len(images), 1), cls_id, dtype=torch.long)
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        return inputs


FAMILY = GitFamily()
