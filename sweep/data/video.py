"""Video scenes as samples: list videos, detect scenes (a CPU stage in Ray Data, cached per file),
choose the frames of each scene the model sees."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweep.data.sources import DatasetError, Sample
from sweep.grid.config import VIDEO_SUFFIXES, FrameSamplingConfig, SceneDetectionConfig, VideoDatasetConfig


@dataclass(frozen=True)
class VideoItem:
    video_id: str
    path: str
    references: tuple[tuple[str, ...], ...] = ()  # per scene, when the manifest gives them


def list_videos(cfg: VideoDatasetConfig) -> list[VideoItem]:
    if cfg.videos is not None:
        paths = sorted(p for p in cfg.videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        items = [VideoItem(p.stem, str(p.resolve())) for p in paths]
    else:
        try:
            entries = yaml.safe_load(cfg.manifest.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise DatasetError(f"dataset.manifest: cannot read {cfg.manifest}: {err}") from None
        if not isinstance(entries, list):
            raise DatasetError(f"dataset.manifest: {cfg.manifest} must be a list of {{path, id, captions}}")
        items = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "path" not in entry:
                raise DatasetError(f"dataset.manifest: entry {i} of {cfg.manifest} has no 'path'")
            path = Path(entry["path"])
            path = path if path.is_absolute() else (cfg.manifest.parent / path)
            refs = tuple(tuple(str(c) for c in scene) for scene in entry.get("captions") or [])
            items.append(VideoItem(str(entry.get("id") or path.stem), str(path.resolve()), refs))
    if not items:
        raise DatasetError(f"dataset: no video files ({', '.join(VIDEO_SUFFIXES)}) found")
    return items[: cfg.limit] if cfg.limit else items


def file_sha1(path: str) -> str:
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def detect_scenes(path: str, settings: SceneDetectionConfig) -> tuple[list[tuple[float, float]], float]:
    """[(start_s, end_s)] of each scene and the video's duration; no cut means one scene."""
    from scenedetect import AdaptiveDetector, ContentDetector, open_video

    video = open_video(path)
    fps = float(video.frame_rate)
    frames = int(video.duration.frame_num) if video.duration is not None else 0
    if frames <= 0 or fps <= 0:
        raise ValueError("the video has no frames")
    min_len = max(1, round(settings.min_scene_seconds * fps))
    if settings.detector == "content":
        detector = ContentDetector(threshold=settings.threshold, min_scene_len=min_len)
    else:
        detector = AdaptiveDetector(adaptive_threshold=settings.threshold, min_scene_len=min_len)
    from scenedetect import SceneManager

    manager = SceneManager()
    manager.add_detector(detector)
    manager.detect_scenes(video)
    duration = frames / fps
    scenes = [(start.seconds, end.seconds) for start, end in manager.get_scene_list()]
    return (scenes or [(0.0, duration)]), duration


def frame_times(start: float, end: float, sampling: FrameSamplingConfig) -> tuple[float, ...]:
    """Times strictly inside the scene (a frame at the cut itself may belong to the neighbour)."""
    span = max(end - start, 1e-3)
    if sampling.strategy == "middle":
        fractions = [0.5]
    elif sampling.strategy == "start_middle":
        fractions = [0.05, 0.5]
    else:
        n = sampling.n_frames
        fractions = [(i + 0.5) / n for i in range(n)]
    return tuple(round(start + f * span, 4) for f in fractions)


class DetectScenes:
    """Ray Data flat_map stage: one video row in, one row per scene out (or one error row)."""

    def __init__(self, settings_json: str, cache_dir: str):
        self.settings = SceneDetectionConfig.model_validate_json(settings_json)
        self.cache_dir = Path(cache_dir)

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        sha1 = file_sha1(row["path"])
        key = hashlib.sha1(f"{sha1}:{self.settings.model_dump_json()}".encode()).hexdigest()
        cache = self.cache_dir / f"{key}.json"
        try:
            if sha1 and cache.is_file():
                found = json.loads(cache.read_text())
            else:
                if not sha1:
                    raise OSError(f"cannot read {row['path']}")
                scenes, duration = detect_scenes(row["path"], self.settings)
                found = {"scenes": scenes, "duration": duration}
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".{sha1[:8]}.tmp")
                tmp.write_text(json.dumps(found))
                tmp.replace(cache)
        except Exception as err:  # unreadable or empty video: one error row, the sweep goes on
            return [{**row, "sha1": sha1, "scene_index": -1, "start_s": 0.0, "end_s": 0.0,
                     "duration": 0.0, "error": f"{type(err).__name__}: {err}"}]
        return [{**row, "sha1": sha1, "scene_index": i, "start_s": float(s), "end_s": float(e),
                 "duration": float(found["duration"]), "error": ""}
                for i, (s, e) in enumerate(found["scenes"])]


def load_video_samples(cfg: VideoDatasetConfig, cache_dir: Path) -> list[Sample]:
    """Scenes of every video as samples; needs Ray (detection runs as a Ray Data CPU stage)."""
    import ray

    items = list_videos(cfg)
    refs = {it.video_id: it.references for it in items}
    ds = ray.data.from_items([{"video_id": it.video_id, "path": it.path} for it in items],
                             override_num_blocks=len(items))
    rows = ds.flat_map(DetectScenes(cfg.scenes.model_dump_json(), str(cache_dir)), num_cpus=1).take_all()
    rows.sort(key=lambda r: ([it.video_id for it in items].index(r["video_id"]), r["scene_index"]))
    samples = []
    for r in rows:
        scene_refs = refs[r["video_id"]]
        idx = int(r["scene_index"])
        samples.append(Sample(
            sample_id=f"{r['video_id']}#{max(idx, 0)}" if idx >= 0 else f"{r['video_id']}#error",
            image_id=len(samples),
            path=r["path"],
            references=tuple(scene_refs[idx]) if 0 <= idx < len(scene_refs) else (),
            content_sha1=r["sha1"],
            video_id=r["video_id"],
            scene_index=idx,
            start_s=float(r["start_s"]),
            end_s=float(r["end_s"]),
            video_duration_s=float(r["duration"]),
            frame_times=frame_times(float(r["start_s"]), float(r["end_s"]), cfg.frames) if idx >= 0 else (),
            error=str(r["error"]),
        ))
    return samples


def video_fingerprint(cfg: VideoDatasetConfig) -> str:
    """Changes with any video's content or the detection / sampling / resize settings."""
    h = hashlib.sha256(cfg.model_dump_json(include={"scenes", "frames", "image_max_side"}).encode())
    for it in list_videos(cfg):
        h.update(f"{it.video_id}:{file_sha1(it.path)};".encode())
    return h.hexdigest()[:16]
