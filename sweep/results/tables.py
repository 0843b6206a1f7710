"""The sweep's tables, declared once: the caption table (`cells/<id>/captions.parquet`, a row per image),
the batch table (`cells/<id>/batches.parquet`, a row per batch a host answered) and the results table
(`results.csv`, a row per cell): each column, its dtype, what it means, who writes it. Writers build from
these declarations, readers take their column lists from them, a test checks every written table against
them (`sweep.results.table_check`), and `docs/columns.md` is generated from them
(`python -m sweep.results.tables > docs/columns.md`).

Batch facts. A host answers once per batch (`actors.contract.BatchResult`): its facts (latency, host,
peak memory, energy, ...) are one row of the batch table, and each caption row names its batch
(`batch_id`). Readers that want per-image samples (the intervals and medians of
`sweep.quality.statistics` are taken over images: the latency an image waited is its batch's) join them
with `per_image`, the one home of that join and of the rule that spreads a batch's totals
(`per="batch total"`: energy, emissions, processor seconds) over its images: an equal share for each of
the batch's rows in the cell. A cell's total is the sum over its batch table (`sweep.execute.measure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Dtype = Literal["str", "int", "float", "bool", "list[str]"]
Per = Literal["image", "batch", "batch total", "cell"]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: Dtype
    meaning: str
    writer: str  # the module that writes it
    per: Per = "image"
    when: str = ""  # "" always there; else when the table has it
    source: str = ""  # batch facts: the `BatchResult` attribute it comes from
    header: str = ""  # results shown in a table: its header in the printed table
    title: str = ""  # ... and in report.html (the printed header when "")
    share: str = ""  # batch totals: the column of an image's share in `per_image(..., shares=True)`


HOST = "actors.model_host"
PIPELINE = "sweep.execute.pipeline"
WRITER = "sweep.execute.trials"
RECORDER = "sweep.results.recorder"
SCORING = "sweep.quality.scoring"
SHARED = "token-budget sharing: a cell served by another cell's generation"


def _bleu_columns() -> list[Column]:
    counts = [Column(f"bleu_{kind}_{k}", "float", f"{k}-grams {meaning} (corpus BLEU from the sums)",
                     SCORING, when="scored")
              for kind, meaning in (("guess", "in the caption"), ("correct", "matching a reference"))
              for k in range(1, 5)]
    return [Column("bleu_testlen", "float", "caption length for BLEU", SCORING, when="scored"),
            Column("bleu_reflen", "float", "closest reference length for BLEU", SCORING, when="scored"),
            *counts]


def _batch(name: str, dtype: Dtype, meaning: str, source: str = "", share: str = "") -> Column:
    """A fact of the host's answer (`BatchResult.<source>`, its name by default); `share`: a total."""
    return Column(name, dtype, meaning, PIPELINE, "batch total" if share else "batch", source=source or name,
                  share=share)


CAPTION_TABLE: tuple[Column, ...] = (
    Column("cell_id", "str", "the cell (hash of its settings)", WRITER, "cell"),
    Column("image_id", "int", "the dataset's image id", WRITER),
    Column("model_name", "str", "the model's display name", WRITER, "cell"),
    Column("sample_id", "str", "the sample (image, or video scene)", HOST),
    Column("caption", "str", "the generated caption (\"\" on an error row)", HOST),
    Column("generated_tokens", "int", "tokens generated (up to the first EOS)", HOST),
    Column("error", "str", "why the image was not captioned; \"\" when it was", HOST),
    Column("processing_time_sec", "float", "the image's share of its batch's generate() time", HOST),
    Column("image_width", "int", "decoded width (pixels)", HOST),
    Column("image_height", "int", "decoded height (pixels)", HOST),
    Column("ttft_sec", "float", "the engine's time to first token (NaN when it gives none)", HOST),
    Column("request_e2e_sec", "float", "the engine's end-to-end request latency (NaN when none)", HOST),
    Column("pixel_note", "str", "what decoding changed so the pixels mean what the file means (a 16/32-bit "
           "mode scaled to 8 bits, an EXIF orientation applied); \"\" when nothing", HOST),
    Column("batch_id", "str", "the image's batch: its row of the batch table (`per_image` joins them)",
           PIPELINE),
    Column("precision", "str", "the cell's precision", WRITER, "cell"),
    Column("max_new_tokens", "int", "the cell's token budget", WRITER, "cell"),
    Column("video_id", "str", "the video of the scene", WRITER, when="video"),
    Column("scene_index", "int", "the scene's index in its video", WRITER, when="video"),
    Column("start_s", "float", "scene start (s)", WRITER, when="video"),
    Column("end_s", "float", "scene end (s)", WRITER, when="video"),
    Column("video_duration_s", "float", "the video's duration (s)", WRITER, when="video"),
    Column("frames_used", "str", "JSON list of the frame times given to the model", WRITER, when="video"),
    Column("video_rtf", "float", "the video's processing time / its duration", "sweep.execute.measure",
           when="video"),
    Column("references", "list[str]", "the human captions the row is scored against", RECORDER,
           when="recorded"),
    Column("prompt_sha256", "str", "sha256 of the prompt as the model saw it (cell.json)", RECORDER, "cell",
           when="recorded"),
    Column("cider", "float", "CIDEr-D of the image (NaN: not scored)", SCORING, when="scored"),
    Column("meteor", "float", "METEOR of the image", SCORING, when="scored"),
    Column("rouge_l", "float", "ROUGE-L of the image", SCORING, when="scored"),
    *_bleu_columns(),
)

BATCH_TABLE: tuple[Column, ...] = (
    Column("batch_id", "str", "the batch (unique in its cell; the caption rows' `batch_id`)", PIPELINE,
           "batch"),
    _batch("batch_latency_sec", "float", "the latency each of its images waited (`latency_kind`)",
           "latency_sec"),
    _batch("batch_images", "int", "images captioned in the batch", "captioned"),
    _batch("batch_start_ts", "float", "batch start (epoch s)", "start_ts"),
    _batch("batch_end_ts", "float", "batch end (epoch s)", "end_ts"),
    _batch("actor_id", "str", "host:pid of the model host"),
    _batch("node_id", "str", "Ray node of the host (\"\" outside Ray)"),
    _batch("peak_memory_bytes", "int", "peak memory while the cell ran on the host"),
    _batch("peak_memory_kind", "str", "gpu_allocated | gpu_device_used | cpu_rss | cpu_rss_with_engine"),
    _batch("energy_kwh", "float", "the batch's energy (NaN: not measured)",
           share="energy_per_image"),
    _batch("emissions_kg", "float", "the batch's CO2", share="emissions_per_image"),
    _batch("model_cells_before", "int", "cells the load served before this one (0: loaded for it)"),
    _batch("latency_kind", "str", "batch_wall | request_e2e: how batch_latency_sec was taken"),
    _batch("preprocess_sec", "float", "the batch's seconds in the processor apart from generate() (NaN: "
           "not measured, e.g. vLLM)", share="preprocess_sec_per_image"),
    _batch("preprocess_where", "str", "where the processor ran: host (inside the batch's latency) | "
           "decode_task (before the batch reached the host; docs/measurement.md)"),
    _batch("cache_policy", "str", "what the host did to its caches at the cell's start "
           "(docs/measurement.md)"),
    _batch("warmup_batches", "int", "unmeasured warm-up generations before the cell's first batch"),
    Column("shared_generation", "str", "the cell whose generation served this batch", PIPELINE, "batch",
           when=SHARED),
    Column("shared_batch_latency_sec", "float", "the whole shared batch's latency", PIPELINE, "batch",
           when=SHARED),
    Column("budget_measured", "str", "decode_step_times | own_generation", PIPELINE, "batch", when=SHARED),
    Column("timestamp", "str", "batch end, ISO 8601 UTC", WRITER, "batch"),
    Column("attempt", "str", "the run of the cell that wrote the batch (a resumed cell has several)", WRITER,
           "batch"),
)

#: corpus quality metrics of a scored cell (SPICE too, where Java and its models are there)
CORPUS_QUALITY = ("cider", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l")
QUALITY_KEYS = (*CORPUS_QUALITY, "spice")
COSTS = "sweep.execute.measure"
PUBLISH = "sweep.publish.report"


def _quality() -> list[Column]:
    names = {"cider": ("CIDEr-D", "CIDEr [95% interval]", "CIDEr"), "bleu_4": ("BLEU-4", "BLEU-4", ""),
             "meteor": ("METEOR", "METEOR", ""), "rouge_l": ("ROUGE-L", "ROUGE-L", "")}
    out = []
    for key in CORPUS_QUALITY:
        meaning, header, title = names.get(key, (key.upper().replace("_", "-"), "", ""))
        out.append(Column(key, "float", f"{meaning} over the scored images (NaN: failed)", SCORING,
                          "cell", header=header, title=title))
    return [*out, Column("spice", "float", "SPICE", SCORING, "cell", when="SPICE available")]


def _intervals() -> list[Column]:
    from sweep.quality.statistics import CI_METRICS

    return [Column(f"{m}_ci_{end}", "float", f"{m}: {end} end of the 95% bootstrap interval over images",
                   PUBLISH, "cell") for m in CI_METRICS for end in ("low", "high")]


RESULTS_TABLE: tuple[Column, ...] = (
    Column("cell_id", "str", "the cell", RECORDER, "cell"),
    Column("label", "str", "model / precision / settings, short (`/p2`: the grid's second prompt)", RECORDER,
           "cell", header="cell"),
    Column("prompt", "str", "the cell's prompt", RECORDER, "cell"),
    Column("model", "str", "the model's display name", RECORDER, "cell"),
    Column("precision", "str", "precision", RECORDER, "cell"),
    Column("max_new_tokens", "int", "token budget", RECORDER, "cell"),
    Column("num_beams", "float", "beams (empty: the family's default)", RECORDER, "cell"),
    Column("backend", "str", "hf | vllm", RECORDER, "cell", header="backend"),
    Column("weights", "str", "real | toy | random: what the quality numbers are", RECORDER, "cell",
           header="weights"),
    Column("status", "str", "ok | failed | pruned", RECORDER, "cell", header="status"),
    Column("reused", "bool", "read back from the store, not computed in this run", RECORDER, "cell"),
    Column("reason", "str", "why it failed or was pruned", RECORDER, "cell", title="failure / why pruned"),
    Column("peak_memory_kind", "str", "how peak memory was measured", RECORDER, "cell"),
    Column("shared_generation", "str", "the cell whose generation served it", RECORDER, "cell"),
    Column("energy_kind", "str", "how energy was taken", RECORDER, "cell"),
    Column("latency_kind", "str", "how latency was taken", RECORDER, "cell", title="latency kind"),
    Column("cache_policy", "str", "what the hosts did to their caches at the cell's start "
           "(docs/measurement.md)", RECORDER, "cell", title="caches"),
    Column("preprocess_where", "str", "where the processor ran: host | decode_task (docs/measurement.md)",
           RECORDER, "cell", title="processor on"),
    Column("cider_document_frequencies", "str", "reference_set | scored_subset", RECORDER, "cell"),
    *_quality(),
    Column("latency_p50_s", "float", "median latency an image waited (s)", COSTS, "cell",
           header="lat p50 s", title="latency p50 (s)"),
    Column("peak_memory_gb", "float", "peak memory (GB)", COSTS, "cell", header="peak GB",
           title="peak memory (GB)"),
    Column("energy_kwh", "float", "energy (kWh; NaN: not measured)", COSTS, "cell", header="kWh",
           title="energy (kWh)"),
    Column("weight_bytes", "float", "bytes of the loaded weights", COSTS, "cell"),
    Column("n_samples", "float", "images of the cell", COSTS, "cell", when="ran"),
    Column("n_errors", "float", "error rows (images not captioned)", COSTS, "cell", when="ran",
           header="errors"),
    Column("cell_wall_seconds", "float", "wall time of the cell's trial", COSTS, "cell", when="ran"),
    Column("latency_p95_s", "float", "95th percentile latency (s)", COSTS, "cell", when="ran"),
    Column("seconds_per_image", "float", "mean processing time per image", COSTS, "cell", when="ran",
           title="s/image"),
    Column("images_per_sec", "float", "throughput over the generation window", COSTS, "cell", when="ran",
           header="img/s", title="images/s"),
    Column("tokens_per_sec", "float", "generated tokens per second", COSTS, "cell", when="ran"),
    Column("mean_generated_tokens", "float", "mean tokens per caption", COSTS, "cell", when="ran"),
    Column("peak_memory_bytes", "float", "peak memory (bytes)", COSTS, "cell", when="ran"),
    Column("load_seconds", "float", "model load time (mean over hosts)", COSTS, "cell", when="ran"),
    Column("fresh_process", "float", "1: every host loaded the model in a fresh process (load_seconds then "
           "holds the imports a first load triggers); 0: a host process of an earlier load was reused",
           COSTS, "cell", when="ran"),
    Column("weight_bytes_<part>", "float", "weight bytes of one part (language, vision, ...)", COSTS,
           "cell", when="ran"),
    Column("n_actors", "float", "model hosts that served it", COSTS, "cell", when="ran"),
    Column("model_reused", "float", "1: every batch ran on a model an earlier cell loaded", COSTS, "cell",
           when="ran"),
    Column("emissions_kg_co2", "float", "CO2 (kg)", COSTS, "cell", when="ran"),
    Column("warmup_batches", "float", "unmeasured warm-up generations before the cell's first batch",
           COSTS, "cell", when="ran", title="warm-up batches"),
    Column("preprocess_seconds_per_image", "float", "processor seconds per captioned image (NaN: not "
           "measured)", COSTS, "cell", when="ran"),
    Column("preprocess_share", "float", "processor seconds / the batches' wall time (docs/measurement.md)",
           COSTS, "cell", when="ran", title="preprocess share"),
    Column("resumed_samples", "float", "images read back from an earlier attempt", WRITER, "cell",
           when="ran"),
    Column("n_images_8bit_scaled", "float", "images of 16 or 32 bits scaled to 8 bits (`pixel_note`)", WRITER,
           "cell", when="an image needed it"),
    Column("n_images_exif_turned", "float", "images turned upright by their EXIF orientation (`pixel_note`)",
           WRITER, "cell", when="an image needed it"),
    Column("seconds_per_scene", "float", "processing time per scene", COSTS, "cell", when="video"),
    Column("rtf", "float", "real-time factor: processing time / video duration", COSTS, "cell",
           when="video"),
    Column("scenes_per_video", "float", "scenes captioned per video", COSTS, "cell", when="video"),
    Column("n_videos", "float", "videos", COSTS, "cell", when="video"),
    Column("mean_caption_words", "float", "mean words per caption", RECORDER, "cell", when="ran",
           header="words"),
    Column("n_scored", "float", "images scored (with references)", RECORDER, "cell", when="ran"),
    Column("pruned_rung", "float", "the rung (1-based) successive halving stopped it at", RECORDER, "cell",
           when="pruned"),
    Column("images_seen", "float", "images it captioned before it stopped", RECORDER, "cell",
           when="pruned"),
    Column("cells_beside", "float", "other generations that ran while it ran", "sweep.results.recorder",
           "cell"),
    *_intervals(),
    Column("degenerate_output", "float", "1: one caption for (nearly) every image", PUBLISH, "cell",
           header="output", title="output"),
    Column("pareto", "str", "cost axes on whose CIDEr front it lies", PUBLISH, "cell",
           header="pareto front", title="Pareto front"),
    Column("pareto_tied", "str", "axes on which it is not dominated with confidence", PUBLISH, "cell",
           header="tied with front", title="tied with the front"),
    Column("weight_gb", "float", "weight_bytes / 1e9 (the memory axis without a GPU)", PUBLISH, "cell"),
    Column("tied_with", "str", "the cells it cannot be told apart from on CIDEr (paired interval holds 0)",
           "sweep.publish.ties", "cell"),
)

#: results columns every row has (NaN for a failed cell), so a sweep whose every cell failed still gets
#: its table, fronts and report
RESULT_METRICS = (*CORPUS_QUALITY, "latency_p50_s", "peak_memory_gb", "energy_kwh", "weight_bytes")
BATCH_FACTS = tuple(c for c in BATCH_TABLE if c.source)


def columns(table: Sequence[Column]) -> dict[str, Column]:
    return {c.name: c for c in table}


def shown(names: Sequence[str], html: bool = False) -> list[tuple[str, str]]:
    """(column, header) of results columns shown in a table, in this order."""
    declared = columns(RESULTS_TABLE)
    return [(n, (declared[n].title or declared[n].header or n) if html else (declared[n].header or n))
            for n in names]


def columns_markdown() -> str:
    """docs/columns.md: the three tables, column by column, and how the batch table is read."""
    lines = ["# The sweep's tables", "",
             "Generated from `sweep/results/tables.py` by `python -m sweep.results.tables > docs/columns.md`"
             " (a test checks this page is up to date). *per*: image (a row's own), batch (a fact of the "
             "batch, once in the batch table), batch total (the batch's, once in the batch table: a column "
             "sum is the cell's), cell. *when*: empty, always there.", "",
             "A caption row names its batch (`batch_id`); `sweep.results.batches.per_image(captions, "
             "batches)` joins each batch's facts onto its images (what `ResultStore.read_captions` returns: "
             "the latency an image waited is its batch's `batch_latency_sec`) and, with `shares=True`, "
             "gives each image an equal share of its batch's totals (`energy_per_image`, ...). A store "
             "written before the batch table (batch facts on every caption row, totals on a batch's first "
             "row) is converted when read (`sweep.results.batches.split_legacy`).", ""]
    for title, where, table in (("Caption table", "`cells/<cell_id>/captions.parquet`, a row per image",
                                 CAPTION_TABLE),
                                ("Batch table", "`cells/<cell_id>/batches.parquet`, a row per batch a host "
                                 "answered", BATCH_TABLE),
                                ("Results table", "`results.csv`, a row per cell", RESULTS_TABLE)):
        lines += [f"## {title}", "", f"{where}.", "",
                  "| column | dtype | per | when | meaning | written by |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.per} | {c.when} | {c.meaning.replace('|', '/')} | "
                  f"`{c.writer}` |" for c in table]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(columns_markdown(), end="")
