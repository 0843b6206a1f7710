"""`python -m sweep.run grid.yaml`: expand the grid, run one Ray Tune trial per cell, score, log, report.

Exit codes: 0 every cell succeeded, 1 some cells failed, 2 the grid or dataset is invalid.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from sweep.cells import Cell, expand_cells
from sweep.config import GridConfig, GridError, load_grid
from sweep.data import DatasetError, Sample, dataset_fingerprint, load_coco_samples
from sweep.store import ResultStore

for _key, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # an unreachable tracking server must not stall the sweep for minutes of retries
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}.items():
    os.environ.setdefault(_key, _value)

log = logging.getLogger("sweep")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep.run",
        description="Caption a dataset with every cell of a model x precision x max_new_tokens grid, "
        "score and measure each cell, log to MLflow and report the quality-vs-cost Pareto fronts.",
        epilog="Exit codes: 0 all cells ok, 1 some cells failed, 2 invalid grid or dataset.",
    )
    p.add_argument("grid", type=Path, help="grid.yaml describing the sweep")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid field, e.g. --set dataset.limit=8 --set 'precisions=[fp16]'")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else start an embedded Ray)")
    p.add_argument("--verbose", action="store_true", help="forward actor logs to this terminal")
    p.add_argument("--dry-run", action="store_true",
                   help="print every cell (family, backend and why, precision per module, store state, "
                   "ETA from past runs) and exit: 0 if every cell can run, 1 if not; starts no Ray, "
                   "downloads nothing")
    p.add_argument("--fresh", action="store_true",
                   help="ignore finished and half-finished cells in the result store (they are archived "
                   "under cells-archive/, not deleted) and compute every cell again")
    return p


def load_samples(grid: GridConfig) -> tuple[list[Sample] | None, str]:
    """COCO samples now; video scenes are detected later, on Ray (None until then)."""
    if grid.dataset.kind == "video":
        from sweep.video import list_videos, video_fingerprint

        list_videos(grid.dataset)  # bad manifests fail here, before Ray
        return None, video_fingerprint(grid.dataset)
    samples = load_coco_samples(grid.dataset)
    return samples, dataset_fingerprint(samples, grid.dataset.image_max_side)


def init_ray(grid: GridConfig, cells: list[Cell], address: str | None, verbose: bool) -> str:
    """Join the cluster named by --address/$RAY_ADDRESS, else start an embedded Ray."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=verbose)
        return f"Ray cluster at {address}"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    kwargs: dict = {"include_dashboard": False, "log_to_driver": verbose}
    if torch.cuda.device_count() == 0:
        # Logical GPUs let cells and replicas run side by side exactly as they would on real ones.
        need = max(c.gpus_per_actor * c.replicas for c in cells)
        kwargs["num_gpus"] = grid.resources.local_gpus or max(2, math.ceil(need))
    ray.init(**kwargs)
    gpus = ray.cluster_resources().get("GPU", 0)
    kind = "logical GPUs (no CUDA device: models run on CPU)" if "num_gpus" in kwargs else "GPUs"
    return f"embedded Ray with {gpus:g} {kind}"


def archive_cells(store: ResultStore, cells: list[Cell]) -> Path | None:
    """--fresh: move this grid's cells out of the way, keeping them."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = store.root / "cells-archive" / stamp
    moved = False
    for cell in cells:
        src = store.cell_dir(cell.cell_id)
        if src.exists():
            target.mkdir(parents=True, exist_ok=True)
            src.rename(target / cell.cell_id)
            moved = True
    return target if moved else None


def reusable(cell: Cell, store: ResultStore, wanted: set[str]) -> dict | None:
    """Costs of a cell the store already finished; sampled generation is never silently reused."""
    if cell.do_sample:
        return None
    return store.finished_costs(cell.cell_id, wanted)


def run_sweep(grid: GridConfig, cells: list[Cell], samples: list[Sample] | None, address: str | None = None,
              verbose: bool = False, fresh: bool = False) -> tuple[int, dict]:
    import pandas as pd
    import ray

    from sweep.pipeline import PipelineSettings
    from sweep.progress import SweepProgress
    from sweep.recorder import CellCallback, SweepRecorder
    from sweep.report import format_table, front_pool, mark_fronts, plot_fronts, write_html_report
    from sweep.scoring import CaptionScorer
    from sweep.tracking import SweepTracker, default_tracking_uri
    from sweep.trials import run_trials

    out = grid.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out)
    where = None
    if samples is None:  # video: scenes are detected on Ray, once per video file (cached)
        from sweep.video import load_video_samples

        where = init_ray(grid, cells, address, verbose)
        samples = load_video_samples(grid.dataset, out / "scene-cache")
    if fresh and (archived := archive_cells(store, cells)):
        print(f"--fresh: earlier results of these cells moved to {archived}")
    wanted = {s.sample_id for s in samples}
    (out / "samples.json").write_text(json.dumps({
        "references": {s.sample_id: list(s.references) for s in samples},
        "image_ids": {s.sample_id: s.image_id for s in samples},
    }))
    finished = {c.cell_id: costs for c in cells if (costs := reusable(c, store, wanted)) is not None}
    todo = [c for c in cells if c.cell_id not in finished]
    from sweep.plan import memory_refusals, target_gpu_bytes

    gpu_bytes = target_gpu_bytes(grid.resources.accelerator_type, grid.resources.gpu_memory_gb)
    refused = memory_refusals(todo, gpu_bytes, grid.dataset.image_max_side)
    todo = [c for c in todo if c.cell_id not in refused]
    uri = grid.tracking.uri or default_tracking_uri(out)
    if where is None:
        where = init_ray(grid, todo or cells, address, verbose) if todo else "no Ray (all cells are stored)"
    print(f"sweep '{grid.name}': {len(cells)} cells x {len(samples)} images on {where}", flush=True)
    if finished:
        print(f"{len(finished)} cells already finished in {out / 'cells'}: read back, not recomputed",
              flush=True)
    tracker_note = None
    try:
        tracker = SweepTracker(
            uri, grid.tracking.experiment, out / "mlartifacts", grid.name,
            {"grid": grid.model_dump_json(), "n_cells": len(cells), "n_samples": len(samples)},
        )
    except Exception as err:  # results still go to the store; the next run logs what MLflow lacks
        tracker = None
        tracker_note = f"MLflow at {uri} unreachable ({type(err).__name__}): nothing logged; re-run to log"
        print(f"WARNING: {tracker_note}", flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    with CaptionScorer() as scorer:
        progress = SweepProgress(len(cells), len(samples))
        recorder = SweepRecorder(cells, samples, store, scorer, tracker, progress)
        for cell_id, costs in finished.items():
            recorder.record(cell_id, costs, from_store=True)
            progress.cell_reused(cell_id)
        for cell_id, reason in refused.items():  # would not fit the GPU: refused before loading
            recorder.record_failure(cell_id, reason)
            progress.cell_finished(cell_id, ok=False)
        try:
            if todo:
                hosts = run_trials(todo, samples, PipelineSettings.from_grid(grid), store, out / "tune",
                                   f"{grid.name}-{stamp}", [CellCallback(recorder)])
                recorder.notes.append(f"{hosts['loads']} model loads for {len(todo)} cells (a loaded model "
                                      "serves every cell of its model and precision)")
        finally:
            recorder.drain()
            for cell in cells:
                if cell.cell_id not in recorder.outcomes:
                    recorder.record_failure(cell.cell_id, "no result: the sweep stopped before this cell")
            progress.close()
    if ray.is_initialized():
        ray.shutdown()

    results = mark_fronts(pd.DataFrame([recorder.outcomes[c.cell_id].row() for c in cells]))
    results.to_csv(out / "results.csv", index=False)
    results[results["pareto"] != ""].to_csv(out / "pareto_front.csv", index=False)
    plots = plot_fronts(results, out)
    _, random_note = front_pool(results)
    n_failed = int((results["status"] != "ok").sum())
    report = write_html_report(out, f"Sweep report: {grid.name}", results, plots,
                               {s.sample_id: list(s.references) for s in samples},
                               [random_note] if random_note else [])
    if tracker is not None:
        try:
            tracker.log_parent(
                metrics={"n_cells_ok": len(cells) - n_failed, "n_cells_failed": n_failed},
                artifacts=[*plots, out / "results.csv", out / "pareto_front.csv", report],
            )
            tracker.finish(ok=n_failed == 0)
        except Exception as err:
            recorder.notes.append(f"MLflow logging of the sweep run failed: {err}; re-run to log")

    print()
    print(format_table(results))
    print()
    if random_note:
        print(f"NOTE: {random_note}.")
    for note in [*recorder.notes, *filter(None, [tracker_note])]:
        print(f"note: {note}")
    print(f"results:   {out / 'results.csv'}  (per-cell caption tables under {out / 'cells'})")
    print(f"plots:     {', '.join(p.name for p in plots)} in {out}")
    print(f"report:    {report}  (rebuild: python -m sweep.report {out})")
    parent = tracker.parent_id if tracker else "not logged"
    print(f"MLflow:    {uri}  (experiment '{grid.tracking.experiment}', parent run {parent})")
    if uri.startswith("sqlite:"):
        print(f"           mlflow ui --backend-store-uri {uri}")
    if n_failed:
        print(f"{n_failed} of {len(cells)} cells failed:")
        for _, row in results[results["status"] != "ok"].iterrows():
            print(f"  {row['label']}: {row['reason']}")
    return (1 if n_failed else 0), {"results": results, "tracker": tracker, "output_dir": out}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        grid = load_grid(args.grid, args.overrides)
        samples, fingerprint = load_samples(grid)
    except (GridError, DatasetError) as err:
        print(err, file=sys.stderr)
        return 2
    cells = expand_cells(grid, fingerprint)
    if args.dry_run:
        from sweep.plan import format_plan, plan_cells, target_gpu_bytes

        ids = {s.sample_id for s in samples} if samples is not None else set()
        gpu = target_gpu_bytes(grid.resources.accelerator_type, grid.resources.gpu_memory_gb)
        store = ResultStore(grid.output_dir.resolve())
        plans = plan_cells(cells, store, ids, gpu, grid.dataset.image_max_side)
        count = f"{len(samples)} images" if samples is not None else "video scenes (detected at run time)"
        print(f"sweep '{grid.name}': {len(cells)} cells x {count} (dry run)")
        print(format_plan(plans))
        return 0 if all(p.runnable for p in plans) else 1
    code, _ = run_sweep(grid, cells, samples, args.address, args.verbose, args.fresh)
    return code


if __name__ == "__main__":
    sys.exit(main())
