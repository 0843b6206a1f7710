"""Cost metrics of one cell from its caption table (pure)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def summarize_costs(table: pd.DataFrame, batches: pd.DataFrame, cell_wall_seconds: float,
                    reports: dict[str, dict]) -> dict[str, float]:
    """Latency, throughput, memory, load and energy of one cell from its images with their batches'
    facts (`sweep.results.batches.per_image`) and its batch table (the batches of those images: their
    totals, energy and processor seconds, summed once per batch); `reports` are the load reports of the
    hosts that served it, by actor id (`ResultStore.read_loads`).

    Latency is what one image waits: the wall time of the generate() call it was in. Throughput is
    measured over the generation window (first batch start to last batch end, across all actors), so
    model load time is reported apart, as `load_seconds`.
    """
    ok = table[table["error"] == ""]
    n_ok = len(ok)
    out: dict[str, float] = {
        "n_samples": float(len(table)),
        "n_errors": float(len(table) - n_ok),
        "cell_wall_seconds": float(cell_wall_seconds),
    }
    if n_ok:
        # resumed cells were captioned in several attempts: add up each attempt's own window
        attempts = ok.groupby("attempt") if "attempt" in ok else [(None, ok)]
        window = sum(generation_window(g) for _, g in attempts)
        window = max(window, 1e-9)
        out.update(
            latency_p50_s=float(np.percentile(ok["batch_latency_sec"], 50)),
            latency_p95_s=float(np.percentile(ok["batch_latency_sec"], 95)),
            seconds_per_image=float(ok["processing_time_sec"].mean()),
            images_per_sec=n_ok / window,
            tokens_per_sec=float(ok["generated_tokens"].sum()) / window,
            mean_generated_tokens=float(ok["generated_tokens"].mean()),
        )
    else:
        for key in ("latency_p50_s", "latency_p95_s", "seconds_per_image", "images_per_sec",
                    "tokens_per_sec", "mean_generated_tokens"):
            out[key] = float("nan")
    actors = list(dict.fromkeys(table["actor_id"]))
    used = [reports[a] for a in actors if a in reports]
    if not used:
        raise ValueError(f"no load report for the hosts of this table ({', '.join(actors)})")
    out["peak_memory_bytes"] = float(batches["peak_memory_bytes"].max())
    out["peak_memory_gb"] = out["peak_memory_bytes"] / 1e9
    out["load_seconds"] = float(np.mean([r["load_seconds"] for r in used]))
    # 1: every host loaded the model in a fresh process (its load_seconds holds the imports a first load
    # triggers); 0: one reused a process of an earlier load (docs/measurement.md)
    out["fresh_process"] = float(all(r.get("host_process_loads", 1) == 1 for r in used))
    out["weight_bytes"] = float(used[0]["weight_bytes"])
    for side, nbytes in used[0].get("module_weight_bytes", {}).items():
        out[f"weight_bytes_{side}"] = float(nbytes)
    out["n_actors"] = float(len(actors))
    if "model_cells_before" in batches:  # 1: every batch ran on a model an earlier cell had loaded
        out["model_reused"] = float((batches["model_cells_before"].fillna(0) > 0).all())
    out["energy_kwh"] = float(batches["energy_kwh"].sum())
    out["emissions_kg_co2"] = float(batches["emissions_kg"].sum())
    out.update(preprocess_costs(table, batches))
    out["warmup_batches"] = float(batches["warmup_batches"].max()) if "warmup_batches" in batches \
        else math.nan
    return out


def preprocess_costs(table: pd.DataFrame, batches: pd.DataFrame) -> dict[str, float]:
    """`preprocess_seconds_per_image`: the processor's seconds (chat template, resize, patching,
    tokenization) per captioned image; `preprocess_share`: their share of the batches' work, processor
    and generate() together: the hosts' busy time (the batches' wall time) holds the processor's seconds
    that ran on a host, and the seconds that ran in decode tasks (`preprocess_where`) are added to it. NaN
    when a host did not measure it (vLLM processes inside its engine; tables stored before it was
    recorded). `table`: the cell's images, `batches`: their batches."""
    nan = {"preprocess_seconds_per_image": math.nan, "preprocess_share": math.nan}
    if "preprocess_sec" not in batches or "batch_images" not in batches:
        return nan
    captioned = batches[batches["batch_images"] > 0]  # a batch of decode errors only ran no processor
    pre = captioned["preprocess_sec"].astype(float)
    ok = table[table["error"] == ""]
    busy = float(ok["processing_time_sec"].sum())
    if not len(ok) or pre.isna().any() or busy <= 0:
        return nan
    total = float(pre.sum())
    off_host = float(pre[captioned["preprocess_where"] == "decode_task"].sum()) \
        if "preprocess_where" in captioned else 0.0
    return {"preprocess_seconds_per_image": total / len(ok), "preprocess_share": total / (busy + off_host)}


def measurement_kinds(table: pd.DataFrame) -> dict[str, str]:
    """How the cell was measured (docs/measurement.md): its hosts' `cache_policy` and where their processor
    ran (`preprocess_where`), "" for tables stored before they were recorded; `warmup_batches` is a metric
    (`summarize_costs`)."""
    return {key: ",".join(sorted(set(table[key].dropna().astype(str)) - {""})) if key in table else ""
            for key in ("cache_policy", "preprocess_where")}


def generation_window(rows: pd.DataFrame) -> float:
    """Seconds from the first batch's start to the last batch's end, over the rows of one attempt.

    Rows derived from a shared generation (`shared_batch_latency_sec`, `sweep.execute.pipeline.derived_rows`):
    the shared generation's window, less the decode time this budget did not need (per batch, the whole
    batch's latency minus this budget's), spread over the hosts that ran in parallel: the window a
    generation capped at this budget would have taken, with the same gaps between batches."""
    start = float(rows["batch_start_ts"].min())
    if "shared_batch_latency_sec" not in rows or rows["shared_batch_latency_sec"].isna().any():
        return float(rows["batch_end_ts"].max()) - start
    shared = rows["shared_batch_latency_sec"].astype(float)
    window = float((rows["batch_start_ts"] + shared).max()) - start
    batches = rows.drop_duplicates(["actor_id", "batch_start_ts"])
    hosts = max(1, batches["actor_id"].nunique())
    saved = float((batches["shared_batch_latency_sec"] - batches["batch_latency_sec"]).clip(lower=0).sum())
    own = float(batches["batch_latency_sec"].sum())
    return max(window - saved / hosts, own / hosts)


SHARED_PEAK = " (upper bound: the peak of the shared generation)"


def cost_kinds(table: pd.DataFrame) -> dict[str, str]:
    """How a cell's costs were taken, from its caption table (params of its MLflow run, results.csv):
    `shared_generation` the cell id whose generation served it ("" when it generated itself),
    `energy_kind`, `latency_kind` (what the hosts measured: batch_wall, the wall time of a batch's
    generate() for each of its images, or request_e2e, each request's own end-to-end latency (vLLM); a
    cell cut from a shared generation: decode_step_times / own_generation) and `peak_memory_kind` (marked
    an upper bound when shared)."""
    kind = str(table["peak_memory_kind"].iloc[0]) if "peak_memory_kind" in table and len(table) else ""
    leads = set()
    if "shared_generation" in table:
        leads = {str(v) for v in table["shared_generation"].dropna() if str(v)}
    if not leads:
        # tables stored before hosts said how they timed a batch: every host then took the batch's wall
        kinds = table["latency_kind"].dropna().astype(str) if "latency_kind" in table else pd.Series([])
        latency = ",".join(sorted(set(kinds) - {""})) or "batch_wall"
        return {"shared_generation": "", "energy_kind": "measured per batch",
                "latency_kind": latency, "peak_memory_kind": kind, **measurement_kinds(table)}
    ok = table[table["error"] == ""] if "error" in table else table
    measured = sorted({str(v) for v in ok.get("budget_measured", pd.Series(dtype=str)).dropna() if str(v)})
    energy = ("apportioned by decode-step time of a shared generation" if "decode_step_times" in measured
              or not measured else "apportioned by its own generation's share of the batch time")
    return {"shared_generation": ",".join(sorted(leads)), "energy_kind": energy,
            "latency_kind": ",".join(measured) or "decode_step_times",
            "peak_memory_kind": kind + SHARED_PEAK, **measurement_kinds(table)}


def summarize_video(table: pd.DataFrame) -> dict[str, float]:
    """Seconds per scene, real-time factor (processing time / video duration) and scenes per video.

    A scene's processing time is its share of the generate() call it was in; RTF < 1 keeps up with
    real time. Per-video RTF goes into the table as `video_rtf`."""
    ok = table[table["error"] == ""]
    videos = table.drop_duplicates("video_id")
    duration = float(videos["video_duration_s"].sum())
    per_video = ok.groupby("video_id")["processing_time_sec"].sum()
    durations = videos.set_index("video_id")["video_duration_s"]
    table["video_rtf"] = table["video_id"].map(lambda v: per_video.get(v, float("nan")) / durations[v]
                                               if durations.get(v, 0) else float("nan"))
    return {
        "seconds_per_scene": float(ok["processing_time_sec"].mean()) if len(ok) else float("nan"),
        "rtf": float(ok["processing_time_sec"].sum()) / duration if duration else float("nan"),
        "scenes_per_video": len(ok) / max(1, ok["video_id"].nunique()),
        "n_videos": float(table["video_id"].nunique()),
    }
