"""The one renderer of benchmark results: the markdown file, and the console summary of each section."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks import precisions


def fmt(v: Any, nd: int = 2) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def met(ok: bool | None) -> str:
    return "met" if ok else "NOT met"


def table(columns: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A markdown table, then a blank line."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return [*lines, *("| " + " | ".join(str(v) for v in row) + " |" for row in rows), ""]


def header(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    return [
        f"# Benchmark results {m['date']}",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {m['cpu_model']}, {m['cpu_cores']} cores (torch threads {m['torch_threads']}), "
        f"GPU: {m['gpu']}",
        f"- load average (1/5/15 min) at start {m.get('load_average_1_5_15min')}, "
        f"at end {m.get('load_average_at_end')} (shared machine: ratios are measured side by side)",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
        f"- git: {m['git_commit'][:12]}{' (dirty tree)' if m['git_dirty'] else ''}",
        f"- weights: random ({m['weights_note']})",
        f"- total benchmark time: {result['total_seconds']:.0f} s",
        f"- failed engine cells: {'; '.join(result.get('failed_cells') or []) or 'none'}",
        "",
    ]


def batching_md(b: dict[str, Any]) -> list[str]:
    return [
        f"## 1. Batching (tiny:llava fp32, {b['n_images']} images, {b['max_new_tokens']} new tokens, "
        f"median of {b['repeats']})",
        "",
        *table(
            ["variant", "seconds", "images/s", "ratio vs per-image loop"],
            [
                ["per-image transformers loop", f"{b['loop_seconds_median']:.2f}",
                 f"{b['loop_images_per_sec']:.2f}", "1.00"],
                *(
                    [f"HF actor, batch {r['batch_size']}", f"{r['seconds_median']:.2f}",
                     f"{r['images_per_sec']:.2f}", f"{r['ratio_vs_loop']:.2f}"]
                    for r in b["batches"]
                ),
            ],
        ),
        f"Target {b['target']}: {met(b['target_met'])}.",
        "",
    ]


def engine_md(e: dict[str, Any]) -> list[str]:
    g, s = e["grid"], e["engine_split"]
    return [
        f"## 2. Engine overhead ({g['cells']} cells x {g['images']} images, median of {e['repeats']})",
        "",
        *table(["", "seconds"], [
            ["engine (run_sweep) wall", f"{e['engine_wall_seconds']:.1f}"],
            ["sequential script wall", f"{e['sequential_wall_seconds']:.1f}"],
            ["ratio engine / sequential", f"{e['ratio_engine_vs_sequential']:.2f}"],
            ["ratio (engine - Ray start) / sequential",
             f"{e['ratio_engine_without_ray_start_vs_sequential']:.2f}"],
        ]),
        "Split of the engine's time (phase = the engine's own timing, `SweepResult.phases`; scoring and "
        "MLflow run beside the trials, so phases overlap):",
        "",
        *table(["part", "seconds", "how"], [
            ["Ray start", f"{s['ray_start_seconds']:.1f}", "phase ray_start"],
            ["Tune trials (all cells)", f"{s['trials_seconds']:.1f}", "phase trials"],
            ["model loads", f"{int(s.get('model_loads', 0))} for {int(s.get('cells', 0))} cells",
             "cells with model_reused = 0"],
            ["model load, sum over loads", f"{s['model_load_seconds_sum']:.1f}", "load_seconds x n_actors"],
            ["generation, sum over cells", f"{s['generation_seconds_sum']:.1f}",
             "n / images_per_sec (generation window)"],
            ["per-cell pipeline overhead, sum", f"{s['pipeline_overhead_seconds_sum']:.1f}",
             "cell_wall - generation (actor start + load + Ray Data + store)"],
            ["scoring", f"{s['scoring_seconds']:.1f}", "phase scoring"],
            ["MLflow", f"{s['mlflow_seconds']:.1f}", "phase mlflow"],
            ["report + plots", f"{s['report_plots_seconds']:.1f}", "phase report"],
        ]),
        "Sequential script split: " + ", ".join(f"{k} {v:.1f}s" for k, v in e["sequential_split"].items()),
        "",
    ]


def rerun_md(r: dict[str, Any]) -> list[str]:
    return [
        "## 3. Re-run of the finished grid",
        "",
        f"re-run {r['rerun_wall_seconds']:.2f} s vs first run {r['first_wall_seconds']:.1f} s: ratio "
        f"**{r['ratio_rerun_vs_first']:.3f}** (target {r['target']}: {met(r['target_met'])})",
        "",
    ]


def scaling_md(sc: dict[str, Any]) -> list[str]:
    return [
        f"## 4. Replicas on logical GPUs ({sc['cell']}, {sc['images']} images, median of "
        f"{sc['repeats']}; {sc['note']})",
        "",
        *table(
            ["replicas", "sweep wall s", "Ray start s", "cell wall s", "cell images/s",
             "generation images/s"],
            (
                [x["replicas"], f"{x['wall_seconds']:.1f}", f"{x['ray_start_seconds']:.1f}",
                 f"{x['cell_wall_seconds']:.1f}", f"{x['cell_images_per_sec']:.2f}",
                 f"{x['generation_images_per_sec']:.2f}"]
                for x in sc["rows"]
            ),
        ),
    ]


def gpu_md(gp: dict[str, Any]) -> list[str]:
    if "skipped" in gp:
        return ["## 5. GPU", "", f"{gp['skipped']}: skipped.", ""]
    return [
        "## 5. GPU",
        "",
        f"{gp['device']}, {gp['weights']}, {gp['max_new_tokens']} new tokens",
        "",
        *table(
            ["model", "path", "precision", "batch", "images/s", "tokens/s", "peak GB", "load s", "error"],
            (
                [x["model"], x.get("path", ""), x["precision"], x.get("batch_size", ""),
                 fmt(x.get("images_per_sec", "")), fmt(x.get("tokens_per_sec", "")),
                 fmt(x.get("peak_memory_gb", "")), fmt(x.get("load_seconds", "")),
                 x.get("error", x.get("skipped", ""))]
                for x in gp["rows"]
            ),
        ),
    ]


def token_budgets_md(tb: dict[str, Any]) -> list[str]:
    lines = [f"## 6. Token-budget sharing ({tb['note']})", ""]
    for g in tb["grids"].values():
        lines += [
            f"{g['grid']}: {g['cells']} cells x {g['images']} images, median of {g['repeats']}",
            "",
            *table(["", "shared", "unshared", "ratio"], [
                ["generating cells", g["generating_cells_shared"], g["generating_cells_unshared"], ""],
                ["generation seconds (sum)", f"{g['generation_seconds_shared']:.2f}",
                 f"{g['generation_seconds_unshared']:.2f}", f"**{g['ratio_generation']:.2f}**"],
                ["whole-sweep wall seconds", f"{g['wall_seconds_shared']:.1f}",
                 f"{g['wall_seconds_unshared']:.1f}", f"{g['ratio_wall']:.2f}"],
            ]),
            f"Identical captions: {g['identical_captions']} of {g['compared_captions']} "
            f"({g['identical_cells']} of {g['compared_cells']} cells). Target {g['target']}: "
            f"{met(g['target_met'])}.",
            "",
        ]
    return lines


def scoring_md(sc: dict[str, Any]) -> list[str]:
    return [
        f"## 7. Scoring time of one cell at {sc['images']} images ({sc['note']})", "",
        *table(["", "seconds", "CIDEr"], [
            ["before: pycocoevalcap corpus scores", f"{sc['before_seconds']:.1f}",
             f"{sc['cider_before']:.4f}"],
            ["after: per-image scores", f"{sc['after_seconds']:.1f}", f"{sc['cider_after']:.4f}"],
            ["after: bootstrap intervals", f"{sc['intervals_seconds']:.2f}", ""],
        ]),
        f"After / before: **{sc['ratio_after_vs_before']:.2f}**, median of {sc['repeats']}.", "",
    ]


def halving_md(h: dict[str, Any]) -> list[str]:
    lines = [f"## 8. Pareto-aware successive halving ({h['note']})", ""]
    for g in h["grids"].values():
        met_ = g["targets_met"]
        lines += [
            f"{g['grid']}: {g['cells']} cells x {g['images']} images, search {g['search']}", "",
            *table(["", "full", "halving", "ratio", "target"], [
                ["images captioned", g["images_full"], g["images_halving"], f"**{g['ratio_images']:.2f}**",
                 f"{g['targets']['images']}: {met(met_['images'])}"],
                ["whole-sweep wall seconds", f"{g['wall_full']:.1f}", f"{g['wall_halving']:.1f}",
                 f"**{g['ratio_wall']:.2f}**", f"{g['targets']['wall']}: {met(met_['wall'])}"],
                ["fewest images any pruning keeping the full run's fronts can caption", g["images_full"],
                 g["images_bound"], f"{g['ratio_bound']:.2f}", ""],
                *([["least wall that pruning them could leave (the full run's wall less the captioning "
                    "of the prunable generations past the first rung)", f"{g['wall_full']:.1f}",
                    f"{g['wall_bound']:.1f}", f"{g['ratio_wall_bound']:.2f}", ""]]
                  if "wall_bound" in g else []),
            ]),
            f"Rungs {g['rungs']}; {g['front_generations']} of the {g['generations']} generations serve a "
            "cell on a front of the full run (they must caption every image; the others at least the first "
            "rung).", "",
            f"Fronts identical: {g['fronts_identical']}. Front cells of the full run pruned: "
            f"{g['front_cells_pruned'] or 'none'} ({g['targets']['fronts']}: {met(met_['fronts'])}).",
            "Every front difference (cause; CIDEr tie in the full run with the other run's front?):",
            *[f"- {d['axis']}: {d['cell']} on the {d['on']} front ({d['cause']}); {d['why']}"
              for d in g["front_differences"]],
            f"Pruned: {len(g['pruned'])}", *[f"- {p}" for p in g["pruned"]], "",
        ]
    return lines


def pipeline_ceiling_md(pc: dict[str, Any]) -> list[str]:
    floors = pc["decode_floor_images_per_sec"]
    one, every = floors["1_process"], floors[f"{pc['cores']}_processes"]
    return [
        f"## 9. Pipeline ceiling: zero-cost captioner, {pc['images']} images at {pc['image_max_side']} px, "
        f"median of {pc['repeats']}", "",
        f"Decode floor (`DecodeImage` alone, same images, same run): {one:.0f} img/s in 1 process, "
        f"{every:.0f} in {pc['cores']}.", "",
        *table(["batch", "img/s (window)", "img/s (call)", f"/ floor {pc['cores']} proc", "/ floor 1 proc",
                "first batch s (loaded)", "host ms/batch (no energy)", "host idle ms/batch",
                "driver CPU ms/batch"],
               ([r["batch_size"], f"{r['images_per_sec_window']:.0f}", f"{r['images_per_sec_wall']:.0f}",
                 f"**{r['ratio_vs_decode_floor_all_cores']:.2f}**",
                 f"{r['ratio_vs_decode_floor_one_core']:.2f}",
                 f"{r['first_batch_seconds_loaded']:.2f}",
                 f"{r['host_call_ms_per_batch']:.1f} ({r['host_call_ms_per_batch_no_energy']:.1f})",
                 f"{r['host_idle_ms_per_batch']:.1f}", f"{r['driver_cpu_ms_per_batch']:.1f}"]
                for r in pc["summary"])),
    ]


def padding_md(pd: dict[str, Any]) -> list[str]:
    return [
        f"## 10. HF padding: {pd['model']} {pd['precision']}, {pd['n_images']} images alternately "
        f"{pd['image_sides'][0]} and {pd['image_sides'][1]} px, batch {pd['batch_size']}, "
        f"{pd['max_new_tokens']} new tokens, median of {pd['repeats']}", "",
        *table(["", "one padded batch", "grouped by length", "ratio"], [
            ["pad tokens", pd["pad_tokens_padded"], pd["pad_tokens_grouped"],
             f"**{pd['ratio_pad_tokens']:.2f}**"],
            ["seconds per batch", f"{pd['seconds_per_batch_padded']:.3f}",
             f"{pd['seconds_per_batch_grouped']:.3f}", f"{pd['ratio_seconds_grouped_vs_padded']:.2f}"],
            ["images/s", f"{pd['images_per_sec_padded']:.1f}", f"{pd['images_per_sec_grouped']:.1f}", ""],
        ]), "",
        f"Identical captions: {pd['identical_captions']}/{pd['compared_captions']}.",
    ]


def warmup_md(w: dict[str, Any]) -> list[str]:
    off, on = w["variants"]["0"], w["variants"]["1"]
    by_load = {r["load"]: r for r in on["loads"]}
    rows = [[r["load"], f"{r['first']:.3f}", f"{r['siblings']:.3f}", f"{r['ratio']:.2f}",
             f"{by_load[r['load']]['first']:.3f}" if r["load"] in by_load else "",
             f"{by_load[r['load']]['siblings']:.3f}" if r["load"] in by_load else "",
             f"{by_load[r['load']]['ratio']:.2f}" if r["load"] in by_load else ""] for r in off["loads"]]
    return [
        f"## 11. Cold cells: latency p50 (s) of the first cell of each load vs its siblings ({w['note']}; "
        f"{len(w['prompts'])} prompts of {sorted(set((w.get('prompt_tokens') or {}).values()))} tokens "
        f"(siblings of identical shape), {w['max_new_tokens']} new tokens each)", "",
        *table(["load", "first, no warm-up", "siblings", "ratio", "first, warm-up 1", "siblings", "ratio"],
               rows),
        f"Median first/siblings ratio: **{off['median_ratio']:.2f}** without the warm-up, "
        f"**{on['median_ratio']:.2f}** with it. Whole sweep: {off['wall']:.1f} s and {on['wall']:.1f} s. "
        f"Cache policy: {', '.join(on['cache_policy'])}.",
    ]


def preprocess_md(p: dict[str, Any]) -> list[str]:
    host, task = p["summary"]["host"], p["summary"]["decode_task"]
    rows = [[label, f"{host[key] * scale:.{digits}f}", f"{task[key] * scale:.{digits}f}"]
            for label, key, scale, digits in (
                ("images/s (generation window)", "images_per_sec", 1, 2),
                ("host busy s per batch", "host_busy_seconds_per_batch", 1, 3),
                ("host idle s per batch", "host_idle_seconds_per_batch", 1, 3),
                ("processor ms per image (where it ran)", "preprocess_seconds_per_image", 1000, 1))]
    return [
        f"## 12. Processor on the host vs in the decode tasks: {p['model']} {p['precision']}, {p['images']} "
        f"images at {p['image_max_side']} px, batch {p['batch_size']}, {p['max_new_tokens']} new tokens, "
        f"median of {p['repeats']} alternated runs", "",
        *table(["", "processor on the host", "in the decode tasks"], rows), "",
        f"Images/s in the decode tasks / on the host: **{p['ratio_images_per_sec_task_vs_host']:.2f}**. "
        f"Identical captions: {p['identical_captions']}/{p['compared_captions']}.",
    ]


def precisions_md(p: dict[str, Any]) -> list[str]:
    intro, columns, rows = precisions.summary(p)
    return [*intro, *table(columns, rows)]


MARKDOWN = {"batching": batching_md, "engine": engine_md, "rerun": rerun_md, "scaling": scaling_md,
            "gpu": gpu_md, "token_budgets": token_budgets_md, "scoring": scoring_md,
            "halving": halving_md, "pipeline_ceiling": pipeline_ceiling_md, "padding": padding_md,
            "precisions": precisions_md, "warmup": warmup_md, "preprocess": preprocess_md}


def markdown(result: dict[str, Any]) -> str:
    lines = header(result)
    for name, section_md in MARKDOWN.items():
        if result.get(name) is not None:
            lines += section_md(result[name])
    return "\n".join(lines)


def console(name: str, data: dict[str, Any]) -> list[str]:
    """What the CLI prints when a section has finished."""
    if name == "batching":
        return [f"   per-image loop {data['loop_images_per_sec']:.2f} img/s; " + "; ".join(
            f"batch {r['batch_size']}: {r['images_per_sec']:.2f} img/s = {r['ratio_vs_loop']:.2f}x"
            for r in data["batches"]
        )]
    if name == "engine":
        s = data["engine_split"]
        return [
            f"   engine {data['engine_wall_seconds']:.1f}s vs sequential "
            f"{data['sequential_wall_seconds']:.1f}s: {data['ratio_engine_vs_sequential']:.2f}x "
            f"({data['ratio_engine_without_ray_start_vs_sequential']:.2f}x without Ray start "
            f"{s['ray_start_seconds']:.1f}s)",
            "   split: " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()),
        ]
    if name == "rerun":
        return [f"   re-run / first run: {data['ratio_rerun_vs_first']:.3f} "
                f"({data['rerun_wall_seconds']:.2f}s vs {data['first_wall_seconds']:.1f}s)"]
    if name == "token_budgets":
        return [
            f"   {g['grid']}: identical captions {g['identical_captions']}/{g['compared_captions']}; "
            f"generation {g['generation_seconds_shared']:.2f}s shared / "
            f"{g['generation_seconds_unshared']:.2f}s unshared = {g['ratio_generation']:.2f}x; "
            f"wall {g['wall_seconds_shared']:.1f}s / "
            f"{g['wall_seconds_unshared']:.1f}s = {g['ratio_wall']:.2f}x"
            for g in data["grids"].values()
        ]
    if name == "scoring":
        return [f"   {data['images']} images: before {data['before_seconds']:.1f}s, after "
                f"{data['after_seconds']:.1f}s + intervals {data['intervals_seconds']:.2f}s "
                f"= {data['ratio_after_vs_before']:.2f}x"]
    if name == "halving":
        return [
            f"   {name_}: images {g['images_halving']}/{g['images_full']} = {g['ratio_images']:.2f}x (fewest "
            f"possible keeping the fronts {g['ratio_bound']:.2f}x); wall "
            f"{g['wall_halving']:.1f}s/{g['wall_full']:.1f}s = {g['ratio_wall']:.2f}x; fronts identical "
            f"{g['fronts_identical']}; {len(g['pruned'])} pruned; front cells pruned: "
            f"{g['front_cells_pruned'] or 'none'}"
            for name_, g in data["grids"].items()
        ]
    if name == "scaling":
        return [
            f"   replicas {x['replicas']}: wall {x['wall_seconds']:.1f}s, "
            f"cell {x['cell_wall_seconds']:.1f}s, {x['cell_images_per_sec']:.2f} img/s over the cell, "
            f"{x['generation_images_per_sec']:.2f} img/s generation"
            for x in data["rows"]
        ]
    if name == "pipeline_ceiling":
        return [f"   batch {r['batch_size']}: {r['images_per_sec_window']:.0f} img/s = "
                f"{r['ratio_vs_decode_floor_all_cores']:.2f}x the decode floor on {data['cores']} processes "
                f"({r['ratio_vs_decode_floor_one_core']:.2f}x one), first batch "
                f"{r['first_batch_seconds_loaded']:.2f} s with the model loaded" for r in data["summary"]]
    if name == "warmup":
        return [f"   first cell / siblings latency p50: {data['variants']['0']['median_ratio']:.2f}x without "
                f"warm-up, {data['variants']['1']['median_ratio']:.2f}x with"]
    if name == "precisions":
        return precisions.console(data)
    if name == "preprocess":
        host, task = data["summary"]["host"], data["summary"]["decode_task"]
        return [f"   images/s {host['images_per_sec']:.2f} (processor on the host) -> "
                f"{task['images_per_sec']:.2f} (in the decode tasks) = "
                f"{data['ratio_images_per_sec_task_vs_host']:.2f}x; host idle per batch "
                f"{host['host_idle_seconds_per_batch']:.3f} -> {task['host_idle_seconds_per_batch']:.3f} s; "
                f"identical captions {data['identical_captions']}/{data['compared_captions']}"]
    if name == "padding":
        return [f"   pad tokens {data['pad_tokens_padded']} -> {data['pad_tokens_grouped']} "
                f"({data['ratio_pad_tokens']:.2f}x); seconds grouped / padded "
                f"{data['ratio_seconds_grouped_vs_padded']:.2f}x; identical captions "
                f"{data['identical_captions']}/{data['compared_captions']}"]
    return []
