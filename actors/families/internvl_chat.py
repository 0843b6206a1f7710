"""InternVL2 / InternVL2.5, original remote-code checkpoints (``InternVLChatModel``, e.g.
OpenGVLab/InternVL2-2B): InternViT + pixel-shuffle MLP (``mlp1``) + an InternLM2/Qwen2 chat LM.

There is no processor: images are tiled here the way the model card describes (448-px tiles on the grid whose
aspect ratio best matches the image, at most ``max_tiles`` of them, plus a 448-px thumbnail of the whole image
when there is more than one tile; ImageNet mean/std) and the model's own ``batch_chat`` / ``chat`` build the
conversation and expand each ``<image>`` into ``<img><IMG_CONTEXT>...</img>``.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from actors.contract import CaptionResult
from actors.families.base import Family

TILE = 448
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tile_grid(width: int, height: int, max_num: int, min_num: int = 1, tile: int = TILE) -> tuple[int, int]:
    """(columns, rows) of the tile grid for an image: the grid with the closest aspect ratio among those with
    min_num..max_num tiles; on a tie the larger grid wins when the image has more than half its pixels."""
    grids = sorted(
        {(c, r) for c in range(1, max_num + 1) for r in range(1, max_num + 1) if min_num <= c * r <= max_num},
        key=lambda g: g[0] * g[1],
    )
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * cols * rows:
            best = (cols, rows)
    return best


def tiles(image: Image.Image, max_num: int, tile: int = TILE, thumbnail: bool = True) -> list[Image.Image]:
    """The image resized onto its tile grid and cut row by row, plus the thumbnail when there are several."""
    image = image.convert("RGB")
    cols, rows = tile_grid(image.width, image.height, max_num, tile=tile)
    resized = image.resize((cols * tile, rows * tile), Image.Resampling.BICUBIC)
    out = [
        resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
        for r in range(rows)
        for c in range(cols)
    ]
    if thumbnail and len(out) > 1:
        out.append(image.resize((tile, tile), Image.Resampling.BICUBIC))
    return out


def pixel_values(image: Image.Image, max_num: int, tile: int = TILE) -> Any:
    """(n_tiles, 3, tile, tile) float tensor, ImageNet-normalised."""
    import numpy as np
    import torch

    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    arrays = []
    for t in tiles(image, max_num, tile):
        if t.size != (tile, tile):
            t = t.resize((tile, tile), Image.Resampling.BICUBIC)
        arrays.append(((np.asarray(t, dtype=np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


class InternVLChatFamily(Family):
    name = "internvl_chat"
    architectures = ("InternVLChatModel",)
    auto_class = "AutoModel"
    vision_modules = ("vision_model", "mlp1")
    vllm_supported = True
    requires_remote_code = True
    uses_chat_template = False  # the model's chat()/batch_chat() apply its own conversation template
    max_tiles = 12  # the cards' load_image(..., max_num=12), for single and multi-image prompts alike

    def format_prompt(self, processor: Any, prompt: str, n_images: int) -> str:
        """The question handed to chat()/batch_chat(), which wrap it in the model's conversation template."""
        prompt = self.prompt_for(prompt)
        if n_images == 1:
            return f"<image>\n{prompt}"
        return "".join(f"Image-{i}: <image>\n" for i in range(1, n_images + 1)) + prompt

    def load_processor(self, path: str, common: dict[str, Any]) -> Any:
        import transformers

        # The cards load the slow tokenizer; there is no AutoProcessor for these checkpoints.
        return transformers.AutoTokenizer.from_pretrained(path, **common, use_fast=False)

    def generate(self, model: Any, processor: Any, prompts: list[str], images: list[list[Image.Image]],
                 generate_kwargs: dict[str, Any], device: Any) -> list[Any]:
        """Single-image samples go through one ``batch_chat`` call (left-padded batch, as the card shows);
        ``batch_chat`` expands only the first ``<image>`` of a question, so a multi-image sample goes through
        ``chat`` with one ``num_patches_list`` entry per image, one call per such sample."""
        import torch

        tokenizer = processor
        dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32)
        per_sample = [
            [pixel_values(img, self.max_tiles) for img in self.arrange_images(imgs)] for imgs in images
        ]
        questions = [
            self.format_prompt(tokenizer, p, len(pv)) for p, pv in zip(prompts, per_sample, strict=True)
        ]
        captions: list[str | None] = [None] * len(prompts)

        single = [i for i, pv in enumerate(per_sample) if len(pv) == 1]
        if single:
            with torch.inference_mode():
                answers = model.batch_chat(
                    tokenizer,
                    torch.cat([per_sample[i][0] for i in single]).to(device=device, dtype=dtype),
                    num_patches_list=[per_sample[i][0].shape[0] for i in single],
                    questions=[questions[i] for i in single],
                    generation_config=dict(generate_kwargs),  # batch_chat writes eos_token_id into it
                )
            for i, answer in zip(single, answers, strict=True):
                captions[i] = answer
        for i, pv in enumerate(per_sample):
            if len(pv) == 1:
                continue
            with torch.inference_mode():
                captions[i] = model.chat(
                    tokenizer,
                    torch.cat(pv).to(device=device, dtype=dtype),
                    questions[i],
                    dict(generate_kwargs),
                    num_patches_list=[t.shape[0] for t in pv],
                )
        return [self.result(tokenizer, c or "", generate_kwargs) for c in captions]

    @staticmethod
    def result(tokenizer: Any, caption: str, generate_kwargs: dict[str, Any]) -> Any:
        """chat()/batch_chat() return text only, so generated tokens are counted by re-tokenizing that text
        (an estimate: decoding and re-encoding need not give back the same ids), plus the end-of-turn token
        when the text stopped short of max_new_tokens, as count_generated counts it."""

        caption = caption.strip()
        n = len(tokenizer(caption, add_special_tokens=False)["input_ids"]) if caption else 0
        limit = generate_kwargs.get("max_new_tokens")
        if limit is not None:
            n = min(n + 1, limit) if n < limit else limit
        return CaptionResult(caption, n)


FAMILY = InternVLChatFamily()
