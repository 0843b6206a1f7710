"""Toy model zoo: a synthetic captioning dataset and tiny captioners trained on it, on CPU, in minutes.

``python -m zoo.trainer data --out DIR`` writes the dataset (COCO captions format);
``python -m zoo.trainer train`` retrains ``zoo/shapes-llava-small`` and ``zoo/shapes-llava-base``.
The models are toys: they caption coloured shapes on plain backgrounds and nothing else.
"""
