"""Every cell measured cold (docs/measurement.md): a host empties its engine's caches at a cell's start and
after an unmeasured warm-up of the cell's first batch; the processor's seconds are recorded apart from
generate(). Host logic with a captioner double (no Ray); the processor time with the tiny Qwen2-VL on HF.
vLLM's own caches: tests/test_vllm_cpu.py."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from actors.captioner import Captioner
from actors.contract import CaptionResult, GenerationSettings, LoadReport, Measurement, SampleBatch
from actors.families.llava import LlavaFamily
from actors.model_host import ModelHost
from sweep.execute.measure import measurement_kinds, preprocess_costs
from sweep.grid.config import GridError, parse_grid

PROMPT = "Describe this image in one sentence."
SLOW_CALL = 0.05  # seconds every generate() of the double takes


class CachingEngine(Captioner):
    """Keeps a cache across calls, as vLLM does; records every call and every reset, in order."""

    def __init__(self):
        self.family = LlavaFamily()
        self.report = LoadReport(backend="vllm", backend_reason="test", family="llava", device="cpu",
                                 load_seconds=0.0, weight_bytes=1)
        self.events: list[tuple] = []

    def generate(self, requests, generate_kwargs):
        self.events.append(("generate", tuple(r.sample_id for r in requests)))
        time.sleep(SLOW_CALL)
        return [CaptionResult(r.sample_id, 1) for r in requests]

    def reset_caches(self) -> str:
        self.events.append(("reset",))
        return "the test engine's cache"


class Energy:
    def __init__(self, events):
        self.events = events

    def start(self):
        self.events.append(("energy start",))

    def stop(self):
        return 1.0, 0.5


def host_with(captioner: Captioner) -> ModelHost:
    host = ModelHost.__new__(ModelHost)  # ModelHost without a load: the captioner is given
    host.spec, host.captioner, host.actor_id, host.node_id = None, captioner, "test:0", ""
    host.energy = Energy(getattr(captioner, "events", []))
    host.generation, host.cells_before, host.measuring, host.warmups = {}, {}, {}, {}
    return host


def batch(ids: list[str], errors: list[str] | None = None) -> SampleBatch:
    pixels = [np.full((8, 8, 3), i * 10, dtype=np.uint8) for i in range(len(ids))]
    return SampleBatch(ids, errors or [""] * len(ids), [8] * len(ids), [8] * len(ids), pixels=pixels)


SETTINGS = GenerationSettings(prompt=PROMPT, max_new_tokens=4)


def test_each_cell_starts_with_reset_caches_and_an_unmeasured_warm_up():
    engine = CachingEngine()
    host = host_with(engine)
    start = host.begin_cell("first", SETTINGS, Measurement(warmup_batches=2))
    assert start.warmup_batches == 2
    assert start.cache_policy == ("cold: the test engine's cache reset at the cell's start and after its "
                                  "warm-up")
    first = host.caption(batch(["a", "b"]), SETTINGS, "first")
    second = host.caption(batch(["c"]), SETTINGS, "first")
    assert engine.events == [
        ("reset",),  # the cell's start
        ("generate", ("a", "b")), ("generate", ("a", "b")),  # the warm-up: the same images, twice
        ("reset",),  # what the warm-up left is gone before the measured call
        ("energy start",), ("generate", ("a", "b")),
        ("energy start",), ("generate", ("c",)),  # later batches: no warm-up
    ]
    # the warm-up's two calls are in no latency: each measured batch took one call
    assert SLOW_CALL <= first.latency_sec < 2 * SLOW_CALL
    assert first.start_ts >= 0 and first.warmup_batches == second.warmup_batches == 2
    assert first.cache_policy == start.cache_policy
    # a second cell on the same loaded model starts cold too, and warms up again
    engine.events.clear()
    host.begin_cell("sibling", SETTINGS, Measurement(warmup_batches=1))
    host.caption(batch(["a"]), SETTINGS, "sibling")
    assert engine.events == [("reset",), ("generate", ("a",)), ("reset",), ("energy start",),
                             ("generate", ("a",))]


def test_measurement_turned_off_keeps_caches_and_skips_the_warm_up():
    engine = CachingEngine()
    host = host_with(engine)
    start = host.begin_cell("c", SETTINGS, Measurement(warmup_batches=0, reset_caches=False))
    host.caption(batch(["a"]), SETTINGS, "c")
    assert engine.events == [("energy start",), ("generate", ("a",))]
    assert start.cache_policy == "kept across cells (measurement.reset_caches: false)"


def test_a_window_warms_up_on_its_first_batch_only():
    engine = CachingEngine()
    host = host_with(engine)
    host.begin_cell("c", SETTINGS)  # default: one warm-up, caches reset
    results = host.caption_window(SETTINGS, "c", [2, 1], batch(["a", "b"]), batch(["c"]))
    assert engine.events[:4] == [("reset",), ("generate", ("a", "b")), ("reset",), ("energy start",)]
    assert engine.events[4] == ("generate", ("a", "b", "c"))
    assert [r.warmup_batches for r in results] == [1, 1]


def test_a_backend_without_caches_says_so_and_its_preprocessing_is_not_measured():
    class NoCache(CachingEngine):
        reset_caches = Captioner.reset_caches  # HF: nothing outlives a generate() call

    host = host_with(NoCache())
    assert host.begin_cell("c", SETTINGS).cache_policy == "cold: no cache kept across generate() calls"
    result = host.caption(batch(["a"]), SETTINGS, "c")
    assert math.isnan(result.preprocess_sec)  # the double runs no processor: not measured, not 0


def test_hf_records_the_processors_seconds_apart_from_generate(tiny_model_cache, coco_mini):
    from actors.contract import LoadSpec, ModelRef

    host = ModelHost(LoadSpec(ModelRef("tiny:qwen2_vl"), "fp32", backend="hf"), None)
    images = sorted((coco_mini / "val2017").glob("*.jpg"))[:3]
    from PIL import Image

    pixels = [np.asarray(Image.open(p).convert("RGB").resize((448, 448))) for p in images]
    samples = SampleBatch(["a", "b", "bad"], ["", "", "cannot decode"], [448] * 3, [448] * 3,
                          pixels=[*pixels[:2], None])
    host.begin_cell("c", SETTINGS, Measurement(warmup_batches=0))
    result = host.caption(samples, SETTINGS, "c")
    assert 0 < result.preprocess_sec < result.latency_sec
    from sweep.execute.pipeline import caption_rows

    rows = caption_rows(result)
    assert rows.batch["preprocess_sec"] == result.preprocess_sec and "preprocess_sec" not in rows.images
    costs = preprocess_costs(rows.images, pd.DataFrame([rows.batch]))
    assert costs["preprocess_seconds_per_image"] == pytest.approx(result.preprocess_sec / 2)
    assert costs["preprocess_share"] == pytest.approx(result.preprocess_sec / result.latency_sec)


def tables(preprocess: list[float], images: list[int],
           errors: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images, batches): a batch per `preprocess` value captioning `images` of the images (`errors`)."""
    return (pd.DataFrame({"error": errors, "processing_time_sec": [0.5 if not e else 0.0 for e in errors]}),
            pd.DataFrame({"preprocess_sec": preprocess, "batch_images": images,
                          "cache_policy": ["cold: x"] * len(images), "warmup_batches": [1] * len(images)}))


def test_preprocess_costs_per_cell():
    # two batches: 0.2 s and 0.1 s of processor time for 3 captioned images that took 1.5 s in all;
    # a third batch was all decode errors (no processor ran: NaN, not counted)
    costs = preprocess_costs(*tables([0.2, 0.1, math.nan], [2, 1, 0], ["", "", "", "bad"]))
    assert costs["preprocess_seconds_per_image"] == pytest.approx(0.1)
    assert costs["preprocess_share"] == pytest.approx(0.2)
    # a host that could not measure it (vLLM), or a table stored before it was recorded: NaN, not 0
    assert all(math.isnan(v) for v in preprocess_costs(*tables([math.nan] * 2, [2, 2], ["", ""])).values())
    unmeasured = preprocess_costs(pd.DataFrame({"error": [""]}), pd.DataFrame())
    assert all(math.isnan(v) for v in unmeasured.values())
    kinds = {"cache_policy": "cold: x", "preprocess_where": ""}
    assert measurement_kinds(tables([0.1], [1], [""])[1]) == kinds
    assert measurement_kinds(pd.DataFrame({"error": [""]})) == {"cache_policy": "", "preprocess_where": ""}
    # the processor ran in the decode tasks: its seconds are not in the batches' wall time, so the share
    # is over both (0.3 s of processor beside 1.5 s of generate())
    images, batches = tables([0.2, 0.1], [2, 1], ["", "", ""])
    off_host = batches.assign(preprocess_where="decode_task")
    assert preprocess_costs(images, off_host)["preprocess_share"] == pytest.approx(0.3 / 1.8)
    assert measurement_kinds(off_host)["preprocess_where"] == "decode_task"


def grid(coco_mini, **fields) -> dict:
    dataset = {"captions": str(coco_mini / "captions_val2017.json"), "images": str(coco_mini / "val2017")}
    return {"name": "g", "dataset": dataset, "models": [{"id": "tiny:llava"}], **fields}


@pytest.mark.parametrize(("measurement", "field"), [
    ({"warmup_batches": -1}, "measurement.warmup_batches"),
    ({"warmup_batches": 1.5}, "measurement.warmup_batches"),
    ({"reset_caches": "sometimes"}, "measurement.reset_caches"),
    ({"warmups": 2}, "measurement.warmups"),
])
def test_grid_measurement_is_validated(measurement, field, coco_mini):
    with pytest.raises(GridError) as info:
        parse_grid(grid(coco_mini, measurement=measurement))
    assert "(1 problem" in str(info.value) and field in str(info.value)


def test_grid_measurement_reaches_every_cell_without_changing_its_id(coco_mini):
    from sweep.grid.cells import expand_cells

    default = expand_cells(parse_grid(grid(coco_mini)), "fp")[0]
    off = expand_cells(parse_grid(grid(coco_mini, measurement={"warmup_batches": 0, "reset_caches": False})),
                       "fp")[0]
    assert default.measurement() == Measurement(warmup_batches=1, reset_caches=True)
    assert off.measurement() == Measurement(warmup_batches=0, reset_caches=False)
    assert off.cell_id == default.cell_id  # how a cell is measured does not change its captions


def test_grid_vllm_engine_arguments_reach_the_load_and_are_logged(coco_mini):
    from actors.vllm_backend import engine_args_logged
    from sweep.grid.cells import expand_cells

    vllm = {"gpu_memory_utilization": 0.8, "max_num_seqs": 64, "max_num_batched_tokens": 16384}
    cell = expand_cells(parse_grid(grid(coco_mini, resources={"vllm": vllm})), "fp")[0]
    assert dict(cell.load_spec().vllm_engine) == vllm
    assert cell.cell_id == expand_cells(parse_grid(grid(coco_mini)), "fp")[0].cell_id
    assert expand_cells(parse_grid(grid(coco_mini)), "fp")[0].load_spec().vllm_engine == ()
    logged = engine_args_logged({"model": "/m", "tokenizer": "/m", "revision": None, "dtype": "float16",
                                 "max_num_seqs": 64})
    assert logged == '{"dtype": "float16", "max_num_seqs": 64}'
    with pytest.raises(GridError) as info:
        parse_grid(grid(coco_mini, resources={"vllm": {"gpu_memory_utilization": 1.5}}))
    assert "resources.vllm.gpu_memory_utilization" in str(info.value)
