"""grid.yaml: the validated description of a sweep.

Everything is checked before any Ray work starts, and every problem is reported at once with the
dotted path of the field it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from actors.contract import BackendName as Backend
from actors.contract import Precision
from sweep.quality.frontier import ObjectiveName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSubsetConfig(_Strict):
    """What every image dataset kind (coco, hf, karpathy) shares: which images, and how they are decoded."""

    limit: int | None = Field(default=None, ge=1, description="use at most this many images")
    seed: int = Field(default=0, description="seed of the image subset when limit is set")
    subset: Literal["random", "first"] = Field(
        default="random", description="with limit: a seeded random subset, or the first images of the file"
    )
    image_max_side: int = Field(default=448, ge=16, le=4096, description="resize so the longer side fits")
    max_image_pixels: StrictInt | None = Field(
        default=89_478_485, ge=1,
        description="an image with more pixels (read from its header, before decoding) becomes an error row, "
        "not a decompression bomb; default PIL's limit; null: no limit",
    )


class DatasetConfig(ImageSubsetConfig):
    kind: Literal["coco"] = "coco"
    captions: Path = Field(description="COCO captions json (captions_val2017.json format)")
    images: Path = Field(description="folder holding the images named in the json")

    @field_validator("captions")
    @classmethod
    def _captions_exist(cls, v: Path) -> Path:
        if not v.is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @field_validator("images")
    @classmethod
    def _images_exist(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"folder not found: {v}")
        return v


class HFDatasetConfig(ImageSubsetConfig):
    """A Hugging Face `datasets` dataset, read offline: a hub id already in the local cache, a folder
    (`save_to_disk`, or data files), or parquet file(s). Defaults: lmms-lab's captioning layout."""

    kind: Literal["hf"]
    path: str = Field(min_length=1, description="hub id (from the local cache, offline), a local folder, or "
                      "a parquet file / glob of parquet files")
    split: str = Field(default="test", min_length=1, description="the split to caption")
    image_column: str = Field(default="image", min_length=1, description="column of the Image feature")
    references_column: str = Field(default="answer", min_length=1,
                                   description="column of the reference captions (a list of strings, or one)")
    id_column: str | None = Field(default="question_id", description="column of the sample id (an integer, "
                                  "or a name like 000000397133.jpg whose digits are the image id); null: "
                                  "the row number")
    cache_dir: Path | None = Field(default=None, description="where `datasets` keeps its Arrow files "
                                   "(default: $HF_DATASETS_CACHE)")


class KarpathyDatasetConfig(ImageSubsetConfig):
    """A Karpathy split file (dataset_coco.json, dataset_flickr30k.json): `images[]` with `filename`,
    optional `filepath`, `split`, `sentences[].raw`, and `cocoid` or `imgid`."""

    kind: Literal["karpathy"]
    split_file: Path = Field(description="the Karpathy json (e.g. dataset_coco.json)")
    images: Path = Field(description="images root: <images>/<filepath>/<filename>")
    split: Literal["test", "val", "train", "restval"] = Field(default="test", description="which split")

    @field_validator("split_file")
    @classmethod
    def _split_file_exists(cls, v: Path) -> Path:
        if not v.is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @field_validator("images")
    @classmethod
    def _images_exist(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"folder not found: {v}")
        return v


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class SceneDetectionConfig(_Strict):
    detector: Literal["content", "adaptive"] = "content"
    threshold: float = Field(default=27.0, gt=0, description="PySceneDetect threshold of that detector")
    min_scene_seconds: float = Field(default=0.5, ge=0, description="shorter scenes merge into the next")


class FrameSamplingConfig(_Strict):
    strategy: Literal["start_middle", "uniform", "middle"] = Field(
        default="start_middle", description="which frames of each scene the model sees"
    )
    n_frames: int = Field(default=4, ge=1, le=32, description="frames per scene for 'uniform'")


class VideoDatasetConfig(_Strict):
    kind: Literal["video"]
    videos: Path | None = Field(default=None, description="folder of video files")
    manifest: Path | None = Field(
        default=None, description="yaml/json list of {path, id?, captions?: [[refs of scene 0], ...]}"
    )
    limit: int | None = Field(default=None, ge=1, description="use at most this many videos")
    scenes: SceneDetectionConfig = SceneDetectionConfig()
    frames: FrameSamplingConfig = FrameSamplingConfig()
    image_max_side: int = Field(default=448, ge=16, le=4096, description="resize frames to fit this side")

    @field_validator("videos")
    @classmethod
    def _folder_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"folder not found: {v}")
        return v

    @field_validator("manifest")
    @classmethod
    def _manifest_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> VideoDatasetConfig:
        if (self.videos is None) == (self.manifest is None):
            raise ValueError("set exactly one of 'videos' (a folder) or 'manifest' (a file)")
        return self


def _dataset_kind(value: Any) -> str:
    kind = value.get("kind", "coco") if isinstance(value, dict) else getattr(value, "kind", "coco")
    return kind if kind in DATASET_KINDS else "coco"


DATASET_KINDS = ("coco", "video", "hf", "karpathy")
AnyDataset = Annotated[
    Annotated[DatasetConfig, Tag("coco")] | Annotated[VideoDatasetConfig, Tag("video")]
    | Annotated[HFDatasetConfig, Tag("hf")] | Annotated[KarpathyDatasetConfig, Tag("karpathy")],
    Discriminator(_dataset_kind),
]


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
                                         "(default 16 when rungs is not given)")
    factor: float = Field(default=2.0, gt=1, description="each rung sees this many times the images of the "
                          "one before")
    objectives: list[Objective] = Field(
        default=["latency", "memory", "energy"], min_length=1,
        description="costs a dominating cell must be at least as cheap on (the quality is CIDEr)",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="level of the paired bootstrap "
                              "interval that must clear zero")
    seed: int = Field(default=0, description="seed of the image order every cell shares")

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


class GridConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: AnyDataset
    models: list[ModelSpec] = Field(min_length=1)
    precisions: list[Precision] = Field(default=["fp32"], min_length=1)
    max_new_tokens: list[StrictInt] = Field(default=[32], min_length=1)
    prompts: list[str] = Field(default=["Describe this image in one sentence."], min_length=1)
    generation: GenerationConfig = GenerationConfig()
    backend: Backend = "auto"
    resources: ResourcesConfig = ResourcesConfig()
    measurement: MeasurementConfig = MeasurementConfig()
    tracking: TrackingConfig = TrackingConfig()
    energy: EnergyConfig = EnergyConfig()
    scoring: ScoringConfig = ScoringConfig()
    search: SearchConfig = SearchConfig()
    output_dir: Path = Path("outputs")

    @field_validator("max_new_tokens")
    @classmethod
    def _tokens_positive(cls, v: list[int]) -> list[int]:
        bad = [t for t in v if t < 1]
        if bad:
            raise ValueError(f"every value must be >= 1, got {bad}")
        return v

    @field_validator("prompts")
    @classmethod
    def _prompts_nonempty(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("prompts must not be empty strings")
        return v

    @model_validator(mode="after")
    def _unique_model_names(self) -> GridConfig:
        names = [m.display_name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: display names must be unique, repeated: {dupes} (set 'name')")
        return self


class GridError(ValueError):
    """An invalid grid: every problem, each with the field path it concerns."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"invalid grid {source} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        lines += [f"  - {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        # the dataset union adds its tag to the path: users wrote `dataset.x`, not `dataset.coco.x`
        loc = [p for i, p in enumerate(e["loc"])
               if not (i == 1 and e["loc"][0] == "dataset" and p in DATASET_KINDS)]
        path = ".".join(str(p) for p in loc) or "<grid>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        out.append((path, msg))
    return out


def parse_grid(data: Any, source: str = "<grid>") -> GridConfig:
    """Validate a loaded grid mapping; raise GridError listing every problem."""
    if not isinstance(data, dict):
        raise GridError(source, [("<grid>", "the top level must be a mapping of fields")])
    try:
        return GridConfig.model_validate(data)
    except ValidationError as err:
        raise GridError(source, _problems(err)) from None


def set_override(data: dict, dotted: str, value: Any) -> None:
    """Apply one `--set a.b.c=value` override to a raw grid mapping (before validation)."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise GridError("--set", [(dotted, f"'{k}' is not a mapping")])
    node[keys[-1]] = value


def load_grid(path: str | Path, overrides: list[str] | None = None) -> GridConfig:
    """Read and validate a grid.yaml; `overrides` are `key.path=yaml-value` strings."""
    path = Path(path)
    if not path.is_file():
        raise GridError(str(path), [("<file>", "grid file not found")])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise GridError(str(path), [("<yaml>", str(err))]) from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise GridError("--set", [(item, "expected key.path=value")])
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            detail = " ".join(str(err).split())
            raise GridError("--set", [(key.strip(), f"value {raw!r} is not valid YAML: {detail}")]) from None
        if isinstance(data, dict):
            set_override(data, key.strip(), value)
    return parse_grid(data, str(path))
