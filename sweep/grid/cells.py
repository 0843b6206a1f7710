"""Expand a grid into cells: one model at one precision with one generation budget and prompt."""

from __future__ import annotations

import hashlib
import itertools
import json

from pydantic import BaseModel, ConfigDict

from actors.contract import GenerationSettings, LoadSpec, Measurement, ModelRef
from sweep.grid.config import Backend, GridConfig, ModelSpec, Precision


class Cell(BaseModel):
    """Everything one trial needs to caption the dataset; plain data so it crosses Ray boundaries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelSpec
    precision: Precision
    max_new_tokens: int
    prompt: str
    num_beams: int | None  # None: the family's default
    do_sample: bool
    temperature: float
    top_p: float
    min_new_tokens: int | None
    repetition_penalty: float
    backend: Backend
    batch_size: int
    gpus_per_actor: float
    replicas: int
    dataset_fingerprint: str
    # "p2": the prompt's place in a grid of several prompts (the labels tell such cells apart), "" with one
    prompt_tag: str = ""
    warmup_batches: int = 1  # grid `measurement`: how the cell is measured, not what it captions
    reset_caches: bool = True
    vllm_engine: tuple[tuple[str, float], ...] = ()  # grid `resources.vllm`, set arguments only

    def caption_key(self) -> dict:
        """The fields that change a caption (batching, placement, the prompt's tag and measurement do
        not)."""
        return self.model_dump(
            mode="json",
            exclude={"batch_size", "gpus_per_actor", "replicas", "prompt_tag", "warmup_batches",
                     "reset_caches", "vllm_engine"},
        )

    @property
    def cell_id(self) -> str:
        canonical = json.dumps(self.caption_key(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        beams = f" beams={self.num_beams}" if self.num_beams and self.num_beams > 1 else ""
        tag = f"/{self.prompt_tag}" if self.prompt_tag else ""
        return f"{self.model.display_name}/{self.precision}/t{self.max_new_tokens}{tag}{beams}"

    def load_spec(self) -> LoadSpec:
        """What the model hosts load for this cell (cells with equal specs share one load)."""
        m = self.model
        ref = ModelRef(id=m.id, family=m.family, revision=m.revision, trust_remote_code=m.trust_remote_code,
                       weights=m.weights, loader=m.loader)
        return LoadSpec(
            model=ref,
            precision=self.precision,
            backend=self.backend,
            gpus_per_actor=self.gpus_per_actor,
            replicas=self.replicas,
            vllm_engine=self.vllm_engine,
        )

    def measurement(self) -> Measurement:
        return Measurement(warmup_batches=self.warmup_batches, reset_caches=self.reset_caches)

    def generation(self) -> GenerationSettings:
        return GenerationSettings(
            prompt=self.prompt, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
            do_sample=self.do_sample, temperature=self.temperature, top_p=self.top_p,
            min_new_tokens=self.min_new_tokens, repetition_penalty=self.repetition_penalty,
        )


def expand_cells(grid: GridConfig, dataset_fingerprint: str) -> list[Cell]:
    """All combinations, in grid order; duplicates (same caption key) collapse to one cell."""
    cells: dict[str, Cell] = {}
    combos = itertools.product(
        grid.models, grid.precisions, grid.max_new_tokens, grid.prompts, grid.generation.num_beams or [None]
    )
    for model, precision, tokens, prompt, beams in combos:
        cell = Cell(
            model=model,
            precision=precision,
            max_new_tokens=tokens,
            prompt=prompt,
            num_beams=beams,
            do_sample=grid.generation.do_sample,
            temperature=grid.generation.temperature,
            top_p=grid.generation.top_p,
            min_new_tokens=None if grid.generation.min_new_tokens is None
            else min(grid.generation.min_new_tokens, tokens),
            repetition_penalty=grid.generation.repetition_penalty,
            backend=grid.backend,
            batch_size=grid.resources.batch_size,
            gpus_per_actor=grid.resources.gpus_per_actor,
            replicas=grid.resources.replicas,
            dataset_fingerprint=dataset_fingerprint,
            warmup_batches=grid.measurement.warmup_batches,
            reset_caches=grid.measurement.reset_caches,
            vllm_engine=tuple(sorted(grid.resources.vllm.model_dump(exclude_none=True).items())),
            prompt_tag=prompt_tag(grid.prompts, prompt),
        )
        cells.setdefault(cell.cell_id, cell)
    return list(cells.values())


def prompt_tag(prompts: list[str], prompt: str) -> str:
    """`p<n>` (1-based, the grid's order) when the grid has several prompts, else ""."""
    distinct = list(dict.fromkeys(prompts))
    return f"p{distinct.index(prompt) + 1}" if len(distinct) > 1 else ""


def prompt_legend(cells: list[Cell]) -> list[str]:
    """One line per prompt tag of the cells (`p2 = "Describe ..."`), none when the grid has one prompt."""
    tags = {c.prompt_tag: c.prompt for c in cells if c.prompt_tag}
    return [f"  {tag} = {prompt!r}" for tag, prompt in sorted(tags.items(), key=lambda kv: int(kv[0][1:]))]
