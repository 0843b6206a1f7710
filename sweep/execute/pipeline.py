"""One cell's pipeline: samples → decode/resize (one CPU task per batch) → caption on the cell's model hosts
(GPU actors lent by the sweep's `HostPool`, kept loaded across the cells of one model)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pandas as pd

from actors.contract import BatchResult, BudgetResult, CellStart, ModelHostApi, Preprocessor, SampleResult
from sweep.data.sources import Sample
from sweep.execute.hosts import call_host
from sweep.execute.stages import decode_task
from sweep.grid.cells import Cell
from sweep.grid.config import GridConfig
from sweep.results.batches import batch_row


@dataclass(frozen=True)
class PipelineSettings:
    """The grid settings the per-cell pipeline needs (the grid itself stays on the driver)."""

    image_max_side: int
    cpus_per_decode_task: float
    energy_country: str | None
    accelerator_type: str | None = None  # e.g. "L4": model actors only on nodes with that accelerator
    max_image_pixels: int | None = 89_478_485  # dataset.max_image_pixels: larger images are error rows
    reuse_host_processes: bool = True  # resources.reuse_host_processes (`sweep.execute.hosts.HostPool`)
    # run the family's processor in the decode tasks where the hosts offer it (`CellStart.preprocessor`)
    preprocess_in_decode_tasks: bool = True

    @classmethod
    def from_grid(cls, grid: GridConfig) -> PipelineSettings:
        return cls(
            image_max_side=grid.dataset.image_max_side,
            cpus_per_decode_task=grid.resources.cpus_per_decode_task,
            energy_country=grid.energy.country_iso_code if grid.energy.enabled else None,
            accelerator_type=grid.resources.accelerator_type,
            max_image_pixels=getattr(grid.dataset, "max_image_pixels", None),
            preprocess_in_decode_tasks=grid.resources.preprocess_in_decode_tasks,
            reuse_host_processes=grid.resources.reuse_host_processes,
        )


SAMPLE_FIELDS = tuple(f.name for f in fields(SampleResult))


class MissingBudget(RuntimeError):
    """A host answered a batch without a budget the driver asked it to serve from that generation."""


@dataclass
class BatchRows:
    """One batch of one cell: its caption rows (`sweep.results.tables.CAPTION_TABLE`, each naming the
    batch) and its row of the batch table (`BATCH_TABLE`: the host's facts once)."""

    images: pd.DataFrame
    batch: dict[str, Any] = field(default_factory=dict)


def caption_rows(result: BatchResult, batch_id: str = "") -> BatchRows:
    """A host's answer as one batch of caption rows and its batch row; `batch_id` a new one when ""."""
    batch_id = batch_id or uuid.uuid4().hex[:16]
    columns: dict[str, list[Any]] = {key: [] for key in SAMPLE_FIELDS}
    for sample in result.samples:
        for key in SAMPLE_FIELDS:
            columns[key].append(getattr(sample, key))
    # built at once: column by column, pandas' inserts cost ~6 ms a batch on the driver (profiled)
    images = pd.DataFrame({**columns, "batch_id": [batch_id] * len(result.samples)})
    return BatchRows(images, batch_row(result, batch_id))


def budget_answer(result: BatchResult, budget: int) -> BudgetResult:
    """The host's answer for a smaller budget of this batch, checked; a batch with nothing captioned
    (every sample a decode error) needs none."""
    answer = result.budgets.get(budget)
    n = len(result.samples)
    if answer is None:
        if result.captioned == 0:
            return BudgetResult(budget, [""] * n, [0] * n, 0.0, "decode_step_times")
        answered = ", ".join(map(str, sorted(result.budgets))) or "none"
        raise MissingBudget(
            f"the model host {result.actor_id} answered no budget {budget} for a batch of {n} samples (it "
            f"answered: {answered}): it does not serve GenerationSettings.budgets (token-budget sharing); "
            "set generation.share_token_budgets: false to generate each budget on its own")
    if answer.max_new_tokens != budget or len(answer.captions) != n or len(answer.generated_tokens) != n:
        raise MissingBudget(
            f"the model host {result.actor_id} answered budget {budget} with max_new_tokens "
            f"{answer.max_new_tokens}, {len(answer.captions)} captions and {len(answer.generated_tokens)} "
            f"token counts for a batch of {n} samples")
    return answer


def derived_rows(result: BatchResult, budget: int, lead_id: str, batch_id: str = "") -> BatchRows:
    """The batch of the cell with the smaller `budget`, served by the generation of cell `lead_id`
    (token-budget sharing): its captions and token counts from `result.budgets[budget]`; its batch latency
    the time until every sequence of the batch had stopped or reached `budget` tokens (the batch's end
    moved to then); the batch's energy apportioned by that latency over the whole batch's; peak memory
    the shared generation's. `shared_batch_latency_sec` keeps the whole batch's latency (the generation
    window, `sweep.execute.measure.summarize_costs`), `budget_measured` how the latency was taken."""
    answer = budget_answer(result, budget)
    rows = caption_rows(result, batch_id)
    images, batch = rows.images, rows.batch
    ok = (images["error"] == "").to_numpy()
    images["caption"] = answer.captions
    images["generated_tokens"] = [int(n) for n in answer.generated_tokens]
    latency = float(answer.latency_sec)
    images["processing_time_sec"] = [latency / result.captioned if good else 0.0 for good in ok]
    share = min(1.0, latency / result.latency_sec) if result.latency_sec > 0 else 0.0
    batch.update(batch_latency_sec=latency, batch_end_ts=result.start_ts + latency,
                 energy_kwh=batch["energy_kwh"] * share, emissions_kg=batch["emissions_kg"] * share,
                 shared_generation=lead_id, shared_batch_latency_sec=result.latency_sec,
                 budget_measured=answer.measured)
    return rows


def batch_tables(result: BatchResult, lead_id: str,
                 budgets: tuple[int, ...]) -> dict[int | None, BatchRows]:
    """One batch for every cell it serves: None -> the generating cell's own, t -> the derived cell of
    budget t (one batch id: one host answer). Every budget is checked before any row is handed on, so a
    host that does not answer a budget fails the batch before any cell's store sees it."""
    batch_id = uuid.uuid4().hex[:16]
    tables = {t: derived_rows(result, t, lead_id, batch_id) for t in budgets}
    return {None: caption_rows(result, batch_id), **tables}


def decode_rows(samples: list[Sample]) -> list[dict[str, Any]]:
    """What the decode tasks get per sample. `content_sha1`: the decode task checks the bytes it reads
    against it (a file changed mid-run is an error row, not a caption stored under the old content's
    cell id); video scenes and the rows of a Hugging Face dataset's Arrow files have none to check."""
    return [{"sample_id": s.sample_id, "path": s.path, "frame_times": list(s.frame_times), "error": s.error,
             "arrow_row": s.arrow_row, "arrow_column": s.arrow_column,
             **({} if s.video_id or s.arrow_column else {"content_sha1": s.content_sha1})} for s in samples]


def caption_samples(cell: Cell, samples: list[Sample], settings: PipelineSettings,
                    on_batch: Callable[[dict[int | None, BatchRows]], None], host_pool: Any,
                    on_start: Callable[[list[CellStart]], None] | None = None,
                    budgets: tuple[int, ...] = ()) -> int:
    """Caption every sample with the cell's model, handing each finished batch to `on_batch` as it
    arrives (so a crash loses at most the batches in flight), and the hosts' load reports to `on_start`
    once, before the first batch. Returns the number of rows produced (of the cell itself).

    `budgets`: smaller max_new_tokens the same generation serves (token-budget sharing, `sweep.plan.budgets`):
    each batch's rows reach `on_batch` as {None: the cell's rows, t: the rows of budget t}.

    Each batch is decoded by Ray tasks of its own (`sweep.execute.stages.decode_batch`, `cpus_per_decode_task`
    CPUs, `DECODE_PIECE` images each) whose results go by reference straight to one of the cell's hosts
    (round robin): the pixels
    never pass through this process. Enough batches are kept in flight to keep every decode slot of the
    cluster busy and two batches queued per host, so a host never waits for the next one. (Ray Data's
    streaming map and `iter_batches` fed the hosts at about half this rate, leaving a host idle 0.12-0.18 s
    per batch with a captioner that costs nothing: benchmarks/README.md, section 8.)
    """
    import ray

    video = any(s.video_id for s in samples)
    rows = decode_rows(samples)
    generation = replace(cell.generation(), budgets=tuple(sorted(budgets)))
    spec = cell.load_spec()
    set_id, hosts = ray.get(host_pool.acquire.remote(spec))
    healthy = False
    starts: list[CellStart] = []
    produced = 0
    in_flight: list[Any] = []

    def collect(keep: int) -> None:
        nonlocal produced
        while len(in_flight) > keep:
            (ref,), _ = ray.wait(in_flight, num_returns=1)
            in_flight.remove(ref)
            answer = ray.get(ref)
            for result in answer if isinstance(answer, list) else [answer]:  # a window: one per batch
                tables = batch_tables(result, cell.cell_id, generation.budgets)
                on_batch(tables)
                produced += len(tables[None].images)

    try:
        # waits for the model to load; a load error surfaces here, before any image is read
        measurement = cell.measurement()
        # every call names the load it expects: a host kept from another load swaps to this one first, and
        # a host restarted by Ray (it comes back with its first load) loads it again
        starts = ray.get([call_host(host, ModelHostApi.begin_cell, cell.cell_id, generation, measurement,
                                    load=spec) for host in hosts])
        if on_start:
            on_start(starts)
        # "DEFAULT": not the trial's placement group (Tune's, of 0.01 CPU), which a task launched from
        # the trial would otherwise be captured in and never fit
        prepare = decode_task_preprocessor(starts, generation.prompt, settings.preprocess_in_decode_tasks)
        cpus = decode_task_cpus(settings.cpus_per_decode_task, prepare is not None)
        decode = ray.remote(decode_task).options(num_cpus=cpus, scheduling_strategy="DEFAULT")
        window = batches_in_flight(len(hosts), ray.cluster_resources().get("CPU", 1.0), cpus)
        size = cell.batch_size
        # a host whose engine schedules requests itself (vLLM) takes several batches per call
        per_call = max(1, min(s.batches_per_call for s in starts))
        if per_call > 1:
            window = max(2 * len(hosts), window // per_call)
        batches = [rows[start:start + size] for start in range(0, len(rows), size)]
        for i, first in enumerate(range(0, len(batches), per_call)):
            group = batches[first:first + per_call]
            pieces = [decode.remote(batch[j:j + DECODE_PIECE], video, settings.image_max_side,
                                    settings.max_image_pixels, prepare)
                      for batch in group for j in range(0, len(batch), DECODE_PIECE)]
            host = hosts[i % len(hosts)]
            if per_call == 1:
                in_flight.append(call_host(host, ModelHostApi.caption_parts, generation, cell.cell_id,
                                           *pieces, load=spec))
            else:
                sizes = [len(batch) for batch in group]
                in_flight.append(call_host(host, ModelHostApi.caption_window, generation, cell.cell_id, sizes,
                                           *pieces, load=spec))
            collect(keep=window)
        collect(keep=0)
        healthy = True
        return produced
    finally:
        ray.get(host_pool.release.remote(set_id, healthy, starts))


def decode_task_preprocessor(starts: list[CellStart], prompt: str, wanted: bool
                             ) -> tuple[Preprocessor, str] | None:
    """What the decode tasks prepare with (`stages.decode_batch`): the hosts' one offer and the prompt,
    when every host of the cell makes the same one; else None (the processor runs on the hosts)."""
    offers = {s.preprocessor for s in starts}
    if not wanted or len(offers) != 1 or None in offers:
        return None
    return offers.pop(), prompt


def decode_task_cpus(cpus_per_decode_task: float, preparing: bool) -> float:
    """CPUs per decode task: the grid's, and at least 1 when the tasks run the processor. Ray keeps as
    many idle workers as the node has CPUs and ends the others after a second idle; a worker that runs
    the processor imports torch and transformers and loads the processor first (5 s to over a minute on
    2 loaded cores, measured), so tasks that fit more workers than CPUs paid that again after every
    pause in the feed."""
    return max(1.0, cpus_per_decode_task) if preparing else cpus_per_decode_task


# Images per decode task: a larger batch is decoded in pieces side by side, so its first batch is ready
# once its own pieces are (one 32-image task shared the cores with the next batches' tasks: 1.1-3 s to a
# cell's first batch, against 0.2-0.3 s at batch 8).
DECODE_PIECE = 8


def batches_in_flight(hosts: int, cluster_cpus: float, cpus_per_decode_task: float) -> int:
    """How many batches a cell keeps submitted (decoding or queued on a host) before it waits for one:
    two queued per host, plus one per decode slot of the cluster (at most 16: each batch in flight holds
    its pixels in the object store, and a crash loses the batches in flight)."""
    slots = int(cluster_cpus // cpus_per_decode_task) if cpus_per_decode_task > 0 else 1
    return 2 * hosts + max(1, min(16, slots))
