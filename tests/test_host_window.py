"""A host whose engine schedules requests itself (vLLM) takes several batches per generate() call
(`ModelHost.caption_window`) and answers each batch on its own, in request order (`split_window`), timed
by the engine's per-request latencies (`request_e2e`). Without Ray or vLLM: a captioner double."""

import math
from pathlib import Path

import numpy as np
import pytest

from actors.captioner import Captioner
from actors.contract import (
    BatchResult,
    CaptionResult,
    GenerationSettings,
    LoadReport,
    Measurement,
    SampleBatch,
    SampleResult,
)
from actors.families.llava import LlavaFamily
from actors.host_window import latency_kind, split_window
from actors.model_host import ModelHost

PROMPT = "Describe this image in one sentence."


class SelfBatching(Captioner):
    """Times each request itself, as vLLM's request metrics do: request k of a call took k+1 seconds
    end to end (none when `timed` is off, as vLLM's beam search)."""

    latency_kind = "request_e2e"
    batches_per_call = 3

    def __init__(self, timed: bool = True):
        self.timed = timed
        self.calls: list[list[str]] = []
        self.family = LlavaFamily()
        self.report = LoadReport(backend="vllm", backend_reason="test", family="llava", device="cpu",
                                 load_seconds=0.0, weight_bytes=1)

    def generate(self, requests, generate_kwargs):
        self.calls.append([r.sample_id for r in requests])
        n = generate_kwargs["max_new_tokens"]
        return [CaptionResult(f"{r.sample_id} x{n}", n, 0.5 * (k + 1) if self.timed else None,
                              float(k + 1) if self.timed else None) for k, r in enumerate(requests)]


def host_with(captioner: Captioner) -> ModelHost:
    host = ModelHost.__new__(ModelHost)  # ModelHost without a load: the captioner is given
    host.spec, host.captioner, host.actor_id, host.node_id = None, captioner, "test:0", ""
    host.energy = type("Energy", (), {"start": lambda self: None, "stop": lambda self: (3.0, 1.5)})()
    host.generation, host.cells_before = {}, {}
    host.measuring, host.warmups = {}, {}
    return host


def batch(ids: list[str], errors: list[str] | None = None) -> SampleBatch:
    pixels = [np.full((8, 8, 3), i * 10, dtype=np.uint8) for i in range(len(ids))]
    return SampleBatch(ids, errors or [""] * len(ids), [8] * len(ids), [8] * len(ids), pixels=pixels)


def test_a_window_of_batches_is_one_generate_call_answered_per_batch_in_order():
    captioner = SelfBatching()
    host = host_with(captioner)
    settings = GenerationSettings(prompt=PROMPT, max_new_tokens=4, budgets=(2,))
    # no warm-up: its calls are tested in tests/test_measurement.py
    assert host.begin_cell("c", settings, Measurement(warmup_batches=0)).batches_per_call == 3
    parts = [batch(["a", "b"]), batch(["c", "d", "e"], ["", "cannot decode", ""]), batch(["f"])]
    results = host.caption_window(settings, "c", [2, 3, 1], *parts)
    # one call at max_new_tokens with every decoded request of the three batches, then one for budget 2
    assert captioner.calls == [["a", "b", "c", "e", "f"], ["a", "b", "c", "e", "f"]]
    assert [[s.sample_id for s in r.samples] for r in results] == [["a", "b"], ["c", "d", "e"], ["f"]]
    assert [[s.caption for s in r.samples] for r in results] == [
        ["a x4", "b x4"], ["c x4", "", "e x4"], ["f x4"]]
    assert [r.samples[1].error for r in results[:2]] == ["", "cannot decode"]
    assert [r.budgets[2].captions for r in results] == [["a x2", "b x2"], ["c x2", "", "e x2"], ["f x2"]]
    assert [r.captioned for r in results] == [2, 2, 1]
    # each batch's latency: the longest of its requests' own end-to-end times (request k took k+1 s)
    assert [r.latency_sec for r in results] == [2.0, 4.0, 5.0]
    assert {r.latency_kind for r in results} == {"request_e2e"}
    assert [s.request_e2e_sec for s in results[0].samples] == [1.0, 2.0]
    assert [s.ttft_sec for s in results[2].samples] == [2.5]
    assert math.isnan(results[1].samples[1].request_e2e_sec)  # the decode error was never requested
    # the window's energy split over its batches by their samples (2, 3, 1 of 6), so it sums to the
    # window's; the window's timestamps on every batch
    assert [(r.energy_kwh, r.emissions_kg) for r in results] == [(1.0, 0.5), (1.5, 0.75), (0.5, 0.25)]
    assert len({(r.start_ts, r.end_ts) for r in results}) == 1


def test_without_engine_timings_the_latency_is_the_windows_wall_time():
    host = host_with(SelfBatching(timed=False))
    settings = GenerationSettings(prompt=PROMPT, max_new_tokens=4)
    results = host.caption_window(settings, "c", [1, 1], batch(["a"]), batch(["b"]))
    assert {r.latency_kind for r in results} == {"batch_wall"}
    assert results[0].latency_sec == results[1].latency_sec > 0


def test_one_batch_through_caption_parts_takes_its_requests_own_latency():
    host = host_with(SelfBatching())
    settings = GenerationSettings(prompt=PROMPT, max_new_tokens=4)
    result = host.caption_parts(settings, "c", batch(["a", "b"]), batch(["c"]))
    assert [s.sample_id for s in result.samples] == ["a", "b", "c"]
    assert result.latency_sec == 3.0 and result.latency_kind == "request_e2e"


def sample(sid: str, error: str = "", e2e: float = float("nan")) -> SampleResult:
    return SampleResult(sid, "", 0, error, 0.1, 8, 8, request_e2e_sec=e2e)


def test_split_window_checks_sizes_and_gives_a_dead_batch_no_latency():
    result = BatchResult(samples=[sample("a", e2e=1.0), sample("b", "bad")], latency_sec=2.0, captioned=1,
                         start_ts=0.0, end_ts=2.0, actor_id="h", node_id="", peak_memory_bytes=1,
                         peak_memory_kind="cpu_rss", energy_kwh=float("nan"), emissions_kg=float("nan"),
                         model_cells_before=0, latency_kind="request_e2e")
    with pytest.raises(ValueError, match=r"window of 2 samples cannot be split into batches of \[1, 2\]"):
        split_window(result, [1, 2])
    live, dead = split_window(result, [1, 1])
    assert (live.latency_sec, live.captioned) == (1.0, 1)
    assert (dead.latency_sec, dead.captioned) == (0.0, 0)


def test_latency_kind_is_request_e2e_only_when_every_captioned_request_was_timed():
    timed, untimed, failed = sample("a", e2e=1.0), sample("b"), sample("c", "bad")
    assert latency_kind("request_e2e", [timed, failed]) == "request_e2e"
    assert latency_kind("request_e2e", [timed, untimed]) == "batch_wall"
    assert latency_kind("batch_wall", [timed]) == "batch_wall"


@pytest.mark.slow  # a sweep on Ray
def test_a_sweep_cell_feeds_a_self_batching_host_windows_of_batches(coco_mini, tmp_path, monkeypatch):
    from conftest import grid_dict

    from sweep.data.sources import dataset_fingerprint, load_coco_samples
    from sweep.engine import run_sweep
    from sweep.grid.cells import expand_cells
    from sweep.grid.config import parse_grid
    from sweep.results.store import ResultStore

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the loader lives in the checkout (benchmarks.*), as a user's would
    monkeypatch.syspath_prepend(str(root))
    grid = parse_grid(grid_dict(
        coco_mini, tmp_path,
        models=[{"id": "windowed", "loader": "benchmarks.zero_captioner:build_windowed"}],
        max_new_tokens=[4], resources={"batch_size": 2},
        dataset={"captions": str(coco_mini / "captions_val2017.json"), "images": str(coco_mini / "val2017"),
                 "limit": 10},
        energy={"enabled": False},  # codecarbon adds seconds per actor; not what this test is about
    ))
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    assert info.exit_code == 0, info.results[["label", "reason"]]
    table = ResultStore(info.output_dir).read_captions(cells[0].cell_id)
    assert len(table) == 10
    # 5 batches of 2, 4 per call: calls of 8 and 2 requests; every row its own sample's caption
    assert sorted(table["caption"].str.split(" of ").str[1].astype(int).unique()) == [2, 8]
    assert (table["caption"].str.split(" of ").str[0] == table["sample_id"]).all()
    assert set(table["latency_kind"]) == {"request_e2e"}
    assert (table["batch_latency_sec"] == 0.002).all() and (table["request_e2e_sec"] == 0.002).all()
    assert set(info.results["latency_kind"]) == {"request_e2e"}


def test_vllm_window_size_comes_from_the_environment_and_is_checked(monkeypatch):
    from actors.vllm_backend import request_timings, window_batches

    monkeypatch.delenv("VLM_SWEEP_VLLM_BATCHES_PER_CALL", raising=False)
    assert window_batches() == 16
    monkeypatch.setenv("VLM_SWEEP_VLLM_BATCHES_PER_CALL", "4")
    assert window_batches() == 4
    for bad in ("0", "many"):
        monkeypatch.setenv("VLM_SWEEP_VLLM_BATCHES_PER_CALL", bad)
        with pytest.raises(ValueError, match="VLM_SWEEP_VLLM_BATCHES_PER_CALL must be a positive integer"):
            window_batches()
    # vLLM's RequestStateStats: TTFT as vLLM measured it, e2e that plus the first-to-last-token time
    stats = type("Stats", (), {"first_token_latency": 0.25, "first_token_ts": 10.0, "last_token_ts": 10.5})()
    assert request_timings(stats) == (0.25, 0.75)
    assert request_timings(None) == (None, None)
    # a frontend late on the first token would make the sum outlast the generate() call: capped by it
    assert request_timings(stats, call_seconds=0.6) == (0.25, 0.6)
    late = type("Stats", (), {"first_token_latency": 0.7, "first_token_ts": 10.0, "last_token_ts": 10.5})()
    assert request_timings(late, call_seconds=0.6) == (0.6, 0.6)
    assert request_timings(stats, call_seconds=2.0) == (0.25, 0.75)
