"""grid.yaml's `dataset:` section: COCO images with captions, a Hugging Face dataset (`kind: hf`), a Karpathy
split file (`kind: karpathy`), or videos cut into scenes (`kind: video`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, StrictInt, Tag, model_validator

from sweep.grid.strict import Strict as _Strict


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _existing_folder(path: Path) -> Path:
    if not path.is_dir():
        raise ValueError(f"folder not found: {path}")
    return path


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
ExistingFolder = Annotated[Path, AfterValidator(_existing_folder)]


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
    captions: ExistingFile = Field(description="COCO captions json (captions_val2017.json format)")
    images: ExistingFolder = Field(description="folder holding the images named in the json")


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
    split_file: ExistingFile = Field(description="the Karpathy json (e.g. dataset_coco.json)")
    images: ExistingFolder = Field(description="images root: <images>/<filepath>/<filename>")
    split: Literal["test", "val", "train", "restval"] = Field(default="test", description="which split")


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
    videos: ExistingFolder | None = Field(default=None, description="folder of video files")
    manifest: ExistingFile | None = Field(
        default=None, description="yaml/json list of {path, id?, captions?: [[refs of scene 0], ...]}"
    )
    limit: int | None = Field(default=None, ge=1, description="use at most this many videos")
    scenes: SceneDetectionConfig = SceneDetectionConfig()
    frames: FrameSamplingConfig = FrameSamplingConfig()
    image_max_side: int = Field(default=448, ge=16, le=4096, description="resize frames to fit this side")

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

