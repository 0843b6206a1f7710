"""A host process serves successive loads (`resources.reuse_host_processes`): when the pool must make room,
an idle host set of the same placement unloads its model and loads the next one instead of a fresh
process; every call names the load it expects, so a host that Ray restarted with its first load never
captions with it; each cell says whether its load ran in a fresh process."""

from pathlib import Path

import numpy as np
import pytest
from conftest import grid_dict
from sweep_fixtures import fault_dir_fixture  # noqa: F401  (the fault_dir fixture)
from test_hosts import CountingPool

from actors.contract import (
    CellStart,
    GenerationSettings,
    LoadReport,
    LoadSpec,
    Measurement,
    ModelRef,
    SampleBatch,
)
from actors.model_host import ModelHost
from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.execute.hosts import HostSet, may_take
from sweep.grid.cells import expand_cells
from sweep.grid.config import GridError, parse_grid
from sweep.results.store import ResultStore

ZOO = Path(__file__).resolve().parents[1] / "zoo"
SETTINGS = GenerationSettings(prompt="", max_new_tokens=8)


def spec(model: str, precision: str = "fp32", backend: str = "hf", gpus: float = 1.0, replicas: int = 1,
         loader: str | None = None) -> LoadSpec:
    return LoadSpec(ModelRef(model, loader=loader), precision, backend, gpus, replicas)


def idle(key: LoadSpec, unloads: bool = True, vllm_here: bool = False) -> HostSet:
    return HostSet(1, key, key.gpus_per_actor * key.replicas, ["h"], unloads_in_process=unloads,
                   vllm_here=vllm_here)


def test_an_idle_set_takes_a_load_of_its_placement_unless_vllm_is_involved():
    here = spec("a")
    assert may_take(idle(here), spec("b", "int8"))
    assert not may_take(idle(here), spec("b", gpus=2.0))  # another placement
    assert not may_take(idle(here), spec("b", replicas=2))
    assert not may_take(idle(here, unloads=False), spec("b"))  # a vLLM engine: not freed in-process
    busy = idle(here)
    busy.users = 1
    assert not may_take(busy, spec("b"))
    assert not may_take(idle(here), spec("b", backend="vllm"))
    # auto picks vLLM only where vLLM runs, and only for the precisions vLLM takes
    assert may_take(idle(here), spec("b", "fp16", backend="auto"))
    assert not may_take(idle(here, vllm_here=True), spec("b", "fp16", backend="auto"))
    assert may_take(idle(here, vllm_here=True), spec("b", "nf4", backend="auto"))
    assert may_take(idle(here, vllm_here=True), spec("b", "fp16", backend="auto", loader="pkg.mod:load"))


def start(unloads: bool, vllm_here: bool = False) -> CellStart:
    return CellStart("h:1", "", LoadReport("hf", "", "llava", "cpu", 1.0, 1), {}, 0,
                     unloads_in_process=unloads, vllm_here=vllm_here)


def test_the_pool_hands_an_idle_set_the_next_load_when_it_must_make_room():
    pool = CountingPool(budget=1)
    first, _ = pool.acquire(spec("a"))
    pool.release(first, healthy=True, starts=[start(unloads=True)])
    second, hosts = pool.acquire(spec("b"))  # no GPU free: the idle set's process loads b
    assert (second, hosts) == (first, ["host1"]) and pool.stopped == [] and pool.started == ["a/fp32"]
    assert pool.stats() == {"loads": 2, "processes": 1, "alive": 1}
    assert pool.acquire(spec("b"))[0] == second  # now b's set: shared, as any load
    pool.release(second, healthy=True, starts=[start(unloads=False)])  # b loaded on vLLM after all
    pool.release(second, healthy=True, starts=[start(unloads=False)])
    pool.acquire(spec("c"))
    assert pool.stopped == [first] and pool.started == ["a/fp32", "c/fp32"]  # a fresh process for c


def test_a_set_that_never_said_or_a_pool_told_not_to_gets_a_fresh_process():
    for pool, starts in ((CountingPool(budget=1), None), (CountingPool(budget=1), [start(unloads=True)])):
        if starts:
            pool.reuse_processes = False  # resources.reuse_host_processes: false
        first, _ = pool.acquire(spec("a"))
        pool.release(first, healthy=True, starts=starts)
        pool.acquire(spec("b"))
        assert pool.stopped == [first] and pool.stats()["processes"] == 2


def test_the_switch_is_declared_with_the_grids_resources(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path)
    assert parse_grid(data).resources.reuse_host_processes is True
    data["resources"] = {"reuse_host_processes": False}
    assert parse_grid(data).resources.reuse_host_processes is False
    data["resources"] = {"reuse_host_processes": "sometimes"}
    with pytest.raises(GridError, match="reuse_host_processes"):
        parse_grid(data)


def batch(ids: list[str]) -> SampleBatch:
    return SampleBatch(ids, [""] * len(ids), [8] * len(ids), [8] * len(ids),
                       pixels=[np.zeros((8, 8, 3), np.uint8)] * len(ids))


def test_a_host_swaps_loads_in_process_and_a_restarted_one_never_captions_the_wrong_model(fault_dir):
    first, second = (spec(m, loader="fault_models:named") for m in ("m1", "m2"))
    host = ModelHost(first, None, defer_load_error=True)
    assert host.begin_cell("c1", SETTINGS, Measurement(0), load=first).report.host_process_loads == 1
    host.load(second)  # the pool handed this process the next load
    begun = host.begin_cell("c2", SETTINGS, Measurement(0), load=second)
    assert begun.report.host_process_loads == 2 and begun.cells_before == 0  # a new load: its first cell
    assert begun.unloads_in_process
    assert host.caption_parts(SETTINGS, "c2", batch(["x"]), load=second).samples[0].caption == "m2 saw x"
    # Ray restarts a dead host with its constructor's arguments: the first load. A batch of the second
    # load (retried by Ray) makes it load the second one first.
    restarted = ModelHost(first, None, defer_load_error=True)
    answer = restarted.caption_window(SETTINGS, "c2", [1, 1], batch(["y"]), batch(["z"]), load=second)
    assert [r.samples[0].caption for r in answer] == ["m2 saw y", "m2 saw z"]
    assert restarted.captioner.report.host_process_loads == 2
    assert [line.split()[0] for line in (fault_dir / "loads.log").read_text().splitlines()] == \
        ["m1", "m2", "m1", "m2"]


def test_a_swap_whose_load_fails_fails_the_cell_by_name(fault_dir):
    host = ModelHost(spec("m1", loader="fault_models:named"), None, defer_load_error=True)
    broken = spec("m2", loader="fault_models:load_fails")
    host.load(broken)
    with pytest.raises(RuntimeError, match="load failed.*no weights file in m2"):
        host.begin_cell("c", SETTINGS, load=broken)


def sweep(data: dict):
    grid = parse_grid(data)
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    return run_sweep(grid, cells, samples), cells


def one_place_grid(coco: Path, out: Path, models: list[dict], reuse: bool, limit: int) -> dict:
    """Every load takes both GPUs of the shared Ray: each new model must make room."""
    data = grid_dict(coco, out, models=models, max_new_tokens=[8])
    data["dataset"]["limit"] = limit
    data["resources"] = {"local_gpus": 2, "gpus_per_actor": 2, "batch_size": 4, "reuse_host_processes": reuse}
    data["energy"] = {"enabled": False}
    return data


@pytest.mark.slow
@pytest.mark.shared_ray
def test_two_zoo_loads_in_one_process_caption_as_a_fresh_process(tmp_path, fault_dir):
    """Two zoo models in one host process; the second model's captions equal those of a sweep of it alone
    (a fresh process). The first cell ran in a fresh process in both."""
    shapes = ZOO / "shapes-data" / "test"
    captions, fresh = {}, {}
    runs = {"both": ["shapes-llava-small", "shapes-blip2-small"], "alone": ["shapes-blip2-small"]}
    for name, models in runs.items():
        data = one_place_grid(shapes, tmp_path / name, [{"id": str(ZOO / m)} for m in models], True, limit=4)
        data["dataset"] = {"captions": str(shapes / "captions.json"), "images": str(shapes / "images"),
                           "image_max_side": 64, "limit": 4}
        data["prompts"] = ["Describe this image in one sentence."]
        info, cells = sweep(data)
        assert info.exit_code == 0, info.results["reason"].tolist()
        store = ResultStore(tmp_path / name)
        tables = {Path(c.model.id).name: store.read_captions(c.cell_id) for c in cells}
        captions[name] = {m: t.sort_values("sample_id")["caption"].tolist() for m, t in tables.items()}
        fresh[name] = dict(zip(info.results["model"], info.results["fresh_process"], strict=True))
        if name == "both":  # one host process served both loads; the second cell says so
            assert len({a for t in tables.values() for a in t["actor_id"]}) == 1
    assert sorted(fresh["both"].values()) == [0.0, 1.0] and list(fresh["alone"].values()) == [1.0]
    assert captions["both"]["shapes-blip2-small"] == captions["alone"]["shapes-blip2-small"]
    assert all(len(c) == 4 and all(c) for c in captions["both"].values())


@pytest.mark.slow
@pytest.mark.shared_ray
def test_a_reused_host_that_dies_and_restarts_with_its_first_load_captions_with_the_expected_one(
        coco_mini, tmp_path, fault_dir):
    models = [{"id": m, "loader": "fault_models:named_die_reused"} for m in ("m1", "m2")]
    data = one_place_grid(coco_mini, tmp_path / "out", models, reuse=True, limit=8)
    data["measurement"] = {"warmup_batches": 0}
    info, cells = sweep(data)
    assert info.exit_code == 0, info.results["reason"].tolist()
    died_model = (fault_dir / "died").read_text().split()[0]  # the second load's process died once
    loads = [line.split()[0] for line in (fault_dir / "loads.log").read_text().splitlines()]
    first = loads[0]
    assert died_model != first and loads == [first, died_model, first, died_model]  # restart: first load
    store = ResultStore(tmp_path / "out")
    for cell in cells:  # every caption from the cell's own model, each sample once
        table = store.read_captions(cell.cell_id)
        assert len(table) == 8 and table["sample_id"].is_unique
        assert (table["caption"].str.split().str[0] == cell.model.id).all()
        # the second cell's batches: one from the reused process, one from its restart
        assert table["actor_id"].nunique() == (2 if cell.model.id == died_model else 1)
