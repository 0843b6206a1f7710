"""Ray Tune: one trial per cell, as many at once as the cluster's GPUs allow."""

from __future__ import annotations

import contextlib
import json
import math
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from actors.contract import LOAD_FAILED, LoadSpec
from sweep.data.sources import Sample
from sweep.execute.hosts import HOST_RETRIES
from sweep.execute.measure import summarize_costs, summarize_video
from sweep.execute.pipeline import BatchRows, PipelineSettings, caption_samples
from sweep.execute.stages import pixel_counts
from sweep.grid.cells import Cell
from sweep.results.batches import of_rows, per_image
from sweep.results.store import ResultStore


def _rows_writer(cell: Cell, samples: list[Sample], store: ResultStore, attempt: str,
                 stored: set[str]) -> Callable[[BatchRows], int]:
    """Writes one batch as a part of the cell's store (its caption rows with the cell's columns, its batch
    row), leaving out the samples it `stored` already (a resumed group regenerates what any member
    lacks; the batch's facts and totals are still the whole batch's, as measured); returns how many."""
    ids = {s.sample_id: s.image_id for s in samples}
    by_id = {s.sample_id: s for s in samples}
    video = any(s.video_id for s in samples)

    def save(batch: BatchRows) -> int:
        rows = batch.images[~batch.images["sample_id"].isin(stored)].reset_index(drop=True)
        if rows.empty:
            return 0
        rows.insert(0, "cell_id", cell.cell_id)
        rows.insert(1, "image_id", rows["sample_id"].map(ids))
        rows.insert(2, "model_name", cell.model.display_name)
        rows["precision"] = cell.precision
        rows["max_new_tokens"] = cell.max_new_tokens
        if video:  # the per-scene table: which part of which video, and the frames used
            scene = [by_id[sid] for sid in rows["sample_id"]]
            rows["video_id"] = [s.video_id for s in scene]
            rows["scene_index"] = [s.scene_index for s in scene]
            rows["start_s"] = [s.start_s for s in scene]
            rows["end_s"] = [s.end_s for s in scene]
            rows["video_duration_s"] = [s.video_duration_s for s in scene]
            rows["frames_used"] = [json.dumps(list(s.frame_times)) for s in scene]
        end = datetime.fromtimestamp(batch.batch["batch_end_ts"], tz=timezone.utc).isoformat()
        store.append_part(cell.cell_id, rows, pd.DataFrame([{**batch.batch, "timestamp": end,
                                                             "attempt": attempt}]))
        return len(rows)

    return save


def _consolidate(cell: Cell, samples: list[Sample], store: ResultStore, wall: float, resumed: int) -> dict:
    """The cell's parts as one table in sample order, its costs, and the cell finished in the store."""
    wanted = {s.sample_id for s in samples}
    # the rows consolidated before (an earlier rung of successive halving) and the new parts
    table = store.read_rows(cell.cell_id)
    missing = wanted - set(table["sample_id"]) if not table.empty else wanted
    if missing:
        raise RuntimeError(f"cell {cell.cell_id}: {len(missing)} samples produced no row")
    order = {s.sample_id: i for i, s in enumerate(samples)}
    table = table[table["sample_id"].isin(wanted)]
    table = table.sort_values("sample_id", key=lambda col: col.map(order)).reset_index(drop=True)
    batches = of_rows(store.read_batches(cell.cell_id), table)
    errors = table["error"].fillna("").astype(str)
    if (errors != "").all():  # nothing was captioned: a failed cell, not an "ok" one without numbers
        raise RuntimeError(f"every sample failed ({len(table)} of {len(table)}); the first: {errors.iloc[0]}")
    reports = store.read_loads(cell.cell_id)["reports"]
    costs = summarize_costs(per_image(table, batches), batches, wall, reports)
    if any(s.video_id for s in samples):
        costs.update(summarize_video(table))
    costs["resumed_samples"] = float(resumed)
    if "pixel_note" in table:  # 16/32-bit images scaled, EXIF orientations applied: counted per cell
        costs.update(pixel_counts(table["pixel_note"]))
    store.finish_cell(cell.cell_id, table, costs, batches)
    return costs


def run_cell(cell: Cell, samples: list[Sample], settings: PipelineSettings, store: ResultStore,
             host_pool: Any, on_progress: Callable[[int], None] | None = None,
             derived: tuple[Cell, ...] = (), partial: bool = False) -> dict:
    """Caption what the store lacks, consolidate, and return the cell's cost metrics.

    `partial`: a rung of successive halving below the last (`samples` the first images of the shared
    order): a cell whose consolidated table already holds them (it went further before) is left as it is.

    `derived`: cells of smaller budgets served by this cell's generation (token-budget sharing,
    `sweep.plan.budgets`): every batch is written to this cell's parts and to each derived cell's, and each of
    them is consolidated and finished in the store with its own costs. They share this cell's sample set:
    what any of them lacks is generated (a half-finished group resumes where its members stopped)."""
    wanted = {s.sample_id for s in samples}
    stored = store.covering_costs if partial else store.finished_costs
    group = [c for c in (cell, *derived) if stored(c.cell_id, wanted) is None]
    if not group:
        return stored(cell.cell_id, wanted)
    done: dict[str, set[str]] = {}
    for member in group:
        store.begin_cell(member)
        done[member.cell_id] = store.done_sample_ids(member.cell_id) & wanted
    todo = [s for s in samples if any(s.sample_id not in d for d in done.values())]
    attempt = uuid.uuid4().hex[:8]
    writers = {None if m is cell else m.max_new_tokens:
               _rows_writer(m, samples, store, attempt, done[m.cell_id]) for m in group}
    budgets = tuple(m.max_new_tokens for m in group if m is not cell)
    counted = next(iter(writers))  # progress follows the first unfinished member (the cell itself)
    progress = {"done": len(done[group[0].cell_id])}

    def save(tables: dict[int | None, pd.DataFrame]) -> None:
        for key, write in writers.items():
            n = write(tables[key])
            if key == counted:
                progress["done"] += n
        if on_progress:
            on_progress(progress["done"])

    def loads(starts: list) -> None:
        for member in group:
            store.record_loads(member.cell_id, starts, None if member is cell else member.max_new_tokens)

    start = time.perf_counter()
    if todo:
        caption_samples(cell, todo, settings, save, host_pool, on_start=loads, budgets=budgets)
    wall = time.perf_counter() - start
    costs = {m.cell_id: _consolidate(m, samples, store, wall, len(done[m.cell_id])) for m in group}
    return costs.get(cell.cell_id) or stored(cell.cell_id, wanted)


def cell_trainable(config: dict, *, cells: dict[str, Cell], samples: list[Sample],
                   settings: PipelineSettings, store_root: str, host_pool: Any,
                   derived: dict[str, tuple[Cell, ...]] | None = None,
                   rungs: list[int] | None = None) -> None:
    """One trial: the cell (and the cells its generation serves) over `samples`, or, with `rungs`
    (successive halving), over their first rungs[i] images in turn, reporting `rung` i after each but the
    last so that the scheduler can stop the trial there (`tune.report` returns once the scheduler let
    it go on)."""
    from ray import tune

    cell = cells[config["cell_id"]]
    served = (derived or {}).get(cell.cell_id, ())
    store = ResultStore(Path(store_root))
    sizes = list(rungs or [len(samples)])
    try:
        for index, size in enumerate(sizes):
            # rung by rung over the first images of the shared order: what the store holds is not redone
            costs = run_cell(cell, samples[:size], settings, store, host_pool,
                             on_progress=lambda n: tune.report({"samples_done": n, "cell_id": cell.cell_id}),
                             derived=served, partial=index < len(sizes) - 1)
            if index < len(sizes) - 1:
                tune.report({**costs, "cell_id": cell.cell_id, "rung": index, "rung_images": size})
    except Exception as err:
        # Ray wraps the actor's exception in layers of traceback: keep the root cause's last line.
        detail = "".join(traceback.format_exception(err))
        reason = root_cause(detail)
        # the reason also travels as a result (memory, not disk): on a full disk neither failure.json
        # nor Tune's own error file can be written, and the driver must still learn why (and stop)
        with contextlib.suppress(Exception):  # a trial being stopped may not report: the error still rises
            tune.report({"cell_id": cell.cell_id, "failure": reason})
        for member in (cell, *served):  # a failed shared generation fails the cells it serves
            try:
                store.write_failure(member.cell_id, reason, detail)
            except OSError:
                break
        raise
    final = {"rung": len(sizes) - 1, "rung_images": sizes[-1]} if rungs else {}
    tune.report({**costs, "cell_id": cell.cell_id, **final})


#: a host process or node that died: Ray restarted it and retried its task (HostPool's max_restarts /
#: max_task_retries) until these ran out; every other error is the cell's at its first occurrence
DIED = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
        "OutOfMemoryError: Task was killed due to the node running low on memory")


def root_cause(traceback_text: str) -> str:
    """The cell's reason from an error's traceback: its root cause's last line, said once, and whether
    it was retried (a model host that died, retried by Ray) or not (a load error, an exception)."""
    loaded = [ln.strip() for ln in traceback_text.splitlines() if LOAD_FAILED in ln]
    if loaded:  # a load that raised: deterministic, not retried (actors.model_host.ModelHost)
        return loaded[-1][loaded[-1].index(LOAD_FAILED):][:500]
    if any(mark in traceback_text for mark in DIED):
        why = _last_line(traceback_text)
        return f"model host died (retried by Ray up to {HOST_RETRIES} times, all failed): {why}"[:500]
    return _oom_or_last(traceback_text)


def _oom_or_last(traceback_text: str) -> str:
    if "CellOutOfMemory" in traceback_text or "OutOfMemoryError" in traceback_text:
        oom = [ln.strip() for ln in traceback_text.splitlines() if "oom: " in ln]
        return ("oom: " + oom[-1].split("oom: ", 1)[1]) if oom else "oom: CUDA out of memory"
    return _last_line(traceback_text)


def _last_line(traceback_text: str) -> str:
    lines = [ln.strip() for ln in traceback_text.strip().splitlines() if ln.strip()]
    causes = [ln for ln in lines if not ln.startswith(("File ", "^", "~", "Traceback", "During handling",
                                                        "The above exception"))]
    return (causes[-1] if causes else "unknown error")[:500]


def order_for_reuse(cells: list[Cell], slots: int,
                    cheapest_first: Callable[[Cell], float] | None = None) -> list[Cell]:
    """Trial order: the cells of each load (model, precision, backend, placement) kept together in one of
    `slots` lanes (the cells that run at once), lanes balanced by cell count and interleaved, so concurrent
    trials rarely want the same model (which would load it twice) and a lane's next cell finds its model
    still loaded.

    `cheapest_first` (successive halving, which compares a trial only with the cells that reached its
    rung before it; a cell's estimated weight bytes): a cell is only ever stopped by one at most as dear,
    so the loads go in ascending order of it, and within a load the largest max_new_tokens first (the
    likelier dominator of the others at the same memory; otherwise the grid's order)."""
    groups: dict[LoadSpec, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.load_spec(), []).append(cell)
    if cheapest_first is None:
        ordered_groups = sorted(groups.values(), key=len, reverse=True)
    else:
        ordered_groups = [sorted(g, key=lambda c: -c.max_new_tokens)
                          for g in sorted(groups.values(), key=lambda g: cheapest_first(g[0]))]
    lanes: list[list[Cell]] = [[] for _ in range(max(1, slots))]
    for group in ordered_groups:
        min(lanes, key=len).extend(group)
    ordered = []
    for i in range(max(map(len, lanes))):
        ordered += [lane[i] for lane in lanes if i < len(lane)]
    return ordered


def halving_order(scheduler: Any) -> Callable[[Cell], float]:
    """The loads' order under successive halving: ascending estimated weight bytes. With a synchronous
    first rung the loads whose weights are not estimated go first: measured early, they no longer hold
    every later trial at the first rung as a generation to come that might dominate it
    (`sweep.search.scheduler`; asynchronous, last: compared with everything before them)."""
    from sweep.plan.cell_facts import estimated_weight_bytes

    if not getattr(scheduler, "hold_first_rung", False):
        return estimated_weight_bytes
    def unestimated_first(cell: Cell) -> float:
        weight = estimated_weight_bytes(cell)
        return -1.0 if math.isinf(weight) else weight

    return unestimated_first


def _concurrency(scheduler: Any, slots: int) -> dict[str, Any]:
    """Tune's limit of trials at once: `slots`, not counting the trials a synchronous first rung holds
    (paused, they would count until they complete: `sweep.search.scheduler.HeldAwareGenerator`)."""
    if getattr(scheduler, "hold_first_rung", False):
        return {"search_alg": scheduler.trial_generator(slots)}
    return {"max_concurrent_trials": slots}


def concurrent_cells(total_gpus: float, cells: list[Cell]) -> int:
    """How many cells fit on the cluster's GPUs at once (at least one)."""
    need = max(c.gpus_per_actor * c.replicas for c in cells)
    return max(1, math.floor(total_gpus / need + 1e-9)) if total_gpus > 0 else 1


def run_trials(cells: list[Cell], samples: list[Sample], settings: PipelineSettings, store: ResultStore,
               storage_path: Path, run_name: str, callbacks: list[Any],
               derived: dict[str, tuple[Cell, ...]] | None = None, rungs: list[int] | None = None,
               scheduler: Any = None) -> dict[str, int]:
    """Run every cell as a Tune trial; returns the host pool's counts (model loads started).
    `derived`: lead cell id -> the cells its generation also serves (not trials of their own).
    `rungs`, `scheduler`: successive halving (`sweep.search.scheduler`): the trials report each rung
    and the scheduler stops the dominated ones there."""
    import ray
    from ray import tune

    from sweep.execute.hosts import HostPool

    gpus = ray.cluster_resources().get("GPU", 0)
    slots = concurrent_cells(gpus, cells)
    host_pool = ray.remote(HostPool).options(num_cpus=0).remote(
        gpus, settings.energy_country, settings.accelerator_type, settings.reuse_host_processes
    )
    trainable = tune.with_parameters(
        cell_trainable,
        cells={c.cell_id: c for c in cells},
        samples=samples,
        settings=settings,
        store_root=str(store.root),
        host_pool=host_pool,
        derived=dict(derived or {}),
        rungs=list(rungs) if rungs else None,
    )
    # The trial itself only coordinates; its GPUs are held by the model hosts it borrows.
    trainable = tune.with_resources(trainable, {"cpu": 0.01})
    order = [c.cell_id for c in order_for_reuse(cells, slots, halving_order(scheduler) if rungs else None)]
    tuner = tune.Tuner(
        trainable,
        param_space={"cell_id": tune.grid_search(order)},
        # trial processes are reused: a fresh one per cell costs seconds of imports (ray.data, pandas)
        tune_config=tune.TuneConfig(reuse_actors=True, scheduler=scheduler, **_concurrency(scheduler, slots)),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=str(storage_path.resolve()),
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    try:
        tuner.fit()
    finally:
        stats = ray.get(host_pool.stats.remote())
        ray.get(host_pool.shutdown.remote())
        ray.kill(host_pool)
    return stats
