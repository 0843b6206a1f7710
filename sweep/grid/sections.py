"""grid.yaml's sections besides the dataset: models, generation, resources, tracking, energy, scoring and
the search strategy (pydantic models; `sweep.grid.config.GridConfig` puts them together)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from sweep.grid.strict import Strict as _Strict
from sweep.quality.frontier import ObjectiveName


class ModelSpec(_Strict):
    id: str = Field(min_length=1, description="hub id, local path, or tiny:<family> (random weights)")
    name: str | None = Field(default=None, description="short display name; default derived from id")
    family: str | None = Field(default=None, description="override the family detected from config.json")
    revision: str | None = None
    trust_remote_code: bool = Field(
        default=False, description="run code from the model's repository (needed by remote-code families)"
    )
    weights: Literal["real", "dummy"] = Field(
        default="real",
        description="dummy: random weights at the real architecture size, to plan speed and memory "
        "before a download (logged as weights: random, never on a quality Pareto front)",
    )
    loader: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="your own model: 'package.module:function' returning an actors.captioner.Captioner",
    )

    @field_validator("family")
    @classmethod
    def _family_known(cls, v: str | None) -> str | None:
        from actors.registry import known_families

        if v is not None and v not in known_families():
            raise ValueError(f"unknown family '{v}'; known: {', '.join(known_families())}")
        return v

    @model_validator(mode="after")
    def _local_path_exists(self) -> ModelSpec:
        if self.loader or self.is_tiny:
            return self
        looks_local = self.id.startswith(("/", "./", "../", "~")) or self.id.count("/") > 1
        if looks_local and not Path(self.id).expanduser().is_dir():
            raise ValueError(f"id '{self.id}' is not a folder, and not a hub id (a hub id is 'org/name')")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return self.id.rstrip("/").split("/")[-1].removeprefix("tiny:")

    @property
    def is_tiny(self) -> bool:
        return self.id.startswith("tiny:")


class GenerationConfig(_Strict):
    num_beams: list[StrictInt] | None = Field(
        default=None, min_length=1, description="beam widths to sweep; default: the family's (usually 1)"
    )
    do_sample: bool = False
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    min_new_tokens: StrictInt | None = Field(
        default=None, ge=0, description="default: the family's (usually 0)"
    )
    repetition_penalty: float = Field(default=1.0, gt=0)
    share_token_budgets: bool = Field(
        default=True,
        description="greedy one-beam cells that differ only in max_new_tokens are served by one generation "
        "at their largest budget (each smaller budget cut from it, its latency from the decode-step times, "
        "energy apportioned by them); false: every cell generates on its own",
    )

    @field_validator("num_beams")
    @classmethod
    def _beams_positive(cls, v: list[int] | None) -> list[int] | None:
        bad = [b for b in v or [] if b < 1]
        if bad:
            raise ValueError(f"every value must be >= 1, got {bad}")
        return v


class VllmEngineConfig(_Strict):
    """vLLM engine arguments of the grid's vLLM cells (unset: vLLM's own defaults)."""

    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_num_seqs: StrictInt | None = Field(default=None, ge=1)
    max_num_batched_tokens: StrictInt | None = Field(
        default=None, ge=1, description="tokens per engine step: at least the largest image's token count")


class ResourcesConfig(_Strict):
    gpus_per_actor: float = Field(default=1, gt=0, description="GPUs each model actor holds")
    replicas: int = Field(default=1, ge=1, description="actors per cell; images are sharded across them")
    batch_size: StrictInt = Field(default=8, ge=1, description="images per generate() call")
    local_gpus: int | None = Field(
        default=None, ge=1,
        description="logical GPUs of an embedded Ray without CUDA (default: one cell's need: one at a time)",
    )
    cpus_per_decode_task: float = Field(default=0.5, gt=0)
    accelerator_type: str | None = Field(
        default=None, min_length=1,
        description="run model actors only on nodes with this accelerator (Ray's accelerator_type, e.g. L4)",
    )
    gpu_memory_gb: float | None = Field(
        default=None, gt=0,
        description="memory of one GPU for the fit check (default: known from accelerator_type)",
    )
    vllm: VllmEngineConfig = VllmEngineConfig()
    preprocess_in_decode_tasks: StrictBool = Field(
        default=True, description="run the family's processor in the CPU decode tasks where the backend and "
        "family allow it (HF), so the model host only generates; false: on the model host")
    reuse_host_processes: StrictBool = Field(
        default=True, description="a model host process whose model is no longer needed loads the next "
        "model of the same placement in place of a fresh process (HF and user loaders; vLLM always gets a "
        "fresh one); false: a fresh process per load (docs/measurement.md)")


class MeasurementConfig(_Strict):
    """How every cell is measured (`actors.contract.Measurement`; docs/measurement.md)."""

    warmup_batches: StrictInt = Field(
        default=1, ge=0, description="unmeasured generations of each cell's first batch before it (0: none)")
    reset_caches: StrictBool = Field(
        default=True, description="empty the engine's caches (vLLM prefix + multimodal) at each cell's start")


class TrackingConfig(_Strict):
    uri: str | None = Field(default=None, description="MLflow tracking URI; default: sqlite in output_dir")
    experiment: str = "vlm-sweep"


class EnergyConfig(_Strict):
    enabled: bool = True
    country_iso_code: str = Field(default="USA", min_length=3, max_length=3)

    @field_validator("country_iso_code")
    @classmethod
    def _country_known(cls, v: str) -> str:
        known = codecarbon_countries()
        if known is None:  # codecarbon's table is not here: the ISO 3166-1 alpha-3 shape at least
            if not (v.isascii() and v.isalpha() and v.isupper()):
                raise ValueError(f"'{v}' is not an ISO 3166-1 alpha-3 country code (three capital letters, "
                                 "e.g. USA, FRA)")
        elif v not in known:
            raise ValueError(f"unknown country '{v}': not in codecarbon's energy-mix table "
                             "(ISO 3166-1 alpha-3 codes in capitals, e.g. USA, FRA, DEU)")
        return v


def codecarbon_countries() -> frozenset[str] | None:
    """The country codes codecarbon has an energy mix for (its offline table), None if it is absent.
    Read from the file, without importing codecarbon."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("codecarbon")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        table = Path(folder) / "data" / "private_infra" / "global_energy_mix.json"
        try:
            return frozenset(json.loads(table.read_text()))
        except (OSError, ValueError):
            continue
    return None


class ScoringConfig(_Strict):
    document_frequencies: Literal["reference_set", "scored_subset"] = Field(
        default="reference_set",
        description="CIDEr's document frequencies: from every reference of the dataset's captions file "
        "(a cell's CIDEr is the mean of its per-image CIDEr, the same whatever the subset), or from the "
        "scored images' references (pycocoevalcap's classic behaviour, reads higher on small subsets); "
        "video datasets have no captions file and always use scored_subset",
    )


SearchStrategy = Literal["full", "pareto_halving"]
Objective = ObjectiveName  # the costs a sweep trades quality against: `sweep.quality.frontier`


class SearchConfig(_Strict):
    """How much of the dataset each cell sees: all of it (`full`), or Pareto-aware successive halving
    (`pareto_halving`, `sweep.search.halving`): every cell captions the same first images of one seeded order,
    rung by rung, and stops at a rung where another cell beats it with confidence on quality while being
    at least as cheap on every objective."""

    strategy: SearchStrategy = Field(default="full", description="full: every cell sees every image")
    rungs: list[StrictInt] | None = Field(
        default=None, min_length=1,
        description="image counts at which cells are compared (increasing); the whole dataset is always "
        "the last rung; default: first_rung and factor",
    )
    first_rung: StrictInt | None = Field(default=None, ge=2, description="images at the first rung "
                                         "(default: 1/8 of the images, at least 16, when rungs is not given)")
    factor: float = Field(default=2.0, gt=1, description="each rung sees this many times the images of the "
                          "one before")
    objectives: list[Objective] = Field(
        default=["latency", "memory", "energy"], min_length=1,
        description="costs a dominating cell must be at least as cheap on (the quality is CIDEr)",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="level of the paired bootstrap "
                              "interval that must clear zero")
    seed: int = Field(default=0, description="seed of the image order every cell shares")
    synchronous_first_rung: bool = Field(
        default=True, description="every generation reaches the first rung before any goes further (the "
        "others wait, paused), then they go on best first by CIDEr; with memory an objective, a generation "
        "waits only while one still to come may have no more memory; false: fully asynchronous (a cell is "
        "compared only with those that reached its rung before it)")

    @field_validator("rungs")
    @classmethod
    def _rungs_increasing(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if any(n < 2 for n in v):
            raise ValueError(f"every rung must be >= 2 images (a paired interval needs two), got {v}")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"rungs must be strictly increasing, got {v}")
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives_unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({o for o in v if v.count(o) > 1})
        if dupes:
            raise ValueError(f"objectives repeated: {dupes}")
        return v

    @model_validator(mode="after")
    def _one_rung_rule(self) -> SearchConfig:
        if self.rungs is not None and self.first_rung is not None:
            raise ValueError("set either 'rungs' (a list) or 'first_rung' (with 'factor'), not both")
        if self.strategy == "full" and (self.rungs is not None or self.first_rung is not None):
            raise ValueError("rungs/first_rung apply to strategy 'pareto_halving' only")
        return self

