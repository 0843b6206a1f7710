"""Toy model zoo: a synthetic captioning dataset and tiny captioners trained on it, on CPU, in minutes.

``python -m zoo.trainer data --out DIR`` writes the dataset (COCO captions format);
``python -m zoo.trainer train-zoo NAME`` retrains one zoo model (``catalog.ZOO``: LLaVA small and base,
Qwen2-VL, SmolVLM, BLIP-2, GIT, PaliGemma, Florence-2) through one loop (``loop``) and a per-family part
(``families``); ``python -m zoo.trainer train`` retrains the quickstart's two LLaVA models.
The models are toys: they caption coloured shapes on plain backgrounds and nothing else.
"""
