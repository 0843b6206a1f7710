"""A user-style model for the custom-loader path: CLIP vision encoder + linear projection + a Llama
decoder, the shape of model users train themselves. Random weights (deterministic), tiny, CPU-friendly.

grid.yaml:  models: [{id: clip-llama-demo, loader: "examples.custom_clip_llama:build"}]

The loader path is imported on the driver and in every Ray actor: run the sweep from the repository root
(embedded Ray puts the driver's working directory on its workers' path; `ray job submit --working-dir .`
ships it), or put the repository root on PYTHONPATH.
"""

from __future__ import annotations

import torch
from PIL import Image

from actors.captioner import Captioner
from actors.contract import CaptionRequest, CaptionResult, LoadReport

N_IMAGE_TOKENS = 4


class ClipProjectionLlama(torch.nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

        self.vision = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=32, patch_size=16,
        ))
        self.projection = torch.nn.Linear(32, 64)
        self.language = LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
            num_attention_heads=1, num_key_value_heads=1, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        ))

    def image_prefix(self, pixels: torch.Tensor) -> torch.Tensor:
        # the 4 patch tokens (the CLS token is dropped, as LLaVA does)
        return self.projection(self.vision(pixel_values=pixels).last_hidden_state[:, 1 : 1 + N_IMAGE_TOKENS])


def _pixels(images: list[Image.Image]) -> torch.Tensor:
    arrays = [torch.tensor(list(img.convert("RGB").resize((32, 32)).getdata()), dtype=torch.float32)
              for img in images]
    return torch.stack([a.view(32, 32, 3).permute(2, 0, 1) / 255.0 for a in arrays])


class ClipLlamaCaptioner(Captioner):
    def __init__(self, precision: str):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        if dtype is None:
            raise ValueError(f"clip-llama demo supports fp32/fp16/bf16, not {precision}")
        torch.manual_seed(0)
        self.vocab_size = 260  # bytes + specials: a byte-level "tokenizer" needs no files
        self.model = ClipProjectionLlama(self.vocab_size).to(dtype).eval()
        self.report = LoadReport(
            backend="custom", backend_reason="", family="custom", device="cpu", load_seconds=0.0,
            weight_bytes=sum(p.numel() * p.element_size() for p in self.model.parameters()),
            module_precisions={"vision": str(dtype).removeprefix("torch."),
                               "language": str(dtype).removeprefix("torch.")},
            weights="random",
        )

    def generate(self, requests: list[CaptionRequest], generate_kwargs: dict) -> list[CaptionResult]:
        pixels = _pixels([r.images[0] for r in requests]).to(self.model.projection.weight.dtype)
        prefix = self.model.image_prefix(pixels)
        bos = torch.ones((len(requests), 1), dtype=torch.long)
        embeds = torch.cat([prefix, self.model.language.get_input_embeddings()(bos)], dim=1)
        with torch.inference_mode():
            out = self.model.language.generate(
                inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                max_new_tokens=generate_kwargs["max_new_tokens"], do_sample=False, pad_token_id=0,
                eos_token_id=2, min_new_tokens=generate_kwargs["max_new_tokens"],
            )
        letters = "abcdefghijklmnopqrstuvwxyz "
        return [CaptionResult("".join(letters[t % len(letters)] for t in row.tolist()).strip(), len(row))
                for row in out]


def build(model_id: str, precision: str) -> Captioner:
    return ClipLlamaCaptioner(precision)
