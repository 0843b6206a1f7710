"""Issue 20: what users see. A quiet terminal (library INFO lines into sweep.log), error rows in the
progress line, an ETA only with a basis, cells that do not contend for the CPU cores they are timed on
(and say how many ran beside them). Without Ray, except the CLI test (slow)."""

from __future__ import annotations

import io
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweep.execute.progress import SweepProgress
from sweep.execute.ray_cluster import cpu_logical_gpus
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid
from sweep.logs import LIBRARY_LOGGERS, LogSession, route_library_logs
from sweep.results.recorder import cells_beside

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "zoo" / "shapes-data" / "test"
CHATTER = ("PTBTokenizer tokenized", "Creating initial MLflow database tables",
           "Wrote the latest version of all result files", "Started a local Ray instance")


# --- item 1: library INFO lines into the log file, off the terminal ---------------------------------------

@pytest.fixture
def chatty_library():
    """A logger that, like Ray's and MLflow's, writes to a terminal handler of its own (propagate off)."""
    name = LIBRARY_LOGGERS[0] + ".issue20"
    parent = logging.getLogger(LIBRARY_LOGGERS[0])
    terminal = io.StringIO()
    handler = logging.StreamHandler(terminal)
    saved = (parent.handlers[:], parent.propagate, parent.level)
    parent.handlers, parent.propagate = [handler], False
    parent.setLevel(logging.INFO)
    yield logging.getLogger(name), terminal
    parent.handlers, parent.propagate = saved[0], saved[1]
    parent.setLevel(saved[2])


@pytest.mark.parametrize("verbose", [False, True])
def test_library_info_lines_go_to_the_log_file_and_the_terminal_only_when_verbose(tmp_path, chatty_library,
                                                                                  verbose):
    logger, terminal = chatty_library
    with LogSession(tmp_path, verbose=verbose) as session:
        route_library_logs()
        logger.info("Creating initial MLflow database tables...")
        logger.warning("a warning that matters")
        logging.getLogger("sweep.quality.scoring").info("PTBTokenizer tokenized 12 tokens")
    text = session.path.read_text()
    assert "Creating initial MLflow database tables" in text and "PTBTokenizer tokenized 12" in text
    assert "a warning that matters" in terminal.getvalue()  # warnings stay visible
    assert ("Creating initial" in terminal.getvalue()) is verbose
    # the session gives logging back: after it, nothing reaches its file, the terminal shows INFO again
    logger.info("after the sweep")
    assert "after the sweep" not in session.path.read_text()
    assert "after the sweep" in terminal.getvalue()
    assert not any(f for h in logging.getLogger(LIBRARY_LOGGERS[0]).handlers for f in h.filters)


def test_the_tokenizer_stderr_is_logged_not_printed(capfd, caplog):
    from sweep.quality.scoring import tokenize

    with caplog.at_level(logging.INFO, logger="sweep.quality.scoring"):
        out = tokenize({"a": ["A dog, on a red couch!"], "b": ["", "two cats."]})
    assert out == {"a": ["a dog on a red couch"], "b": ["", "two cats"]}
    captured = capfd.readouterr()
    assert "PTBTokenizer" not in captured.err + captured.out
    assert any("PTBTokenizer tokenized" in r.getMessage() for r in caplog.records)


# --- item 2 and 5: error rows in the progress line, an ETA with a basis ----------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_counts_error_rows_and_shows_an_eta_only_after_a_computed_cell():
    clock, stream = Clock(), io.StringIO()
    progress = SweepProgress(4, 10, stream=stream, clock=clock)
    progress.cell_reused("stored", n_errors=0)
    clock.now = 20.0  # Ray's start and the first loads: no sample yet
    progress.cell_started("a")
    assert "ETA after the first cell" in progress.status_line()
    clock.now = 22.0
    progress.cell_samples("a", 5)
    assert "ETA after the first cell" in progress.status_line()  # a cell's first batch is no basis
    clock.now = 24.0
    progress.cell_finished("a", ok=True, n_errors=3)
    # 10 computed samples in the 2 s since the first one came: 5 img/s; 20 samples left: 4 s
    line = progress.status_line()
    assert "ETA 0m04s" in line, line
    assert "| 3 error rows in 1 cell |" in line
    progress.cell_finished("b", ok=True, n_errors=1)
    assert "4 error rows in 2 cells" in progress.final_line()
    assert "error" not in SweepProgress(1, 1, stream=io.StringIO()).status_line()


class NotingScorer:
    """Scores every image 0 and, like CaptionScorer, notes the empty predictions of this call in
    `call_notes` (about these predictions) beside a sweep-wide note in `notes`."""

    def score_images(self, predictions, references, document_frequencies=None):
        from types import SimpleNamespace

        from sweep.quality.scoring import PER_IMAGE_COLUMNS

        empty = sum(1 for c in predictions.values() if not c.strip(" ."))
        self.call_notes = [f"{empty} of {len(predictions)} predictions empty after tokenization (scored 0)"]
        self.notes = ["SPICE skipped: no jars", *self.call_notes]
        per_image = pd.DataFrame({c: 0.0 for c in PER_IMAGE_COLUMNS}, index=list(predictions))
        return SimpleNamespace(per_image=per_image, corpus={"cider": 0.0})


def test_the_empty_predictions_note_names_its_cell(tmp_path):
    from sweep.data.sources import Sample
    from sweep.results.recorder import SweepRecorder
    from sweep.results.store import ResultStore

    cells = _cells(tmp_path)
    samples = [Sample(f"s{i}", i, "x.png", (f"a red circle number {i}",), "") for i in range(2)]
    table = pd.DataFrame({"sample_id": ["s0", "s1"], "caption": ["a red circle", "..."], "error": ""})
    rec = SweepRecorder(cells, samples, ResultStore(tmp_path), NotingScorer(), None,
                        document_frequencies="scored_subset")
    rec.score(table, "small/fp32/t8")
    rec.score(table, "small/fp32/t4")
    assert "small/fp32/t8: 1 of 2 predictions empty after tokenization (scored 0)" in rec.notes
    assert "small/fp32/t4: 1 of 2 predictions empty after tokenization (scored 0)" in rec.notes
    assert rec.notes.count("SPICE skipped: no jars") == 1  # a sweep-wide note stays one note


# --- item 4: no contention on CPU cores, and how many cells ran beside each ------------------------------

def _cells(tmp_path: Path, **resources):
    grid = parse_grid({"name": "g", "dataset": {"captions": str(SHAPES / "captions.json"),
                                                "images": str(SHAPES / "images")},
                       "models": [{"id": str(REPO / "zoo" / "shapes-llava-small")}],
                       "precisions": ["fp32"], "max_new_tokens": [8], "resources": resources,
                       "output_dir": str(tmp_path)})
    return expand_cells(grid, "fp")


def test_without_cuda_one_cell_runs_at_a_time_unless_the_grid_asks_for_more(tmp_path):
    gpus, why = cpu_logical_gpus(None, _cells(tmp_path))
    assert gpus == 1 and "one cell at a time" in why
    assert cpu_logical_gpus(None, _cells(tmp_path, replicas=3))[0] == 3  # what one cell needs
    gpus, why = cpu_logical_gpus(2, _cells(tmp_path))
    assert gpus == 2 and "up to 2 cells at once" in why and "cells_beside" in why
    assert "one cell at a time" in cpu_logical_gpus(3, _cells(tmp_path, replicas=2))[1]


def test_cells_beside_counts_overlapping_generations_not_the_cells_one_generation_serves():
    spans = {"a": (0.0, 10.0), "a4": (0.0, 10.0), "b": (5.0, 12.0), "c": (12.0, 20.0), "failed": None}
    beside = cells_beside(spans, {"a4": "a"})
    assert beside["a"] == beside["a4"] == 1.0  # b; a4 is a's own generation
    assert beside["b"] == 1.0  # a (a4 is the same run)
    assert beside["c"] == 0.0  # starts as b ends: not beside it
    assert math.isnan(beside["failed"])


# --- the CLI as a user runs it ------------------------------------------------------------------------------

@pytest.mark.slow  # one cell on an embedded Ray through `python -m sweep.run` (~30 s on 2 cores)
def test_the_cli_prints_only_the_sweeps_own_lines(tmp_path):
    out = tmp_path / "out"
    grid = {"name": "quiet", "dataset": {"captions": str(SHAPES / "captions.json"),
                                         "images": str(SHAPES / "images"), "image_max_side": 64, "limit": 6},
            "models": [{"id": str(REPO / "zoo" / "shapes-llava-small"), "family": "llava"}],
            "precisions": ["fp32"], "max_new_tokens": [4], "output_dir": str(out),
            "energy": {"country_iso_code": "USA"}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    # a user's first run: an empty cache, so MLflow migrates its template store (sweep.publish.sqlite_store)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)),
           "VLM_SWEEP_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "sweep.run", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 0, shown
    for chatter in CHATTER:
        assert chatter not in shown, f"{chatter!r} on the terminal:\n{shown}"
    log_text = (out / "sweep.log").read_text()
    for chatter in CHATTER:
        assert chatter in log_text, f"{chatter!r} not in sweep.log:\n{log_text}"
    assert f"log:       {out / 'sweep.log'}" in proc.stdout
    if "no CUDA device" in proc.stdout:
        assert "1 logical GPU (no CUDA device: models run on CPU, one cell at a time" in proc.stdout
    results = pd.read_csv(out / "results.csv")
    assert results["cells_beside"].tolist() == [0.0]


# --- item 5: per-image tables a user can check; `weights` one meaning everywhere -------------------------

def test_caption_rows_carry_references_and_prompt_hash_and_cell_json_says_the_loaded_weights(tmp_path):
    import json

    from actors.contract import CellStart, LoadReport
    from sweep.data.sources import Sample
    from sweep.results.recorder import SweepRecorder
    from sweep.results.store import ResultStore, prompt_sha256

    cell = _cells(tmp_path)[0]
    samples = [Sample(f"s{i}", i, "x.png", (f"a red circle number {i}", "a circle"), "") for i in range(2)]
    store = ResultStore(tmp_path / "out")
    store.begin_cell(cell)
    assert store.read_cell(cell.cell_id)["weights"] == ""  # nothing loaded yet
    rendered = f"USER: <image>\n{cell.prompt} ASSISTANT:"
    report = LoadReport("hf", "test", "llava", "cpu", 0.1, 10, weights="toy")
    store.record_loads(cell.cell_id, [CellStart("a1", "n1", report, {"max_new_tokens": 8}, 0, rendered)])
    table = pd.DataFrame({"sample_id": ["s0", "s1"], "caption": ["a red circle", "a circle"], "error": "",
                          "generated_tokens": [3, 2], "batch_end_ts": 100.0})
    store.finish_cell(cell.cell_id, table, {"latency_p50_s": 0.1, "n_errors": 0.0})
    rec = SweepRecorder([cell], samples, store, NotingScorer(), None, document_frequencies="scored_subset")
    outcome = rec.record(cell.cell_id, {"latency_p50_s": 0.1})
    stored = store.read_captions(cell.cell_id)
    assert [list(r) for r in stored["references"]] == [list(s.references) for s in samples]
    record = json.loads(store.config_path(cell.cell_id).read_text())
    assert record["rendered_prompt"] == rendered
    assert set(stored["prompt_sha256"]) == {record["prompt_sha256"]} == {prompt_sha256(rendered)}
    assert stored["generated_tokens"].tolist() == [3, 2]
    # one meaning of `weights`: cell.json, the results row (results.csv) and the MLflow param agree
    assert record["weights"] == outcome.row()["weights"] == outcome.params["weights"] == "toy"
    assert record["model"]["weights_requested"] == outcome.params["weights_requested"] == "real"
    # read back from the store: the scores are kept (no rescoring), the columns stay
    rec2 = SweepRecorder([cell], samples, store, NotingScorer(), None, document_frequencies="scored_subset")
    rec2.scorer.score_images = None  # a second scoring would fail: the stored scores are read back
    rec2.record(cell.cell_id, {"latency_p50_s": 0.1}, from_store=True)
    assert "references" in store.read_captions(cell.cell_id)


# --- item 3: what a re-run of the same results does not do again -----------------------------------------

def test_publishing_the_same_results_again_keeps_the_plots_and_does_not_relog_extras(tmp_path, capsys):
    from test_engine import FakeTracker, _grid, _scored

    from sweep.engine import Execution, plan_sweep, publish_results
    from sweep.execute.phases import PhaseTimer
    from sweep.results.recorder import CellOutcome

    grid, samples, cells = _grid(tmp_path)
    plan = plan_sweep(grid, cells, samples)
    outcomes = {}
    for k, cell in enumerate(cells):
        table = _scored(samples, [f"a circle {i}" for i in range(len(samples))], [0.5 + k] * len(samples))
        plan.store.begin_cell(cell)
        plan.store.finish_cell(cell.cell_id, table, {})
        outcomes[cell.cell_id] = CellOutcome(cell, "ok", {"cider": 0.5 + k, "latency_p50_s": 0.1},
                                             {"weights": "toy"}, run_id=f"run-{k}")
    first = FakeTracker()
    first.uri = "sqlite:///x.db"
    publish_results(plan, Execution(outcomes, [], first, first.uri), PhaseTimer())
    plot = tmp_path / "pareto_cider_vs_latency.png"
    drawn = plot.stat().st_mtime_ns
    again = FakeTracker()
    again.uri = first.uri
    for outcome in outcomes.values():
        outcome.reused = True  # read back from the store: not shown in the plots or the report
    publish_results(plan, Execution(outcomes, [], again, again.uri), PhaseTimer())
    assert set(first.extra) == {"run-0", "run-1"} and again.extra == {}
    assert plot.stat().st_mtime_ns == drawn  # kept, not drawn again
    outcomes[cells[0].cell_id].metrics["cider"] = 3.0  # other results: drawn and logged again
    publish_results(plan, Execution(outcomes, [], again, again.uri), PhaseTimer())
    assert plot.stat().st_mtime_ns != drawn and set(again.extra) == {"run-0", "run-1"}
