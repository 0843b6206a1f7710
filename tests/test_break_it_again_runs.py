"""Issue 30, cases 5-8: retries only of what can succeed and one line per failed cell, pruned cells read
back, cells told apart by prompt, and the smaller ones (cases 1-4: test_break_it_again.py). Cheap: no Ray
unless marked slow."""

from __future__ import annotations

import pytest
import yaml

from sweep.run import main
from tests.test_break_it_again import REPO, _dataset, _grid_file

# --- 5: retry only what can succeed; one line per failed cell -------------------------------------------

def test_a_load_error_is_raised_by_begin_cell_not_the_constructor_and_says_not_retried():
    from actors.contract import LOAD_FAILED, GenerationSettings, LoadSpec, ModelRef
    from actors.model_host import ModelHost, ModelLoadFailed
    from sweep.execute.trials import root_cause

    spec = LoadSpec(ModelRef(id="m", loader="no_such_module_anywhere:build"), precision="fp32", backend="hf")
    with pytest.raises(Exception, match="cannot import no_such_module_anywhere"):
        ModelHost(spec, None)  # outside Ray: raised where it happens, as before
    host = ModelHost(spec, None, defer_load_error=True)  # a Ray actor: alive, so Ray does not restart it
    with pytest.raises(ModelLoadFailed, match="cannot import no_such_module_anywhere") as err:
        host.begin_cell("c", GenerationSettings(prompt="", max_new_tokens=4))
    text = (f"Traceback (most recent call last):\n  File \"x\", line 1\n"
            f"ray.exceptions.RayTaskError(ModelLoadFailed): {err.value}\nModelLoadFailed: {err.value}")
    reason = root_cause(text)
    assert reason.startswith(LOAD_FAILED) and "CustomLoaderError" in reason


def test_a_dead_host_is_said_to_have_been_retried_and_an_exception_not():
    from sweep.execute.trials import root_cause

    died = ("Traceback (most recent call last):\n  File \"t.py\", line 3, in f\n"
            "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.")
    assert root_cause(died).startswith("model host died (retried by Ray up to 2 times, all failed): ")
    assert root_cause("Traceback:\nValueError: bad prompt") == "ValueError: bad prompt"
    assert root_cause("x\ntorch.OutOfMemoryError: CUDA out of memory").startswith("oom: ")


def test_library_errors_stay_off_the_terminal_and_mlflow_sql_dumps_are_one_line(tmp_path, capsys):
    import logging

    from sqlalchemy.exc import OperationalError

    from sweep.logs import LogSession, brief

    err = OperationalError("INSERT INTO metrics VALUES (?, ?)", ("x" * 500, 1), Exception("disk is full"))
    assert "[SQL:" in str(err) and len(str(err).splitlines()) > 2
    assert brief(err) == "OperationalError: (builtins.Exception) disk is full"
    root = logging.getLogger()
    terminal = logging.StreamHandler()  # as run.py's basicConfig sets up the terminal
    root.addHandler(terminal)
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        with LogSession(tmp_path) as logs:
            # a logger of its own: MLflow's alembic run (fileConfig) disables the loggers that exist then
            logging.getLogger("sqlalchemy.issue30").error("a long SQL error\n[SQL: INSERT ...]")
            logging.getLogger("mlflow.store").error("Traceback (most recent call last): ...")
            logging.getLogger("sweep.engine").warning("the sweep's own warning")
            logging.getLogger("urllib3.connectionpool").warning("a library's plain warning")
        text = logs.path.read_text()
    finally:
        root.removeHandler(terminal)
        root.setLevel(level)
    err_out = capsys.readouterr().err
    assert "the sweep's own warning" in err_out and "a library's plain warning" in err_out
    assert "SQL" not in err_out and "Traceback" not in err_out
    assert "a long SQL error" in text and "Traceback" in text and "the sweep's own warning" in text


def test_a_part_set_aside_in_a_trial_process_is_warned_about_by_the_driver(tmp_path, caplog):
    import time
    from types import SimpleNamespace

    import pandas as pd

    from sweep.results.set_aside import warn_set_aside
    from sweep.results.store import ResultStore

    started = time.time()
    trial_store, driver_store = ResultStore(tmp_path), ResultStore(tmp_path)  # two processes' views
    trial_store.append_part("c1", pd.DataFrame({"sample_id": ["a"], "caption": "x", "error": ""}))
    (trial_store.parts_dir("c1") / "bad.parquet").write_bytes(b"not parquet")
    assert trial_store.done_sample_ids("c1") == {"a"}  # the trial sets it aside, logging in its process
    cells = [SimpleNamespace(cell_id="c1"), SimpleNamespace(cell_id="c2")]
    with caplog.at_level("WARNING", logger="sweep"):
        lines = warn_set_aside(driver_store, cells, started)
    assert len(lines) == 1 and "bad.parquet.unreadable" in lines[0]
    warned = [r for r in caplog.records if r.name == "sweep.results.set_aside"]
    assert [r.levelname for r in warned] == ["WARNING"] and "bad.parquet.unreadable" in warned[0].getMessage()
    assert warn_set_aside(driver_store, cells, time.time() + 5) == []  # an earlier run's: not again


@pytest.mark.slow
def test_a_model_that_fails_to_load_is_loaded_once_per_cell_and_told_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    captions, images = _dataset(tmp_path, n=4)
    fault_dir = tmp_path / "faults"
    models = [{"id": f"broken-{i}", "loader": "fault_models:load_fails"} for i in (1, 2)]
    grid = _grid_file(tmp_path, captions, images, tmp_path / "out", models=models)
    env = {**os.environ, "VLM_SWEEP_FAULT_DIR": str(fault_dir),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-m", "sweep.run", str(grid)], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=600)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 1, terminal
    loads = (fault_dir / "loads.log").read_text().splitlines()
    assert len(loads) == 2, loads  # one load per cell: not restarted and retried by Ray
    assert "retries remaining" not in terminal and "Traceback" not in terminal, terminal
    failed = [ln for ln in terminal.splitlines() if "broken-" in ln and "not retried" in ln]
    assert len(failed) == 2 and all("FileNotFoundError: no weights file in broken-" in ln for ln in failed)
    assert "2 of 2 cells failed" in terminal


# --- 6: a pruned cell is a finished result -------------------------------------------------------------

def test_a_pruned_cell_is_read_back_by_a_rerun_of_the_same_halving_grid(tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from sweep.data.sources import dataset_fingerprint, load_coco_samples
    from sweep.engine import plan_sweep
    from sweep.grid.cells import expand_cells
    from sweep.grid.config import parse_grid
    from sweep.results.pruned import search_stamp, write_pruned

    captions, images = _dataset(tmp_path, n=4)

    def grid(strategy: str, seed: int = 0):
        search = {"strategy": strategy, **({"rungs": [2], "seed": seed} if strategy != "full" else {})}
        return parse_grid({"name": "p", "dataset": {"captions": str(captions), "images": str(images)},
                           "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "small"}],
                           "precisions": ["fp32"], "max_new_tokens": [4, 16], "search": search,
                           "output_dir": str(tmp_path / "out")})

    halving = grid("pareto_halving")
    samples = load_coco_samples(halving.dataset)
    cells = expand_cells(halving, dataset_fingerprint(samples, halving.dataset.image_max_side))
    plan = plan_sweep(halving, cells, samples)
    t4, t16 = cells
    rows = pd.DataFrame({"sample_id": [s.sample_id for s in samples], "caption": "x", "error": ""})
    plan.store.begin_cell(t16)
    plan.store.finish_cell(t16.cell_id, rows, {"latency_p50_s": 0.1})
    plan.store.begin_cell(t4)
    plan.store.finish_cell(t4.cell_id, rows[:2], {"latency_p50_s": 0.1})  # its first rung only
    why = SimpleNamespace(by=t16.cell_id, rung=0, n_images=2, describe=lambda: "dominated by small/fp32/t16")
    write_pruned(plan.store, t4.cell_id, why, search_stamp(halving.search))
    again = plan_sweep(halving, cells, samples)
    assert set(again.finished) == {t16.cell_id} and list(again.pruned) == [t4.cell_id]
    assert again.todo == []  # nothing to run: no Ray start
    assert again.pruned[t4.cell_id].describe() == "dominated by small/fp32/t16"
    assert plan_sweep(grid("pareto_halving", seed=1), cells, samples).pruned == {}  # other settings: run
    full = plan_sweep(grid("full"), cells, samples)
    assert full.pruned == {} and [c.cell_id for c in full.todo] == [t4.cell_id]  # full completes it


def test_progress_counts_pruned_cells_and_only_their_images():
    import io

    from sweep.execute.progress import SweepProgress

    progress = SweepProgress(3, 100, stream=io.StringIO())
    progress.cell_reused("a")
    progress.cell_pruned("b", 12, reused=True)
    progress.cell_started("c")
    progress.cell_pruned("c", 24)
    assert "cells 1 done, 2 pruned, 0 running, 0 failed of 3" in progress.status_line()
    assert "samples 136/136" in progress.status_line()
    assert progress.final_line().startswith(
        "finished: 1 cells ok, 2 pruned, 0 failed of 3; 136 samples (36 of them in the pruned cells)")


# --- 7: cells that differ only by prompt are told apart -------------------------------------------------

PROMPTS = ["Describe this image.", "What is in the picture?", "Caption it."]


def test_several_prompts_give_tagged_labels_a_prompt_column_and_one_legend(tmp_path, capsys):
    import pandas as pd

    from sweep.grid.cells import expand_cells, prompt_legend
    from sweep.grid.config import parse_grid
    from sweep.publish.report import format_table
    from sweep.results.recorder import CellOutcome

    captions, images = _dataset(tmp_path)
    data = {"name": "prompts", "dataset": {"captions": str(captions), "images": str(images)},
            "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "name": "seer"}],
            "precisions": ["fp32"], "max_new_tokens": [4], "prompts": PROMPTS,
            "output_dir": str(tmp_path / "out")}
    cells = expand_cells(parse_grid(data), "fp")
    assert [c.label for c in cells] == ["seer/fp32/t4/p1", "seer/fp32/t4/p2", "seer/fp32/t4/p3"]
    # the tag is a label, not a caption setting: the cell ids are those of untagged cells
    assert cells[1].cell_id == cells[1].model_copy(update={"prompt_tag": ""}).cell_id
    one = expand_cells(parse_grid({**data, "prompts": PROMPTS[:1]}), "fp")
    assert one[0].label == "seer/fp32/t4" and prompt_legend(one) == []
    assert prompt_legend(cells) == [f"  p{i} = {p!r}" for i, p in enumerate(PROMPTS, start=1)]
    rows = pd.DataFrame([CellOutcome(c, "ok", {"cider": 0.5}, {}).row() for c in cells])
    assert list(rows["prompt"]) == PROMPTS
    table = format_table(rows)
    assert all(f"seer/fp32/t4/p{i}" in table for i in (1, 2, 3))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("prompts (the labels' /pN):") == 1 and out.count(repr(PROMPTS[1])) == 1
    assert "[2] seer/fp32/t4/p2" in out


# --- 8: the smaller ones -------------------------------------------------------------------------------

def test_an_output_dir_the_sqlite_uri_would_misread_is_refused(tmp_path, capsys):
    captions, images = _dataset(tmp_path)
    for name in ("runs?v=1", "runs#2", "100%done"):
        assert main([str(_grid_file(tmp_path, captions, images, tmp_path / name)), "--dry-run"]) == 2
        assert "sqlite URI" in capsys.readouterr().err
    # with a tracking server of its own, the output dir's name does not matter
    grid = _grid_file(tmp_path, captions, images, tmp_path / "runs?v=1", tracking={"uri": "http://127.0.0.1:9"})
    assert main([str(grid), "--dry-run"]) == 0


@pytest.mark.parametrize("content, expected", [
    ("name: x\n".encode("utf-16"), "not UTF-8 text (byte 0"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
    (b"name: x\x00\x00", "holds NUL bytes"),
    (None, "grid file a directory"),
])
def test_a_grid_file_that_is_not_utf8_text_or_not_a_file_exits_2(tmp_path, capsys, content, expected):
    path = tmp_path / "grid.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main([str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err and "Traceback" not in captured.err


def test_an_empty_model_folder_is_named_with_the_config_json_it_lacks(tmp_path, capsys):
    from actors.resolve import ModelConfigError, check_local_folder

    empty = tmp_path / "my-model"
    empty.mkdir()
    with pytest.raises(ModelConfigError, match="my-model: a local model folder without config.json"):
        check_local_folder(str(empty))
    captions, images = _dataset(tmp_path)
    grid = _grid_file(tmp_path, captions, images, tmp_path / "out", models=[{"id": str(empty)}])
    assert main([str(grid), "--dry-run"]) == 1
    assert "without config.json" in capsys.readouterr().out


def test_the_dry_run_finds_a_custom_loader_without_running_it(tmp_path, capsys, monkeypatch):
    captions, images = _dataset(tmp_path)
    (tmp_path / "my_loaders.py").write_text("raise SystemExit('never run by the plan')\n"
                                           "def build(model_id, precision):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for loader, problem in (("my_loaders:build", ""),
                            ("my_loaders:nothing", "has no callable 'nothing'")):
        models = [{"id": "m", "loader": loader}]
        grid = _grid_file(tmp_path, captions, images, tmp_path / "out", models=models)
        assert main([str(grid), "--dry-run"]) == (1 if problem else 0)
        assert problem in capsys.readouterr().out
    models = [{"id": "m", "loader": "no_such_module_here:build"}]
    grid = _grid_file(tmp_path, captions, images, tmp_path / "out", models=models)
    assert main([str(grid), "--dry-run"]) == 1
    assert "CANNOT RUN: loader 'no_such_module_here:build': cannot import" in capsys.readouterr().out
    models = [{"id": "m", "loader": "fault_models:counting"}]  # tests/ is on sys.path under pytest
    grid = _grid_file(tmp_path, captions, images, tmp_path / "out", models=models)
    assert main([str(grid), "--dry-run"]) == 0


def test_csv_cells_that_would_start_a_formula_are_escaped(tmp_path, capsys):
    import pandas as pd

    from sweep.data.sources import dataset_fingerprint, load_coco_samples
    from sweep.engine import Execution, plan_sweep, publish_results
    from sweep.execute.phases import PhaseTimer
    from sweep.grid.cells import expand_cells
    from sweep.grid.config import parse_grid
    from sweep.publish.spreadsheet import spreadsheet_safe
    from sweep.results.recorder import CellOutcome

    table = pd.DataFrame({"a": ["=1+1", "+x", "-y", "@z", "plain", "\tq"], "n": [-1.5, 2, 3, 4, 5, 6]})
    safe = spreadsheet_safe(table)
    assert list(safe["a"]) == ["'=1+1", "'+x", "'-y", "'@z", "plain", "'\tq"]
    assert list(safe["n"]) == list(table["n"])
    assert list(table["a"])[0] == "=1+1"  # a copy
    from sweep.publish.spreadsheet import read_back

    assert read_back(safe).equals(table) and read_back(pd.DataFrame({"a": ["'quoted"]}))["a"][0] == "'quoted"
    captions, images = _dataset(tmp_path)
    grid = parse_grid({"name": "csv", "dataset": {"captions": str(captions), "images": str(images)},
                       "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"),
                                   "name": "=HYPERLINK(\"x\")"}],
                       "precisions": ["fp32"], "max_new_tokens": [4], "output_dir": str(tmp_path / "out")})
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, 512))
    plan = plan_sweep(grid, cells, samples)
    outcomes = {c.cell_id: CellOutcome(c, "failed", {}, {}, reason="load failed") for c in cells}
    publish_results(plan, Execution(outcomes, [], None, "sqlite:///x.db"), PhaseTimer())
    text = (tmp_path / "out" / "results.csv").read_text()
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def test_the_report_caps_the_references_shown_per_example():
    from sweep.publish.html_report import REFERENCES_SHOWN, shown_references

    refs = [f"reference <{i}>" for i in range(1000)]
    shown = shown_references(refs)
    assert shown.count("reference &lt;") == REFERENCES_SHOWN and "… and 995 more" in shown
    assert "more" not in shown_references(refs[:3])


def test_a_large_reference_set_is_tokenized_in_steps_with_progress(monkeypatch):
    import sweep.quality.scoring.references as scoring

    calls = []
    monkeypatch.setattr(scoring, "tokenize", lambda refs: calls.append(len(refs)) or
                        {k: [c.lower() for c in v] for k, v in refs.items()})
    refs = {i: [f"Caption {i} {j}" for j in range(5)] for i in range(100)}  # 500 references
    lines: list[str] = []
    out = scoring.tokenize_in_steps(refs, lines.append, step=120)
    assert out == {k: [c.lower() for c in v] for k, v in refs.items()}
    assert len(calls) == 5 and len(lines) == 5  # 24 images (120 references) a step, the rest last
    assert lines[-1].startswith("CIDEr document frequencies: 500 of 500 references tokenized")
    calls.clear()
    scoring.tokenize_in_steps(refs, None, step=120)
    assert calls == [100]  # without a progress line to print: one call, as before
