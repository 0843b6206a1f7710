"""grid.yaml: the validated description of a sweep.

Everything is checked before any Ray work starts, and every problem is reported at once with the
dotted path of the field it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, StrictInt, ValidationError, field_validator, model_validator

from actors.contract import BackendName as Backend
from actors.contract import Precision
from sweep.grid.datasets import (
    DATASET_KINDS,
    VIDEO_SUFFIXES,
    AnyDataset,
    DatasetConfig,
    FrameSamplingConfig,
    HFDatasetConfig,
    ImageSubsetConfig,
    KarpathyDatasetConfig,
    SceneDetectionConfig,
    VideoDatasetConfig,
)
from sweep.grid.sections import (
    EnergyConfig,
    GenerationConfig,
    MeasurementConfig,
    ModelSpec,
    Objective,
    ResourcesConfig,
    ScoringConfig,
    SearchConfig,
    SearchStrategy,
    TrackingConfig,
    VllmEngineConfig,
    codecarbon_countries,
)
from sweep.grid.strict import Strict as _Strict

# the sections' names, importable from here (their homes: sweep.grid.datasets, sweep.grid.sections)
__all__ = [
    "DATASET_KINDS", "VIDEO_SUFFIXES", "AnyDataset", "Backend", "DatasetConfig", "EnergyConfig",
    "FrameSamplingConfig", "GenerationConfig", "GridConfig", "GridError", "HFDatasetConfig",
    "ImageSubsetConfig", "KarpathyDatasetConfig", "MeasurementConfig", "ModelSpec", "Objective", "Precision",
    "ResourcesConfig", "SceneDetectionConfig", "ScoringConfig", "SearchConfig", "SearchStrategy",
    "TrackingConfig", "VideoDatasetConfig", "VllmEngineConfig", "codecarbon_countries", "load_grid",
    "parse_grid", "set_override",
]


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


def grid_text(path: Path) -> str:
    """The grid file as UTF-8 text; a binary or UTF-16 file is refused naming the byte, not a traceback."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        why = f"cannot read the grid file: {err.strerror or err}"
        raise GridError(str(path), [("<file>", why)]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GridError(str(path), [("<file>", f"not UTF-8 text (byte {err.start}: {err.reason}); a grid "
                                               "file is YAML in UTF-8")]) from None
    if "\x00" in text:
        why = "not text (it holds NUL bytes); a grid file is YAML in UTF-8"
        raise GridError(str(path), [("<file>", why)])
    return text


def load_grid(path: str | Path, overrides: list[str] | None = None) -> GridConfig:
    """Read and validate a grid.yaml; `overrides` are `key.path=yaml-value` strings."""
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file" if path.exists() else "not found"
        raise GridError(str(path), [("<file>", f"grid file {what}: give a grid.yaml")])
    try:
        data = yaml.safe_load(grid_text(path)) or {}
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
