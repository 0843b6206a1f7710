"""A model host (a GPU actor lent by `sweep.execute.hosts.HostPool`): one model at one precision, loaded once,
captioning batches for every cell that shares that load (cells differ in generation settings, never in
what is loaded: `actors.contract.LoadSpec`). Decode errors pass through untouched."""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Sequence

from actors.backends import load_captioner
from actors.captioner import Captioner
from actors.contract import (
    LOAD_FAILED,
    BatchResult,
    BudgetResult,
    CaptionRequest,
    CellStart,
    GenerationSettings,
    LoadSpec,
    Measurement,
    SampleBatch,
    SampleResult,
)
from actors.energy import EnergyMeter
from actors.generation import BudgetCut, Generation, merge_cuts, preprocess_clock
from actors.generation_retry import (
    INPUT_ERRORS,
    generate_per_image,
    with_oom_retry,
)
from actors.host_window import latency_kind, split_window
from actors.lean_process import spare_unused_imports
from actors.prepare import images_of

NAN = float("nan")


def engine_seconds(value: float | None) -> float:
    return NAN if value is None else float(value)


def requests_of(batch: SampleBatch, rows: list[int], prompt: str) -> list[CaptionRequest]:
    """The rows' requests: their images, or the processor outputs a decode task built for them."""
    if batch.prepared is not None:
        tensors = batch.prepared.tensors
        return [CaptionRequest(batch.sample_ids[i], [], prompt, prepared=tensors[i]) for i in rows]
    return [CaptionRequest(batch.sample_ids[i], images_of(batch, i), prompt) for i in rows]


def free_memory() -> None:
    """What a dropped model held, given back before the next load of this process: its cycles collected,
    the heap trimmed (glibc keeps freed pages otherwise, and the next cell's peak RSS would hold them), and
    on CUDA the allocator's cache emptied and its peak statistics reset."""
    import ctypes
    import gc

    import torch

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


class ModelLoadFailed(RuntimeError):
    """The host's model did not load: a deterministic error, raised by `begin_cell` (not retried by Ray)."""


def effective_generation(family_defaults: dict, cell_kwargs: dict) -> dict:
    """The family's defaults under the cell's settings, with min length never above the budget."""
    kwargs = {**family_defaults, **cell_kwargs}
    for key in ("min_new_tokens", "min_length"):
        if key in kwargs:
            kwargs[key] = min(kwargs[key], kwargs["max_new_tokens"])
    return kwargs


def checked_budgets(settings: GenerationSettings) -> tuple[int, ...]:
    """The cell's smaller budgets, ascending; each must be a positive int below its max_new_tokens."""
    budgets = tuple(sorted(set(settings.budgets)))
    bad = [t for t in budgets if not isinstance(t, int) or not 1 <= t < settings.max_new_tokens]
    if bad:
        raise ValueError(f"budgets {bad} are not smaller max_new_tokens (1 <= t < {settings.max_new_tokens})")
    return budgets


def ray_node_id() -> str:
    """The Ray node this process runs on; "" outside Ray (Ray is never imported here if absent)."""
    import sys

    ray = sys.modules.get("ray")
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else ""


class ModelHost:
    """Holds one loaded captioner; `begin_cell` when a cell starts on it, `caption` per batch. What the
    driver calls on it is `actors.contract.ModelHostApi`."""

    def __init__(self, spec: LoadSpec | None, energy_country: str | None, captioner: Captioner | None = None,
                 defer_load_error: bool = False, own_process: bool = False):
        """`captioner`: one already loaded (benchmarks and CI checks outside Ray); else loaded from `spec`.

        `own_process`: the process is this host's alone (a Ray actor), so a load of a built-in family spares
        transformers an import it would make for nothing (`actors.lean_process`).

        `defer_load_error` (a Ray actor): a load that raises (an import, a missing file, a configuration
        or refusal, out of memory at load time) is kept and raised by `begin_cell` instead. Raised here it
        would kill the actor, and Ray restarts a dead actor and retries its task (`max_restarts`,
        `max_task_retries`: meant for a process or node that died): the same load would run three times
        to fail the same way. Raised by a method, it is an application error, which Ray does not retry."""
        self.own_process = own_process
        self.spec = spec
        self.defer_load_error = defer_load_error
        self.load_error: str = ""
        self.process_loads = 0  # loads this process has run (`LoadReport.host_process_loads`)
        self.captioner = captioner
        self.actor_id = f"{socket.gethostname()}:{os.getpid()}"
        self.node_id = ray_node_id()
        self.energy = EnergyMeter(energy_country)
        self._forget_cells()
        self._vllm_here: bool | None = None
        if captioner is None:
            if spec is None:
                raise ValueError("ModelHost needs a LoadSpec or a loaded captioner")
            self._load(spec)

    def _forget_cells(self) -> None:
        """The per-cell state of one load (a new load starts with none)."""
        self.generation: dict[GenerationSettings, dict] = {}  # cell settings -> effective kwargs
        self.cells_before: dict[str, int] = {}  # cell id -> cells this load had begun before it
        self.measuring: dict[str, tuple[Measurement, str]] = {}  # cell id -> its measurement, cache policy
        self.warmups: dict[str, int] = {}  # cell id -> warm-up generations still due before its first batch

    def _load(self, spec: LoadSpec) -> None:
        if self.own_process and spec.model.loader is None:
            # a user's loader may never import transformers: sparing it would import transformers.utils
            spare_unused_imports()
        self.load_error = ""
        self.process_loads += 1
        try:
            self.captioner = load_captioner(spec)
        except Exception as err:
            if not self.defer_load_error:
                raise
            self.load_error = f"{type(err).__name__}: {err}".splitlines()[0][:1000]
            return
        self.captioner.report.host_process_loads = self.process_loads

    def load(self, spec: LoadSpec | None) -> None:
        """Make `spec` this host's load (None: keep what is loaded): a no-op when it is loaded; else the
        current model is dropped, its memory freed (`free_memory`) and `spec` loaded; a load error is kept
        for `begin_cell` (`actors.contract.ModelHostApi`: every driver call names its load)."""
        if spec is None or spec == self.spec:
            return
        if self.captioner is not None and not self.captioner.unloads_in_process:
            raise RuntimeError(
                f"this host's {self.captioner.report.backend} model does not unload in-process, so it cannot "
                f"load {spec.model.id} ({spec.precision}) in its place: that load needs a fresh host process")
        self.captioner = None
        self._forget_cells()
        free_memory()
        self.spec = spec
        self._load(spec)

    def begin_cell(self, cell_id: str, settings: GenerationSettings,
                   measurement: Measurement | None = None, *, load: LoadSpec | None = None) -> CellStart:
        """A new cell starts on this model: its peak memory is its own (unless another cell shares the
        host meanwhile), and it starts cold (`Measurement`): caches emptied, a warm-up due before its first
        batch. Waits for the load: a load error surfaces here, before any image is read. `load`: the load
        the cell expects (`ModelHostApi`), loaded first when it is not this host's."""
        self.load(load)
        if getattr(self, "load_error", ""):  # (a host built without __init__, in tests, has none)
            raise ModelLoadFailed(f"{LOAD_FAILED}: {self.load_error}")
        measurement = measurement or Measurement()
        self.captioner.reset_peak_memory()
        policy = self._reset_caches(measurement)
        self.measuring[cell_id] = (measurement, policy)
        self.warmups[cell_id] = measurement.warmup_batches
        before = self.cells_before.setdefault(cell_id, len(self.cells_before))
        rendered = self.captioner.rendered_prompt(settings.prompt)
        offer = getattr(self.captioner, "preprocessor", lambda: None)()
        return CellStart(self.actor_id, self.node_id, self.captioner.report, self._kwargs(settings), before,
                         rendered, int(self.captioner.batches_per_call), policy,
                         measurement.warmup_batches, offer,
                         unloads_in_process=bool(getattr(self.captioner, "unloads_in_process", False)),
                         vllm_here=self.vllm_here())

    def vllm_here(self) -> bool:
        """Whether backend auto may pick vLLM on this machine (CUDA and vLLM importable): asked once."""
        if getattr(self, "_vllm_here", None) is None:
            from actors.backends import detect_machine

            machine = detect_machine()
            self._vllm_here = machine["cuda"] and machine["vllm_importable"]
        return bool(self._vllm_here)

    def _reset_caches(self, measurement: Measurement) -> str:
        """Empty the captioner's caches if the measurement says so; the cell's `cache_policy` in words."""
        if not measurement.reset_caches:
            return "kept across cells (measurement.reset_caches: false)"
        what = self.captioner.reset_caches()
        if what:
            return f"cold: {what} reset at the cell's start and after its warm-up"
        return "cold: no cache kept across generate() calls"

    def _warm_up(self, batch: SampleBatch, rows: list[int], settings: GenerationSettings, cell_id: str,
                 budgets: tuple[int, ...]) -> None:
        """The cell's due warm-up: its first batch (same images, same shapes) generated and thrown away,
        outside every measurement; then the caches emptied again, so the measured batch misses them."""
        import torch

        times = self.warmups.pop(cell_id, 0)
        if not times or not rows:
            return
        requests = requests_of(batch, rows, settings.prompt)
        try:
            for _ in range(times):
                self.captioner.generate_budgets(requests, self._kwargs(settings), budgets)
        except (*INPUT_ERRORS, torch.cuda.OutOfMemoryError):  # the measured batch handles these
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if self.measuring[cell_id][0].reset_caches:
            self.captioner.reset_caches()

    def _kwargs(self, settings: GenerationSettings) -> dict:
        if settings not in self.generation:
            defaults = self.captioner.family.generation_defaults
            self.generation[settings] = effective_generation(defaults, settings.generate_kwargs())
        return self.generation[settings]

    def caption(self, batch: SampleBatch, settings: GenerationSettings, cell_id: str,
                first_batch: int | None = None, load: LoadSpec | None = None) -> BatchResult:
        """Caption the batch at the cell's max_new_tokens, and answer each of its smaller `budgets`: cut
        from that same generation where the captioner can (`decode_step_times`), else generated on its own
        after it (`own_generation`). The batch's latency, energy, peak memory and timestamps are those of
        the generation at max_new_tokens only: own-budget generations run after the energy meter stops.
        A batch whose generation raises on its input (`INPUT_ERRORS`, not CUDA OOM) is generated image by
        image: an image rejected alone is an error row with the processor's message, in every budget too.
        A cell's first batch on this host is preceded by its warm-up (`first_batch`: of that many images).
        `load`: the load the batch expects (`ModelHostApi`), loaded first when it is not this host's."""
        self.load(load)
        errors = list(batch.errors)
        ok = [i for i, err in enumerate(errors) if not err]
        budgets = checked_budgets(settings)
        kwargs = self._kwargs(settings)
        self._warm_up(batch, ok[:first_batch], settings, cell_id, budgets)
        generation = Generation([], 0.0)
        requests: list[CaptionRequest] = []
        self.energy.start()
        start_ts = time.time()
        start = time.perf_counter()
        if ok:
            requests = requests_of(batch, ok, settings.prompt)
        overhead = {"pixels": time.perf_counter() - start}
        preprocess = [math.nan]
        if ok:
            with preprocess_clock() as preprocess:
                generation, failed = generate_per_image(
                    lambda chunk: self.captioner.generate_budgets(chunk, kwargs, budgets), requests)
            if failed:  # images the processor rejected: error rows; the rest of the batch is kept
                for j, why in failed.items():
                    errors[ok[j]] = why
                kept = [j for j in range(len(ok)) if j not in failed]
                ok, requests = [ok[j] for j in kept], [requests[j] for j in kept]
        elapsed = time.perf_counter() - start
        overhead["shared"] = elapsed - generation.latency_sec  # pixels, OOM attempts, the host's own work
        kwh, co2_kg = self.energy.stop()
        peak, peak_kind = self.captioner.peak_memory()
        captions = dict(zip(ok, generation.results, strict=True))
        measuring = self.measuring.get(cell_id, (Measurement(0, False), ""))  # a cell never begun
        per_image = elapsed / len(ok) if ok else 0.0
        samples = [
            SampleResult(
                sample_id=sid,
                caption=captions[i].caption if i in captions else "",
                generated_tokens=captions[i].generated_tokens if i in captions else 0,
                error=errors[i],
                processing_time_sec=per_image if i in captions else 0.0,
                image_width=batch.widths[i],
                image_height=batch.heights[i],
                ttft_sec=engine_seconds(captions[i].ttft_sec) if i in captions else NAN,
                request_e2e_sec=engine_seconds(captions[i].e2e_sec) if i in captions else NAN,
                pixel_note=batch.notes[i] if batch.notes else "",
            )
            for i, sid in enumerate(batch.sample_ids)
        ]
        answered = {t: self._budget(t, batch, ok, requests, kwargs, generation, overhead) for t in budgets}
        return BatchResult(
            samples=samples, latency_sec=elapsed, captioned=len(ok), start_ts=start_ts,
            end_ts=start_ts + elapsed, actor_id=self.actor_id, node_id=self.node_id,
            peak_memory_bytes=peak, peak_memory_kind=peak_kind, energy_kwh=kwh, emissions_kg=co2_kg,
            model_cells_before=self.cells_before.get(cell_id, 0), budgets=answered,
            latency_kind=latency_kind(self.captioner.latency_kind, samples),
            preprocess_sec=preprocess[0] if batch.prepared is None else batch.prepared.seconds,
            cache_policy=measuring[1], warmup_batches=measuring[0].warmup_batches,
            preprocess_where="host" if batch.prepared is None else "decode_task",
        )

    def caption_parts(self, settings: GenerationSettings, cell_id: str, *parts: SampleBatch,
                      load: LoadSpec | None = None) -> BatchResult:
        """`caption` of one batch that arrives in pieces (decoded by several tasks, passed as separate
        arguments so that Ray hands each one over as soon as it is ready)."""
        batch = SampleBatch.concat(list(parts))
        return self.caption_window(settings, cell_id, [len(batch.sample_ids)], batch, load=load)[0]

    def caption_window(self, settings: GenerationSettings, cell_id: str, sizes: Sequence[int],
                       *parts: SampleBatch, load: LoadSpec | None = None) -> list[BatchResult]:
        """Several batches (of `sizes` samples, their pieces in order) captioned in one generate() call, for
        a backend that schedules requests itself (`Captioner.batches_per_call`); answered per batch, in
        order, as `split_window` cuts the one result."""
        merged = self.caption(SampleBatch.concat(list(parts)), settings, cell_id, first_batch=sizes[0],
                              load=load)
        return split_window(merged, sizes)

    def _budget(self, t: int, batch: SampleBatch, ok: list[int], requests: list[CaptionRequest],
                kwargs: dict, generation: Generation, overhead: dict[str, float]) -> BudgetResult:
        """Budget t of the batch. Cut: the batch latency less the shared generation's decode steps after t
        (its overhead outside generate() included, OOM attempts too). Own: the time to decode the pixels
        plus its own generate() wall time (its OOM retry included)."""
        if t in generation.budgets:
            cut = generation.budgets[t]
            lead = overhead["shared"]
        elif ok:
            own_start = time.perf_counter()
            cut = with_oom_retry(lambda chunk: self.captioner.generate_own_budget(chunk, kwargs, t), requests,
                                 merge_cuts)
            cut.latency_sec = time.perf_counter() - own_start
            lead = overhead["pixels"]
        else:  # every sample failed to decode: nothing generated, for this budget either
            shared = self.captioner.can_share_budgets(kwargs, (t,))
            cut = BudgetCut([], 0.0, "decode_step_times" if shared else "own_generation")
            lead = 0.0
        by_row = dict(zip(ok, cut.results, strict=True)) if ok else {}
        return BudgetResult(
            max_new_tokens=t,
            captions=[by_row[i].caption if i in by_row else "" for i in range(len(batch))],
            generated_tokens=[by_row[i].generated_tokens if i in by_row else 0 for i in range(len(batch))],
            latency_sec=lead + cut.latency_sec,
            measured=cut.measured,
        )
