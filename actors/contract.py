"""The contract between the sweep (driver) and the model hosts: plain typed objects, nothing else.

What crosses the boundary, in the order it happens:

1. `LoadSpec` -> a host loads one model (`ModelRef`) at one precision on one backend, placed on
   `gpus_per_actor` GPUs; its hosts answer with one `LoadReport` per load (never per row).
2. `GenerationSettings` -> the per-cell settings (prompt, budget, beams, sampling): many cells share one
   load, so these travel with each batch; they are frozen and hashable, so a host keys on them directly.
3. `SampleBatch` -> decoded pixels (or a scene's frames) of one batch, with the samples that failed to
   decode passed through as errors.
4. `BatchResult` <- facts of the batch once (timing, memory, energy, where it ran) and one
   `SampleResult` per sample (caption, tokens, error).

Built by the driver from its validated grid once per cell; never serialised to JSON or validated again
on the way. This module imports nothing from the project, Ray or MLflow: the model side must run on a
machine that has only torch and transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

Precision = Literal["fp32", "fp16", "bf16", "int8", "int8-vision", "nf4", "int8wo", "int4wo", "fp8",
                    "prequantized"]
BackendName = Literal["auto", "hf", "vllm"]
WeightsMode = Literal["real", "dummy"]

#: how a model's load error reads in a cell's reason (`ModelHost.begin_cell` raises it, the driver finds it)
LOAD_FAILED = "load failed (not retried: the same load would fail again)"


@dataclass(frozen=True)
class ModelRef:
    """Which model: a hub id, a local folder, `tiny:<family>`, or a user loader (`pkg.mod:function`)."""

    id: str
    family: str | None = None  # None: detected from config.json
    revision: str | None = None
    trust_remote_code: bool = False
    weights: WeightsMode = "real"  # dummy: random weights at the real architecture size
    loader: str | None = None


@dataclass(frozen=True)
class LoadSpec:
    """Everything that changes what a host loads and where it is placed; nothing of generation.
    Cells with equal load specs share one loaded model."""

    model: ModelRef
    precision: Precision
    backend: BackendName = "auto"
    gpus_per_actor: float = 1.0
    replicas: int = 1
    # vLLM engine arguments from the grid (`resources.vllm`), as sorted (name, value) pairs; HF ignores them
    vllm_engine: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class GenerationSettings:
    """One cell's generation settings. `num_beams`/`min_new_tokens` None: the family's default."""

    prompt: str
    max_new_tokens: int
    num_beams: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    min_new_tokens: int | None = None
    repetition_penalty: float = 1.0
    # Smaller max_new_tokens served by this same generation (token-budget sharing, greedy and one beam
    # only): each is answered in `BatchResult.budgets` from the first t tokens of every sequence.
    budgets: tuple[int, ...] = ()

    def generate_kwargs(self) -> dict[str, Any]:
        """The cell's own `generate()` arguments (a family's defaults go under them; `budgets` is not a
        generate() argument)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.num_beams is not None:
            kwargs["num_beams"] = self.num_beams
        if self.min_new_tokens is not None:
            kwargs["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass
class CaptionRequest:
    """One sample as a captioner sees it: its images, or (`prepared`) the processor's output for it alone,
    built in a decode task (`Preprocessor`; `images` is then empty)."""

    sample_id: str
    images: list[Image.Image]
    prompt: str
    prepared: dict[str, Any] | None = None


@dataclass(frozen=True)
class Preprocessor:
    """How a decode task builds a family's model inputs off the host (`actors.prepare`): the family's own
    processor, loaded from the model's files without its weights (cached per worker process), run on each
    sample alone; the host then only pads, moves the tensors to its device and generates. A host offers one
    in `CellStart.preprocessor` when its backend and family can take prepared inputs (HF, a family whose
    generate() is the shared one); None: the processor runs on the host."""

    family: str
    path: str  # the model's local folder on the host; `model_id` where the task's node lacks it
    model_id: str
    revision: str | None = None
    trust_remote_code: bool = False


@dataclass
class PreparedInputs:
    """A decode task's processor output for the samples of its piece: per sample, the processor's tensors
    for that sample alone (unpadded: the host pads a batch as the processor would), None for a decode error
    or a sample the processor rejected (its error is the sample's error); and the processor's seconds."""

    tensors: list[dict[str, Any] | None]
    seconds: float


@dataclass
class CaptionResult:
    caption: str
    generated_tokens: int
    # the engine's own timing of this request (vLLM's request metrics), None when it gives none
    ttft_sec: float | None = None  # arrival to first token
    e2e_sec: float | None = None  # arrival to last token


@dataclass
class SampleBatch:
    """One decoded batch. Per sample: `pixels` (an HxWx3 uint8 array) or `frames_jpeg` (a scene's frames),
    and `error` non-empty when decoding failed (the sample is then passed through, not captioned)."""

    sample_ids: list[str]
    errors: list[str]
    widths: list[int]
    heights: list[int]
    pixels: list[Any] | None = None
    frames_jpeg: list[list[bytes]] | None = None
    # per sample, what decoding changed so the pixels mean what the file means ("mode I;16 scaled ...
    # to 8 bits", "EXIF orientation 6 applied"), "" when nothing; None from a decoder that says nothing
    notes: list[str] | None = None
    # the processor's output per sample, built in the decode task (`Preprocessor`); `pixels` is then None
    prepared: PreparedInputs | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    @classmethod
    def concat(cls, parts: list[SampleBatch]) -> SampleBatch:
        """One batch of the parts' samples, in order (a batch decoded in pieces, one task each)."""
        if len(parts) == 1:
            return parts[0]
        video = parts[0].frames_jpeg is not None
        return cls(
            sample_ids=[s for p in parts for s in p.sample_ids],
            errors=[e for p in parts for e in p.errors],
            widths=[w for p in parts for w in p.widths],
            heights=[h for p in parts for h in p.heights],
            pixels=None if video or parts[0].pixels is None else [x for p in parts for x in (p.pixels or [])],
            frames_jpeg=[f for p in parts for f in (p.frames_jpeg or [])] if video else None,
            notes=[n for p in parts for n in (p.notes or [""] * len(p.sample_ids))],
            prepared=PreparedInputs([t for p in parts for t in p.prepared.tensors],
                                    sum(p.prepared.seconds for p in parts))
            if all(p.prepared is not None for p in parts) else None,
        )


@dataclass
class SampleResult:
    sample_id: str
    caption: str
    generated_tokens: int
    error: str  # "" when captioned
    processing_time_sec: float  # the sample's share of the batch's generate() time
    image_width: int
    image_height: int
    # the engine's own request timings (CaptionResult.ttft_sec / e2e_sec), NaN when it gives none
    ttft_sec: float = float("nan")
    request_e2e_sec: float = float("nan")
    pixel_note: str = ""  # SampleBatch.notes: what decoding changed (bit depth, EXIF orientation)


@dataclass
class BudgetResult:
    """One smaller token budget t of a batch's generation: what a generation capped at t produces."""

    max_new_tokens: int
    captions: list[str]  # one per sample of the batch, in batch order ("" for decode-error rows)
    generated_tokens: list[int]  # counted up to t (and up to the first EOS)
    latency_sec: float  # until every sequence of the batch had stopped or reached t tokens
    # decode_step_times: cut from the shared generation, timed by its decode steps; own_generation: the
    # backend could not share, so this budget was generated (and timed) on its own
    measured: Literal["decode_step_times", "own_generation"]


@dataclass
class BatchResult:
    """What a host answers for one batch: its facts once, its samples each."""

    samples: list[SampleResult]
    latency_sec: float  # wall time of the batch's generate() calls
    captioned: int  # samples that were generated for (the others were decode errors)
    start_ts: float  # epoch seconds
    end_ts: float
    actor_id: str  # host:pid of the model host
    node_id: str  # Ray node id, "" outside Ray
    peak_memory_bytes: int
    peak_memory_kind: str  # gpu_allocated | gpu_device_used | cpu_rss | cpu_rss_with_engine
    energy_kwh: float  # NaN when not measured
    emissions_kg: float
    model_cells_before: int  # cells this load served before this batch's cell (0: loaded for it)
    budgets: dict[int, BudgetResult] = field(default_factory=dict)  # GenerationSettings.budgets answered
    # how latency_sec was taken (`LatencyKind`): batch_wall, the wall time of the batch's generate() calls
    # (every image of the batch waited all of it); request_e2e, each request's own end-to-end latency
    # from the engine's request metrics (vLLM)
    latency_kind: str = "batch_wall"
    # seconds in the processor (chat template, resize, patching, tokenization) apart from generate(), inside
    # latency_sec; NaN when the backend does not say (vLLM processes inside its engine). A window's split
    # over its batches by their samples, like its energy (`share_of_total`).
    preprocess_sec: float = float("nan")
    cache_policy: str = ""  # the cell's `CellStart.cache_policy`
    warmup_batches: int = 0  # unmeasured warm-up generations before the cell's first batch on this host
    # where the processor ran: "host" (inside latency_sec) or "decode_task" (`Preprocessor`: before the
    # batch reached the host, so not in latency_sec; preprocess_sec is then the decode tasks' seconds)
    preprocess_where: str = "host"


@dataclass(frozen=True)
class Measurement:
    """How a host measures each cell (grid `measurement`), so that every cell is measured cold alike:
    `reset_caches` empties the engine's caches that outlive a call (vLLM's prefix and multimodal caches)
    at the cell's start and after its warm-up; `warmup_batches` generations of the cell's first batch run
    before it, unmeasured (one-time costs: CUDA context, kernel compilation and autotuning, allocator
    growth), whether the cell loaded the model or reused it."""

    warmup_batches: int = 1
    reset_caches: bool = True


@dataclass
class LoadReport:
    """What loading cost and what was loaded: one per load, logged with every cell it serves."""

    backend: str
    backend_reason: str
    family: str
    device: str
    load_seconds: float
    weight_bytes: int
    module_precisions: dict[str, str] = field(default_factory=dict)
    module_weight_bytes: dict[str, int] = field(default_factory=dict)
    family_info: dict[str, object] = field(default_factory=dict)
    weights: str = "real"  # "random" for tiny test models and dummy-weight runs, "toy" for the zoo
    library_versions: dict[str, str] = field(default_factory=dict)
    # loads the host's process has run, this one included: 1, a fresh process (its load_seconds includes
    # the library imports a first load triggers); >1, a process kept from earlier loads
    # (`resources.reuse_host_processes`, docs/measurement.md)
    host_process_loads: int = 1


@dataclass
class CellStart:
    """A host's answer when a cell begins on it: what serves the cell, and how it will generate."""

    actor_id: str
    node_id: str
    report: LoadReport
    generation: dict[str, Any]  # effective generate() settings: the family's defaults under the cell's
    cells_before: int  # cells this load began before this one (0: loaded for this cell)
    rendered_prompt: str = ""  # the cell's prompt as the model sees it (one image), "" when unknown
    # batches the host takes per call (`Captioner.batches_per_call`): >1 for an engine that batches
    # itself (vLLM), so its scheduler sees many requests at once
    batches_per_call: int = 1
    cache_policy: str = ""  # what `Measurement.reset_caches` did on this host, in words
    warmup_batches: int = 0
    # the host's offer to have its processor run in the decode tasks (None: it runs on the host)
    preprocessor: Preprocessor | None = None
    # whether the host's process may drop this load and take another in place (`ModelHost.load`):
    # HF and user loaders yes, vLLM no (its engine does not free reliably in-process)
    unloads_in_process: bool = False
    # whether backend auto may pick vLLM on this host's machine (CUDA and vLLM importable)
    vllm_here: bool = False


def share_of_total(total: float, part: int, whole: int) -> float:
    """The share of a batch's (or a window's) measured total (energy, emissions, processor seconds) that
    `part` of its `whole` samples take: proportional to the samples, as every sample of it was measured
    together. The one rule for cutting a total: a window cut into batches (`actors.model_host.split_window`)
    and a batch's total per image (`sweep.results.batches.per_image`). NaN stays NaN (not measured)."""
    return total / whole * part if whole > 0 else 0.0


@runtime_checkable
class ModelHostApi(Protocol):
    """The methods the driver calls on a model host (`actors.model_host.ModelHost`, run as a Ray actor:
    the driver calls each as `host.<method>.remote(...)`, through `sweep.execute.hosts.call_host`, which
    is typed against this). A host serves the cells of one load in turn: `begin_cell` once per cell, then
    one call per batch (or per window of batches, for an engine that schedules requests itself).

    `load=`: every call that starts or captions a cell names the load it expects. A host process can serve
    successive loads (a host whose load is another drops its model, frees its memory and loads this one:
    `ModelHost.load`), and Ray restarts a dead actor with its constructor's arguments, i.e. its first load:
    a host whose model is not the expected one loads it before it answers, so a batch is never captioned
    by another model. A load error is kept and raised by `begin_cell`. None (a host used outside Ray, with
    one load): whatever is loaded."""

    def begin_cell(self, cell_id: str, settings: GenerationSettings,
                   measurement: Measurement | None = None, *, load: LoadSpec | None = None) -> CellStart:
        """A cell starts on this host: waits for the load (a load error surfaces here), starts the cell
        cold (`Measurement`) and says what serves the cell (`CellStart`, its `batches_per_call` included)."""
        ...

    def caption_parts(self, settings: GenerationSettings, cell_id: str, *parts: SampleBatch,
                      load: LoadSpec | None = None) -> BatchResult:
        """One batch, arriving in pieces (decoded by several tasks)."""
        ...

    def caption_window(self, settings: GenerationSettings, cell_id: str, sizes: Sequence[int],
                       *parts: SampleBatch, load: LoadSpec | None = None) -> list[BatchResult]:
        """Consecutive batches of `sizes` samples in one call, answered per batch, in order."""
        ...
