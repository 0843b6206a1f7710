"""The halving scheduler's decisions driven through Ray Tune itself (a stand-in trainable that reports
rungs, the real ParetoHalvingScheduler deciding at each report, asynchronously), and the rung-by-rung
resume of a cell that recomputes nothing (sweep.execute.trials.run_cell over a real result store)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweep.search.halving import RungCell
from sweep.search.scheduler import HalvingState, ParetoHalvingScheduler

RUNGS = [8, 16, 32]
N = RUNGS[-1]
_DIFFICULTY = np.random.default_rng(0).uniform(0.5, 2.0, size=N)
# cell id -> (CIDEr offset, latency): "bad" is clearly worse than "good" at the same latency; "tied" is
# "good" plus noise; "fast" is worse but faster (on the latency front)
CELLS = {"good": (0.8, 0.05), "bad": (-0.4, 0.05), "tied": (0.8, 0.05), "fast": (0.0, 0.01)}


def synthetic(rung: int, cell_ids: list[str]) -> list[RungCell]:
    n = RUNGS[rung]
    out = []
    for i, cid in enumerate(cell_ids):
        offset, latency = CELLS[cid]
        noise = np.random.default_rng(100 + i).normal(0, 0.05, n)
        table = pd.DataFrame({"sample_id": [f"s{k:03d}" for k in range(n)], "cider": _DIFFICULTY[:n] + offset
                              + noise, "batch_latency_sec": latency, "error": ""})
        out.append(RungCell(cid, cid, table, {"memory": 1.0}))
    return out


def reporter(config: dict) -> None:
    from ray import tune

    with open(config["starts"], "a") as starts:  # every start of the function: a restart would show
        starts.write(config["cell_id"] + "\n")
    for rung in range(len(RUNGS)):
        tune.report({"rung": rung, "rung_images": RUNGS[rung]})


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def run_through_tune(order: list[str], tmp_path,
                     hold: bool = False) -> tuple[HalvingState, dict[str, int], list[str]]:
    """The cells as trials in `order`, one at a time (one GPU): the state, the last rung of each trial
    in Tune's own results, and the functions' starts. `hold`: a synchronous first rung."""
    from ray import tune

    state = HalvingState()
    scheduler = ParetoHalvingScheduler(RUNGS, {c: (c,) for c in CELLS}, synthetic, ["latency", "memory"],
                                       0.95, state, hold_first_rung=hold)
    starts = tmp_path / "starts.txt"
    # as sweep.execute.trials.run_trials does: one trial at a time, not counting the held ones
    limit = {"search_alg": scheduler.trial_generator(1)} if hold else {"max_concurrent_trials": 1}
    tuner = tune.Tuner(
        tune.with_resources(reporter, {"cpu": 0.01}),
        param_space={"cell_id": tune.grid_search(order), "starts": str(starts)},
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True, **limit),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    last = {r.config["cell_id"]: int(r.metrics["rung"]) for r in results}
    return state, last, starts.read_text().split()


@pytest.mark.slow  # ~10 s idle: two Tune runs of 4 trials
def test_scheduler_stops_the_dominated_trial_at_the_first_rung_through_tune(local_ray, tmp_path) -> None:
    state, last, starts = run_through_tune(list(CELLS), tmp_path / "a")
    assert last == {"good": 2, "tied": 2, "fast": 2, "bad": 0}  # Tune's own results say where each ended
    assert starts == list(CELLS)  # each trial started once: nothing paused, nothing restarted
    assert list(state.stopped) == ["bad"]
    why = state.stopped["bad"]
    assert why.by == "good" and why.rung == 0 and why.n_images == RUNGS[0]  # the one that reached it first
    assert why.describe().startswith(f"dominated by good at {RUNGS[0]} images: CIDEr −1.")
    assert state.lines(RUNGS) == ["rung 1 (8 images): 1 of 4 generations stopped",
                                  "rung 2 (16 images): 0 of 3 generations stopped"]
    # asynchronous: a trial is compared with the cells that reached its rung before it; run first, the
    # dominated cell has no comparator and runs to the end (what the largest-budget-first order is for)
    state, last, _ = run_through_tune(["bad", "good", "tied", "fast"], tmp_path / "b")
    assert last["bad"] == 2 and not state.stopped


def one_batch(rows: pd.DataFrame):
    """Rows of one batch with its facts on each (as a host's answer reads flat) as the pipeline hands
    them on: caption rows and one batch row."""
    from sweep.execute.pipeline import BatchRows
    from sweep.results.batches import split_legacy

    images, batches = split_legacy(rows)
    return BatchRows(images, batches.iloc[0].to_dict())


@pytest.mark.slow  # ~10 s idle: one Tune run of 4 trials, 3 of them paused and resumed
def test_synchronous_first_rung_stops_the_dominated_cell_that_ran_first(local_ray, tmp_path) -> None:
    """The order the asynchronous rule loses on (the dominated cell first, it ran to the end above):
    with the first rung held, every trial reaches it, then the held ones resume best first and the
    dominated one is stopped there, by a cell that came after it."""
    state, last, starts = run_through_tune(["bad", "fast", "tied", "good"], tmp_path, hold=True)
    assert last == {"good": 2, "tied": 2, "fast": 2, "bad": 0}
    # the last to reach the first rung goes straight on; the held ones resume by first-rung CIDEr
    assert state.resumed == ["tied", "fast", "bad"]
    assert starts == ["bad", "fast", "tied", "good", "tied", "fast", "bad"]  # each held trial once more
    assert list(state.stopped) == ["bad"] and state.stopped["bad"].by in {"good", "tied"}
    assert state.stopped["bad"].rung == 0 and not state.held
    assert state.lines(RUNGS) == ["rung 1 (8 images): 1 of 4 generations stopped",
                                  "rung 2 (16 images): 0 of 3 generations stopped"]


def test_best_first_resumes_the_highest_first_rung_cider_first() -> None:
    from sweep.search.scheduler import best_first

    assert best_first(["a", "b", "c", "d"], {"a": 0.5, "b": 1.5, "c": 0.5}) == ["b", "a", "c", "d"]


MEMORY_GB = {"small": 1.0, "mid": 2.0, "large": 3.0}


def tied_by_memory(rung: int, cell_ids: list[str]) -> list[RungCell]:
    """Cells tied on CIDEr and latency (none stops another), their memory from MEMORY_GB."""
    n = RUNGS[rung]
    return [RungCell(cid, cid, pd.DataFrame({"sample_id": [f"s{k:03d}" for k in range(n)],
                                             "cider": _DIFFICULTY[:n], "batch_latency_sec": 0.05,
                                             "error": ""}), {"memory": MEMORY_GB[cid]})
            for cid in cell_ids]


def first_rung_answers(order: list[str], estimates: dict | None) -> list[str]:
    """What the scheduler answers each trial's first rung report, the trials reporting in `order`."""
    from types import SimpleNamespace

    from sweep.search.halving import MemoryEstimate

    scheduler = ParetoHalvingScheduler(
        RUNGS, {c: (c,) for c in MEMORY_GB}, tied_by_memory, ["latency", "memory"], 0.95, HalvingState(),
        hold_first_rung=True,
        estimates=estimates and {c: MemoryEstimate("fp32", gb * 1e9) for c, gb in estimates.items()})
    return [scheduler.on_trial_result(None, SimpleNamespace(trial_id=c, config={"cell_id": c}), {"rung": 0})
            for c in order]


def test_first_rung_holds_only_while_a_generation_to_come_may_have_no_more_memory() -> None:
    """In ascending memory (the halving order) no trial is held: nothing still to come could stop it, so
    it is not paused (and loaded again) for nothing. A trial reaching the first rung before a cheaper
    one is held, as is every trial where nothing is estimated."""
    from ray.tune.schedulers import TrialScheduler

    go, hold = TrialScheduler.CONTINUE, TrialScheduler.PAUSE
    assert first_rung_answers(["small", "mid", "large"], MEMORY_GB) == [go, go, go]
    assert first_rung_answers(["large", "mid", "small"], MEMORY_GB) == [hold, hold, go]
    assert first_rung_answers(["small", "large", "mid"], MEMORY_GB) == [go, hold, go]
    assert first_rung_answers(["small", "mid", "large"], None) == [hold, hold, go]
    # an estimate that misses (the waiting "mid" estimated below what "small" measured): held
    assert first_rung_answers(["small", "mid", "large"], {**MEMORY_GB, "mid": 0.5}) == [hold, go, go]


def test_halving_order_measures_the_unestimated_loads_first_when_the_first_rung_is_held(monkeypatch) -> None:
    from types import SimpleNamespace

    from sweep.execute.trials import halving_order
    from sweep.plan import cell_facts

    weights = {"a": 2.0, "b": float("inf"), "c": 1.0}
    monkeypatch.setattr(cell_facts, "estimated_weight_bytes", lambda cell: weights[cell.cell_id])
    cells = [SimpleNamespace(cell_id=c) for c in weights]
    held = SimpleNamespace(hold_first_rung=True)
    assert [c.cell_id for c in sorted(cells, key=halving_order(held))] == ["b", "c", "a"]
    assert [c.cell_id for c in sorted(cells, key=halving_order(None))] == ["c", "a", "b"]


def test_held_trials_resume_best_first_and_no_more_at_once_than_the_slots() -> None:
    """choose_trial_to_run: new trials first; the held ones only once every generation has its first
    rung, the best first, and only while fewer trials than the slots run (on one GPU a second resumed
    trial would wait for a host forever: the pool stops an idle model only for a new acquire)."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    scheduler = ParetoHalvingScheduler(RUNGS, {c: (c,) for c in "abc"}, synthetic, ["memory"], 0.95,
                                       HalvingState(), hold_first_rung=True)
    scheduler.trial_generator(1)  # one slot, as on CPU
    status = {"a": Trial.PAUSED, "b": Trial.PAUSED, "c": Trial.PENDING}
    controller = SimpleNamespace(get_trials=lambda: [SimpleNamespace(status=status[c], config={"cell_id": c})
                                                     for c in "abc"])

    def chosen() -> str | None:
        trial = scheduler.choose_trial_to_run(controller)
        return trial and trial.config["cell_id"]

    scheduler.reached, scheduler.paused = {"a": 0, "b": 0}, {"a": 0.5, "b": 1.5}
    assert chosen() == "c"  # a generation not started yet goes first
    status["c"] = Trial.RUNNING
    assert chosen() is None  # c has not reached the first rung: the held ones wait
    scheduler.reached["c"] = 0
    assert chosen() is None  # c runs on: the one slot is taken
    status["c"] = Trial.TERMINATED
    assert chosen() == "b"  # best first
    scheduler.slots = 2
    status["c"] = Trial.RUNNING
    assert chosen() == "b"


def test_resume_mid_rung_recomputes_nothing(tmp_path, monkeypatch) -> None:
    """A cell consolidated at rung 1 (8 images) and interrupted after 4 images of rung 2: the next
    attempt captions only the 4 images it lacks, and its table keeps the stored rows unchanged."""
    from sweep.data.sources import Sample
    from sweep.execute import trials
    from sweep.grid.cells import Cell
    from sweep.results.store import ResultStore

    cell = Cell.model_validate(CELL)
    samples = [Sample(sample_id=f"s{k:03d}", image_id=k, path="", references=("a",), content_sha1="")
               for k in range(16)]
    store = ResultStore(tmp_path)
    asked: list[list[str]] = []

    def fake_caption(cell_, todo, settings, save, host_pool, on_start=None, budgets=()):
        asked.append([s.sample_id for s in todo])
        rows = pd.DataFrame({"sample_id": [s.sample_id for s in todo], "caption": "a shape",
                             "error": "", "batch_latency_sec": 0.01, "processing_time_sec": 0.01,
                             "batch_end_ts": 1.0, "energy_kwh": 0.0, "emissions_kg": 0.0})
        for start in range(0, len(rows), 4):
            save({None: one_batch(rows.iloc[start:start + 4].reset_index(drop=True))})

    monkeypatch.setattr(trials, "caption_samples", fake_caption)
    monkeypatch.setattr(trials, "summarize_costs",
                        lambda table, batches, wall, reports: {"n_samples": len(table)})
    trials.run_cell(cell, samples[:8], None, store, None, partial=True)
    first = store.read_captions(cell.cell_id)
    # an interrupted second rung: 4 of its 8 new images in a part, not consolidated
    interrupted = trials._rows_writer(cell, samples, store, "killed", set(first["sample_id"]))
    interrupted(one_batch(pd.DataFrame({
        "sample_id": [f"s{k:03d}" for k in range(8, 12)], "caption": "x", "error": "",
        "batch_latency_sec": 0.01, "processing_time_sec": 0.01, "batch_end_ts": 2.0,
        "energy_kwh": 0.0, "emissions_kg": 0.0})))
    asked.clear()
    # rung 1 again (a retried trial starts over): answered from the store, nothing captioned
    assert trials.run_cell(cell, samples[:8], None, store, None, partial=True)["n_samples"] == 8
    assert asked == []
    costs = trials.run_cell(cell, samples, None, store, None)
    assert asked == [[f"s{k:03d}" for k in range(12, 16)]]
    assert costs["resumed_samples"] == 12 and costs["n_samples"] == 16
    table = store.read_captions(cell.cell_id)
    assert list(table["sample_id"]) == [s.sample_id for s in samples]
    kept = table.set_index("sample_id").loc[first["sample_id"], "attempt"]
    assert list(kept) == list(first["attempt"])  # rung 1's rows are the stored ones, not redone
    assert list(table["attempt"].iloc[8:12]) == ["killed"] * 4


CELL = {"model": {"id": "tiny:llava"}, "precision": "fp32", "max_new_tokens": 4, "prompt": "p",
        "num_beams": 1, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "min_new_tokens": None,
        "repetition_penalty": 1.0, "backend": "hf", "batch_size": 4, "gpus_per_actor": 1, "replicas": 1,
        "dataset_fingerprint": "x"}
