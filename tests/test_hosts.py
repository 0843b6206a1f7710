"""Model hosts: a loaded model serves every cell of its model and precision; trial order and the pool's
choices (reuse, second copy, share, evict) decide how many loads a sweep pays."""

from pathlib import Path

import pytest
from conftest import grid_dict
from sweep_fixtures import fault_dir_fixture  # noqa: F401  (the fault_dir fixture)

from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.execute.hosts import HostPool, HostSet
from sweep.execute.trials import order_for_reuse
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.results.store import ResultStore


def _cells(coco, models, precisions, tokens):
    data = grid_dict(coco, Path("/tmp/out"), models=[{"id": m} for m in models],
                     precisions=precisions, max_new_tokens=tokens)
    return expand_cells(parse_grid(data), "fp")


def test_load_spec_ignores_generation_and_separates_models_and_precisions(coco_mini):
    cells = _cells(coco_mini, ["tiny:llava", "tiny:git"], ["fp32", "int8"], [4, 8])
    keys = {c.load_spec() for c in cells}
    assert len(cells) == 8 and len(keys) == 4
    assert cells[0].load_spec() == cells[1].load_spec()  # same model and precision, 4 vs 8 tokens


def test_order_for_reuse_keeps_a_model_in_one_lane_and_interleaves_lanes(coco_mini):
    cells = _cells(coco_mini, ["tiny:llava", "tiny:git"], ["fp32", "int8"], [4, 8, 16])
    ordered = order_for_reuse(cells, slots=2)
    assert sorted(c.cell_id for c in ordered) == sorted(c.cell_id for c in cells)
    lanes = [ordered[0::2], ordered[1::2]]
    for lane in lanes:  # each model+precision's cells stay in one lane, one after another
        keys = [c.load_spec() for c in lane]
        assert all(keys.count(k) == 3 for k in keys)
        assert [keys[i] == keys[i + 1] for i in range(len(keys) - 1)].count(False) == len(set(keys)) - 1
    # side by side (same position in both lanes) the two trials never want the same model
    assert all(a.load_spec() != b.load_spec() for a, b in zip(*lanes, strict=True))
    assert order_for_reuse(cells, slots=1) and len(order_for_reuse(cells, slots=5)) == len(cells)


def test_halving_order_runs_the_cheapest_loads_first_and_the_largest_budget_first(coco_mini):
    """Successive halving compares a trial only with the cells before it, and a dominator is never
    dearer: the loads in ascending estimated weight bytes (from config.json: the zoo's two models),
    each load's largest budget first."""
    from sweep.plan.dry_run import estimated_weight_bytes

    zoo = Path(__file__).resolve().parents[1] / "zoo"
    data = grid_dict(coco_mini, Path("/tmp/out"), precisions=["fp32", "int8", "nf4"], max_new_tokens=[4, 16],
                     models=[{"id": str(zoo / m), "family": "llava"}
                             for m in ("shapes-llava-base", "shapes-llava-small")])
    cells = expand_cells(parse_grid(data), "fp")
    ordered = order_for_reuse(cells, 1, estimated_weight_bytes)
    weights = [estimated_weight_bytes(c) for c in ordered]
    assert weights == sorted(weights) and len(set(weights)) == 6  # six loads, cheapest first
    assert [c.max_new_tokens for c in ordered] == [16, 4] * 6
    assert (ordered[0].model.id.endswith("small"), ordered[0].precision) == (True, "nf4")
    assert ordered[-1].model.id.endswith("base") and ordered[-1].precision == "fp32"
    unknown = _cells(coco_mini, ["pkg.mod:load"], ["fp32"], [4])  # a custom loader: no estimate
    assert estimated_weight_bytes(unknown[0]) == float("inf")


class CountingPool(HostPool):
    """The pool's decisions without Ray: starting and stopping are recorded, hosts are names."""

    def __init__(self, budget):
        super().__init__(budget, None, None)
        self.started: list[str] = []
        self.stopped: list[str] = []

    def _start(self, spec):
        self.loads += 1
        self.processes += spec.replicas
        self.started.append(f"{spec.model.id}/{spec.precision}")
        host_set = HostSet(self.loads, spec, spec.gpus_per_actor * spec.replicas, [f"host{self.loads}"])
        self.sets[host_set.set_id] = host_set
        return host_set

    def _stop(self, host_set):
        self.stopped.append(host_set.set_id)
        del self.sets[host_set.set_id]


def test_pool_reuses_idle_loads_shares_busy_ones_and_evicts_least_recently_used(coco_mini):
    cells = _cells(coco_mini, ["tiny:llava", "tiny:git", "tiny:blip2"], ["fp32"], [4, 8])
    a4, a8, b4, b8, c4 = (c for c in cells if c.label.split("/")[0] != "blip2" or c.max_new_tokens == 4)
    pool = CountingPool(budget=2)
    sa, _ = pool.acquire(a4.load_spec())
    sb, _ = pool.acquire(b4.load_spec())
    assert pool.loads == 2
    sa2, _ = pool.acquire(a8.load_spec())  # a is busy and no GPU is free: share it, do not load again
    assert sa2 == sa and pool.loads == 2
    pool.release(sb, healthy=True)
    sb2, _ = pool.acquire(b8.load_spec())  # b is idle and loaded: reused
    assert sb2 == sb and pool.loads == 2
    pool.release(sa, healthy=True)
    pool.release(sa2, healthy=True)
    pool.release(sb2, healthy=True)
    pool.acquire(c4.load_spec())  # a new model: the least recently used idle load (a) makes room
    assert pool.loads == 3 and pool.stopped == [sa]
    assert pool.stats() == {"loads": 3, "processes": 3, "alive": 2}


def test_pool_loads_a_second_copy_where_gpus_are_free_and_drops_failed_loads(coco_mini):
    a4, a8 = _cells(coco_mini, ["tiny:llava"], ["fp32"], [4, 8])
    pool = CountingPool(budget=2)
    s1, _ = pool.acquire(a4.load_spec())
    s2, _ = pool.acquire(a8.load_spec())  # a free GPU: two copies run side by side
    assert s1 != s2 and pool.loads == 2
    pool.release(s2, healthy=False)  # its cell failed: the load is not trusted again
    assert s2 in pool.stopped and pool.stats()["alive"] == 1
    pool.release(s1, healthy=True)
    assert pool.acquire(a4.load_spec())[0] == s1


def test_a_shared_host_labels_each_cell_with_its_own_turn(coco_mini):
    """Two cells on one loaded model (shared, or one after the other): each cell's rows say whether that
    cell found the model loaded, whatever the other cell does meanwhile; a resumed cell keeps its turn."""
    from actors.captioner import Captioner
    from actors.contract import LoadReport
    from actors.model_host import ModelHost

    class NoModel(Captioner):  # the host's contract with a captioner, without a model
        report = LoadReport("hf", "test", "llava", "cpu", 1.0, 10)
        family = type("Family", (), {"generation_defaults": {"num_beams": 1, "min_new_tokens": 9}})

        def reset_peak_memory(self):
            self.resets = getattr(self, "resets", 0) + 1

        def generate(self, requests, generate_kwargs):
            raise AssertionError("begin_cell never generates")

    host = ModelHost.__new__(ModelHost)  # the host's bookkeeping, without loading a model
    host.captioner, host.generation, host.cells_before = NoModel(), {}, {}
    host.measuring, host.warmups = {}, {}
    host.actor_id, host.node_id = "h:1", ""
    first, second = _cells(coco_mini, ["tiny:llava"], ["fp32"], [4, 8])
    start = host.begin_cell(first.cell_id, first.generation())
    assert start.cells_before == 0 and start.report is NoModel.report
    # the family's defaults under the cell's own settings, min length capped at the budget
    assert start.generation == {"num_beams": 1, "min_new_tokens": 4, "max_new_tokens": 4, "do_sample": False,
                                "repetition_penalty": 1.0}
    assert host.begin_cell(second.cell_id, second.generation()).cells_before == 1
    assert host.begin_cell(first.cell_id, first.generation()).cells_before == 0  # resumed: its own turn
    assert host.captioner.resets == 3  # every cell begins with its own peak memory


@pytest.mark.slow  # a sweep on Ray
@pytest.mark.shared_ray
def test_sweep_loads_each_model_once_and_cells_report_reuse(coco_mini, tmp_path, fault_dir):
    models = [{"id": m, "loader": "fault_models:counting"} for m in ("m1", "m2")]
    data = grid_dict(coco_mini, tmp_path / "out", models=models, max_new_tokens=[4, 8])
    data["dataset"]["limit"] = 8
    data["resources"] = {"local_gpus": 2, "batch_size": 4}
    data["energy"] = {"enabled": False}
    grid = parse_grid(data)
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    code = info.exit_code
    assert code == 0, info.results["reason"].tolist()
    loads = (fault_dir / "loads.log").read_text().splitlines()
    assert sorted(line.split()[0] for line in loads) == ["m1", "m2"]  # 4 cells, 2 loads
    results = info.results
    assert sorted(results["model_reused"].tolist()) == [0.0, 0.0, 1.0, 1.0]
    store = ResultStore(tmp_path / "out")
    for cell in cells:  # every cell captioned all its samples once, with its own token budget
        table = store.read_captions(cell.cell_id)
        assert len(table) == 8 and table["sample_id"].is_unique
        words = table["caption"].str.split().str.len()
        assert (words == cell.max_new_tokens // 2).all()
