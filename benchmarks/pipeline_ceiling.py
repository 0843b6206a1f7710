"""8. Pipeline ceiling: one cell's pipeline (`sweep.execute.pipeline.caption_samples`: Ray Data decode
tasks, the
hop to the model host, the host's own work) with a captioner that costs nothing, against the decode
floor: the same images decoded and resized by the same code (`sweep.execute.stages.DecodeImage`) in one
process and in one process per core, in the same run, on the same cores.

Many images: coco-mini's 79 repeated under distinct sample ids. Per batch size, the cell runs twice on one
host pool: the first call loads the (zero-cost) model, the second finds it loaded; that one's time from
the call to its first batch is `first_batch_seconds_loaded`."""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import COCO_MINI, Context, log, median

TITLE = "9. Pipeline ceiling (zero-cost captioner)"
LOADER = "benchmarks.zero_captioner:build"
IMAGE_MAX_SIDE = 448


def replicated_samples(coco: Path, copies: int) -> list[Any]:
    """coco-mini's samples `copies` times over, each copy under its own sample ids."""
    from sweep.data.sources import load_coco_samples
    from sweep.grid.config import DatasetConfig

    base = load_coco_samples(DatasetConfig(captions=coco / "captions_val2017.json", images=coco / "val2017"))
    return [replace(s, sample_id=f"{s.sample_id}-{k}") for k in range(copies) for s in base]


def _decode_rows(rows: list[dict[str, Any]]) -> int:
    from sweep.execute.stages import DecodeImage

    decode = DecodeImage(IMAGE_MAX_SIDE)
    return sum(1 for row in rows if not decode(row)["error"])


def _decode_worker(rows: list[dict[str, Any]], barrier: Any, results: Any) -> None:
    import sweep.execute.stages  # noqa: F401 - this process's imports, before the clock starts

    barrier.wait()  # every process starts decoding at once
    start = time.time()
    ok = _decode_rows(rows)
    results.put((start, time.time(), ok))


def decode_floor(samples: list[Any], processes: int) -> float:
    """Images/s of `DecodeImage` alone over the samples, in `processes` processes (1: this one); with
    several, from the moment all have imported and start together to the last one's end."""
    rows = [{"sample_id": s.sample_id, "path": s.path, "error": ""} for s in samples]
    if processes == 1:
        start = time.perf_counter()
        ok = _decode_rows(rows)
        seconds = time.perf_counter() - start
    else:
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(processes), ctx.Queue()
        workers = [ctx.Process(target=_decode_worker, args=(rows[i::processes], barrier, results))
                   for i in range(processes)]
        for w in workers:
            w.start()
        spans = [results.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
        ok = sum(n for _, _, n in spans)
        seconds = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    if ok != len(rows):
        raise RuntimeError(f"decode floor: {len(rows) - ok} of {len(rows)} images failed to decode")
    return len(rows) / seconds


def grid_for(coco: Path, out: Path, batch_size: int) -> Any:
    from sweep.grid.config import GridConfig

    return GridConfig.model_validate({
        "name": "ceiling",
        "dataset": {"captions": str(coco / "captions_val2017.json"), "images": str(coco / "val2017"),
                    "image_max_side": IMAGE_MAX_SIDE},
        "models": [{"id": "zero", "loader": LOADER}],
        "precisions": ["fp32"],
        "max_new_tokens": [8],
        "resources": {"batch_size": batch_size, "replicas": 1, "gpus_per_actor": 1},
        "energy": {"enabled": True},  # as a user runs it: codecarbon around every batch
        "output_dir": str(out),
    })


def one_call(cell: Any, samples: list[Any], settings: Any, host_pool: Any) -> dict[str, float]:
    """caption_samples once: wall, time to the first batch, the generation window as the engine measures
    it (first batch start to last batch end), the host's idle time per batch (window less the batches'
    host latency: what the feed did not deliver in time) and the CPU time this process (the driver side:
    in the engine, the trial's process) spent per batch."""
    import pandas as pd

    from sweep.execute.pipeline import caption_samples

    tables: list[pd.DataFrame] = []
    facts: list[dict] = []
    arrivals: list[float] = []

    def on_batch(t: dict) -> None:
        arrivals.append(time.perf_counter())
        tables.append(t[None].images)
        facts.append(t[None].batch)

    start, cpu = time.perf_counter(), time.process_time()
    caption_samples(cell, samples, settings, on_batch, host_pool)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = pd.concat(tables)
    batches = pd.DataFrame(facts)
    window = float(batches["batch_end_ts"].max() - batches["batch_start_ts"].min())
    host = float(batches["batch_latency_sec"].mean())
    return {
        "wall_seconds": wall,
        "first_batch_seconds": arrivals[0] - start,
        "window_seconds": window,
        "images_per_sec_window": len(rows) / window,
        "images_per_sec_wall": len(rows) / wall,
        "batches": float(len(batches)),
        "host_latency_seconds_per_batch": host,
        "driver_cpu_seconds_per_batch": cpu / len(batches),
        "host_idle_seconds_per_batch":
            max(0.0, window - float(batches["batch_latency_sec"].sum())) / len(batches),
    }


def host_overhead(batch_size: int, energy_country: str | None, calls: int = 30) -> float:
    """Seconds per `ModelHost.caption` call on a decoded batch, in this process, with the zero-cost
    captioner: the host's whole per-batch work (pixels to PIL images, energy metering, bookkeeping)."""
    from actors.contract import GenerationSettings, LoadSpec, ModelRef
    from actors.model_host import ModelHost
    from sweep.execute.stages import decode_batch

    samples = replicated_samples(COCO_MINI, 1)[:batch_size]
    batch = decode_batch([{"sample_id": s.sample_id, "path": s.path, "error": ""} for s in samples], False,
                         IMAGE_MAX_SIDE)
    host = ModelHost(LoadSpec(ModelRef(id="zero", loader=LOADER), precision="fp32"), energy_country)
    settings = GenerationSettings(prompt="Describe the image.", max_new_tokens=8)
    host.begin_cell("overhead", settings)
    secs = []
    for _ in range(calls):
        start = time.perf_counter()
        host.caption(batch, settings, "overhead")
        secs.append(time.perf_counter() - start)
    return median(secs)


def bench_ceiling(coco: Path, work: Path, copies: int, batch_sizes: list[int],
                  repeats: int, images: int | None = None, host_calls: int = 30) -> dict[str, Any]:
    """`images`: the first so many of the copies (--quick: 32, in batches of 8)."""
    import ray

    from sweep.data.sources import dataset_fingerprint
    from sweep.engine import init_ray, shutdown_ray
    from sweep.execute.hosts import HostPool
    from sweep.execute.pipeline import PipelineSettings
    from sweep.grid.cells import expand_cells

    samples = replicated_samples(coco, copies)[:images]
    cores = os.cpu_count() or 1
    floors = {"1": [], str(cores): []}
    cells_by_bs = {}
    for bs in batch_sizes:
        grid = grid_for(coco, work / f"ceiling-b{bs}", bs)
        cells_by_bs[bs] = (grid, expand_cells(grid, dataset_fingerprint(samples, IMAGE_MAX_SIDE))[0])
    grid0, cell0 = cells_by_bs[batch_sizes[0]]
    init_ray(grid0, [cell0], None, False)
    rows = []
    try:
        settings = PipelineSettings.from_grid(grid0)
        for rep in range(repeats):
            # interleaved: a noisy neighbour hits floor and pipeline alike
            floors["1"].append(decode_floor(samples, 1))
            floors[str(cores)].append(decode_floor(samples, cores))
            log(f"  decode floor: {floors['1'][-1]:.0f} img/s in 1 process, {floors[str(cores)][-1]:.0f} in "
                f"{cores}")
            for bs in batch_sizes:
                _, cell = cells_by_bs[bs]
                pool = ray.remote(HostPool).options(num_cpus=0).remote(
                    ray.cluster_resources().get("GPU", 0), settings.energy_country, None)
                try:
                    first = one_call(cell, samples, settings, pool)  # loads the model
                    loaded = one_call(cell, samples, settings, pool)
                finally:
                    ray.get(pool.shutdown.remote())
                    ray.kill(pool)
                host = host_overhead(bs, settings.energy_country, host_calls)
                rows.append({"batch_size": bs, "repeat": rep, "first_call": first, **loaded,
                             "host_seconds_per_call": host,
                             "host_seconds_per_call_no_energy": host_overhead(bs, None, host_calls)})
                log(f"  batch {bs}: {loaded['images_per_sec_window']:.0f} img/s over the window "
                    f"({loaded['images_per_sec_wall']:.0f} over the call), first batch "
                    f"{loaded['first_batch_seconds']:.2f} s with the model loaded; per batch: host call "
                    f"{host * 1000:.1f} ms, host idle {loaded['host_idle_seconds_per_batch'] * 1000:.1f} ms, "
                    f"driver CPU {loaded['driver_cpu_seconds_per_batch'] * 1000:.1f} ms")
    finally:
        shutdown_ray()
    floor_1 = median(floors["1"])
    floor_all = median(floors[str(cores)])
    summary = []
    for bs in batch_sizes:
        mine = [r for r in rows if r["batch_size"] == bs]
        ips = median([r["images_per_sec_window"] for r in mine])
        summary.append({
            "batch_size": bs,
            "images_per_sec_window": ips,
            "images_per_sec_wall": median([r["images_per_sec_wall"] for r in mine]),
            "ratio_vs_decode_floor_all_cores": ips / floor_all,
            "ratio_vs_decode_floor_one_core": ips / floor_1,
            "first_batch_seconds_loaded": median([r["first_batch_seconds"] for r in mine]),
            "host_call_ms_per_batch": 1000 * median([r["host_seconds_per_call"] for r in mine]),
            "host_call_ms_per_batch_no_energy":
                1000 * median([r["host_seconds_per_call_no_energy"] for r in mine]),
            "driver_cpu_ms_per_batch": 1000 * median([r["driver_cpu_seconds_per_batch"] for r in mine]),
            "host_idle_ms_per_batch": 1000 * median([r["host_idle_seconds_per_batch"] for r in mine]),
        })
    return {
        "images": len(samples),
        "image_max_side": IMAGE_MAX_SIDE,
        "cores": cores,
        "repeats": repeats,
        "decode_floor_images_per_sec": {"1_process": floor_1, f"{cores}_processes": floor_all},
        "summary": summary,
        "runs": rows,
    }


def run(ctx: Context) -> dict[str, Any]:
    if ctx.quick:  # the suite's smoke run: 32 images in batches of 8 (one host pool), 5 timed host calls
        return bench_ceiling(ctx.coco, ctx.work, 1, [8], 1, images=32, host_calls=5)
    return bench_ceiling(ctx.coco, ctx.work, 13, [8, 32], ctx.repeats)


if __name__ == "__main__":  # python -m benchmarks.pipeline_ceiling [copies] [repeats]: this section alone
    import json
    import sys
    import tempfile

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 13
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with tempfile.TemporaryDirectory() as tmp:
        out = bench_ceiling(COCO_MINI, Path(tmp), copies, [8, 32], reps)
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=1))
