import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from actors.contract import BatchResult, SampleBatch, SampleResult
from actors.generation import count_generated
from sweep.execute.measure import summarize_costs
from sweep.execute.pipeline import batches_in_flight, caption_rows
from sweep.execute.stages import DecodeImage, decode_batch
from sweep.publish.report import RANDOM_NOTE, format_table, front_pool, mark_fronts
from sweep.results.batches import per_image, split_legacy


def test_decode_resizes_and_keeps_original_size(coco_mini):
    path = next((coco_mini / "val2017").glob("*.jpg"))
    row = DecodeImage(64)({"sample_id": "1", "path": str(path)})
    width, height = Image.open(path).size
    assert row["error"] == "" and (row["image_width"], row["image_height"]) == (width, height)
    assert max(row["image"].shape[:2]) == 64 and row["image"].dtype == np.uint8


def test_missing_and_corrupt_images_become_error_rows(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    decode = DecodeImage(64)
    for path in (bad, tmp_path / "absent.jpg"):
        row = decode({"sample_id": "9", "path": str(path)})
        assert row["error"] and row["sample_id"] == "9"


def test_generated_tokens_stop_at_first_eos():
    rows = torch.tensor([[5, 6, 2, 0, 0], [5, 0, 7, 8, 9], [2, 0, 0, 0, 0], [7, 3, 2, 3, 0]])
    assert count_generated(rows, eos_ids={2}) == [3, 5, 1, 3]
    assert count_generated(rows, eos_ids={2, 3}) == [3, 5, 1, 2]


REPORTS = {"a": {"load_seconds": 2.0, "weight_bytes": 1000}, "b": {"load_seconds": 4.0, "weight_bytes": 1000}}


def _table(n_actors: int = 2) -> pd.DataFrame:
    return pd.DataFrame({
        "sample_id": [str(i) for i in range(4)],
        "error": ["", "", "", "OSError: gone"],
        "caption": ["a b", "c", "d e f", ""],
        "generated_tokens": [4, 2, 6, 0],
        "processing_time_sec": [0.5, 0.5, 1.0, 0.0],
        "batch_latency_sec": [1.0, 1.0, 1.0, 1.0],
        "batch_start_ts": [100.0, 100.0, 101.0, 101.0],
        "batch_end_ts": [101.0, 101.0, 102.0, 102.0],
        "actor_id": ["a", "a", "b" if n_actors == 2 else "a", "b" if n_actors == 2 else "a"],
        "peak_memory_bytes": [10, 10, 30, 30],
        "energy_kwh": [0.1, 0.0, 0.2, 0.0],
        "emissions_kg": [0.01, 0.0, 0.02, 0.0],
    })


def _costs(table: pd.DataFrame, **kwargs) -> dict:
    """The costs of a table of the older layout (batch columns on its rows), read as today's."""
    captions, batches = split_legacy(table)
    return summarize_costs(per_image(captions, batches), batches, **kwargs)


def test_costs_exclude_error_rows_and_load_time():
    costs = _costs(_table(), cell_wall_seconds=9.0, reports=REPORTS)
    assert costs["n_samples"] == 4 and costs["n_errors"] == 1
    assert math.isclose(costs["images_per_sec"], 3 / 2.0)  # 3 ok images over a 2 s generation window
    assert math.isclose(costs["tokens_per_sec"], 12 / 2.0)
    assert costs["peak_memory_bytes"] == 30 and costs["n_actors"] == 2
    # load time: the mean over the hosts that served the cell, each host's report counted once
    assert math.isclose(costs["energy_kwh"], 0.3) and costs["load_seconds"] == 3.0
    one_host = _costs(_table(n_actors=1), cell_wall_seconds=9.0, reports=REPORTS)
    assert one_host["n_actors"] == 1 and one_host["load_seconds"] == 2.0
    with pytest.raises(ValueError, match="no load report"):
        _costs(_table(), cell_wall_seconds=9.0, reports={})


def test_a_batch_result_becomes_caption_rows_and_one_batch_row():
    result = BatchResult(
        samples=[SampleResult("1", "a cat", 3, "", 0.5, 640, 480),
                 SampleResult("2", "", 0, "OSError: x", 0.0, 0, 0)],
        latency_sec=0.5, captioned=1, start_ts=10.0, end_ts=10.5, actor_id="h:1", node_id="n",
        peak_memory_bytes=99, peak_memory_kind="cpu_rss", energy_kwh=0.2, emissions_kg=0.1,
        model_cells_before=1,
    )
    built = caption_rows(result)
    rows = per_image(built.images, pd.DataFrame([built.batch]), shares=True)
    assert rows["sample_id"].tolist() == ["1", "2"] and rows["error"].tolist() == ["", "OSError: x"]
    assert rows["batch_latency_sec"].tolist() == [0.5, 0.5] and set(rows["actor_id"]) == {"h:1"}
    assert built.batch["energy_kwh"] == 0.2 and "energy_kwh" not in rows  # the batch's, once
    assert rows["energy_per_image"].tolist() == [0.1, 0.1]  # an image's share of it
    assert rows["model_cells_before"].tolist() == [1, 1]


def test_a_decode_task_hands_the_host_a_typed_batch_with_its_error_rows(coco_mini, tmp_path):
    path = next((coco_mini / "val2017").glob("*.jpg"))
    rows = [{"sample_id": "1", "path": str(path), "error": ""},
            {"sample_id": "2", "path": str(tmp_path / "absent.jpg"), "error": ""},
            {"sample_id": "3", "path": str(path), "error": "video unreadable"}]
    typed = decode_batch(rows, video=False, max_side=64)
    width, height = Image.open(path).size
    assert typed.sample_ids == ["1", "2", "3"] and len(typed) == 3 and typed.frames_jpeg is None
    assert typed.errors[0] == "" and "absent.jpg" in typed.errors[1] and typed.errors[2] == "video unreadable"
    assert (typed.widths, typed.heights) == ([width, 0, 0], [height, 0, 0])
    assert max(typed.pixels[0].shape[:2]) == 64 and typed.pixels[0].dtype == np.uint8


def test_a_batch_decoded_in_pieces_reaches_the_host_whole_and_in_order(coco_mini, tmp_path):
    path = str(next((coco_mini / "val2017").glob("*.jpg")))
    rows = [{"sample_id": str(i), "path": path if i != 3 else str(tmp_path / "gone.jpg"), "error": ""}
            for i in range(5)]
    whole = decode_batch(rows, video=False, max_side=32)
    pieces = SampleBatch.concat([decode_batch(rows[:2], False, 32), decode_batch(rows[2:], False, 32)])
    assert pieces.sample_ids == whole.sample_ids == ["0", "1", "2", "3", "4"]
    assert pieces.errors == whole.errors and pieces.errors[3] and pieces.widths == whole.widths
    assert all((a == b).all() for a, b in zip(pieces.pixels, whole.pixels, strict=True))
    assert pieces.frames_jpeg is None and SampleBatch.concat([whole]) is whole


def test_batches_in_flight_cover_every_decode_slot_and_two_per_host():
    assert batches_in_flight(1, cluster_cpus=2, cpus_per_decode_task=0.5) == 2 + 4
    assert batches_in_flight(2, cluster_cpus=64, cpus_per_decode_task=1) == 4 + 16  # capped: memory
    assert batches_in_flight(1, cluster_cpus=0.2, cpus_per_decode_task=0.5) == 2 + 1


def test_front_excludes_random_weights_when_real_ones_exist():
    rows = pd.DataFrame([
        {"label": "real-a", "status": "ok", "weights": "real", "cider": 1.0, "latency_p50_s": 2.0,
         "peak_memory_gb": 1.0, "energy_kwh": 1.0},
        {"label": "real-b", "status": "ok", "weights": "real", "cider": 0.5, "latency_p50_s": 1.0,
         "peak_memory_gb": 2.0, "energy_kwh": 2.0},
        {"label": "rand", "status": "ok", "weights": "random", "cider": 9.0, "latency_p50_s": 0.1,
         "peak_memory_gb": 0.1, "energy_kwh": 0.1},
        {"label": "broken", "status": "failed", "weights": "", "cider": math.nan, "latency_p50_s": math.nan,
         "peak_memory_gb": math.nan, "energy_kwh": math.nan},
    ])
    marked = mark_fronts(rows).set_index("label")["pareto"]
    assert marked["real-a"] == "latency,memory,energy"
    assert marked["real-b"] == "latency"
    assert marked["rand"] == "" and marked["broken"] == ""
    assert front_pool(rows)[1] is None
    only_random = rows[rows["weights"] != "real"]
    assert front_pool(only_random)[1] == RANDOM_NOTE
    text = format_table(mark_fronts(rows))
    assert "real-a" in text and "\x1b" not in text
