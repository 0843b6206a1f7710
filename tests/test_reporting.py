"""What users see: dry-run plan, line-based progress, the HTML report, exit codes."""

import io
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sweep_fixtures  # noqa: F401  (the session's fault folder, which the shared Ray's workers know)
import yaml
from conftest import grid_dict

from sweep.execute.progress import SweepProgress
from sweep.publish.report import main as report_main
from sweep.run import main as run_main

# the module's sweep (finished_sweep, a module fixture) runs on the shared Ray: the module is marked, so the
# Ray is up before the module's fixtures (tests/conftest.py)
pytestmark = pytest.mark.shared_ray

ROOT = Path(__file__).resolve().parents[1]


def write_grid(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_dry_run_prints_every_cell_without_ray_or_downloads(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path / "out",
                     models=[{"id": "tiny:llava"}, {"id": "org/some-hub-model", "family": "qwen2_vl"},
                             {"id": "microsoft/Phi-3.5-vision-instruct", "family": "phi3_v"}],
                     precisions=["fp16", "int8-vision"], max_new_tokens=[8, 16])
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "VLM_SWEEP_CACHE": str(tmp_path / "empty-cache")}
    proc = subprocess.run([sys.executable, "-m", "sweep.run", str(write_grid(tmp_path, data)), "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    out = proc.stdout
    assert proc.returncode == 1, proc.stderr  # the remote-code model lacks trust_remote_code
    assert out.count("backend=") == 12 and "12 cells, 8 runnable, 4 cannot run" in out
    assert "vision=int8 language=float" in out and "CANNOT RUN: phi3_v runs remote code" in out
    assert "Ray" not in proc.stderr and not (tmp_path / "out").exists()
    assert not (tmp_path / "empty-cache").exists()  # no tiny model was even built


def test_non_tty_progress_is_plain_lines_ending_with_counts():
    clock = iter(range(0, 1000, 5))
    stream = io.StringIO()
    progress = SweepProgress(3, 10, stream=stream, min_interval_s=0, clock=lambda: next(clock))
    progress.cell_reused("a")
    progress.cell_started("b")
    progress.cell_samples("b", 4)
    progress.cell_finished("b", ok=True)
    progress.cell_started("c")
    progress.cell_finished("c", ok=False)
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert "samples 14/30" in lines[1] and "1 running" in lines[1]
    assert lines[-1].startswith("finished: 2 cells ok, 1 failed of 3; 20 samples")


class TableParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-cell-id" in attrs:
            self.rows.append((attrs["data-cell-id"], attrs.get("class", "")))
        if tag == "img":
            self.images.append(attrs["src"])


@pytest.fixture(scope="module")
def finished_sweep(coco_mini, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    data = grid_dict(coco_mini, tmp / "out",
                     models=[{"id": "short", "loader": "fault_models:counting"},
                             {"id": "too-big", "loader": "fault_models:oom"}],
                     max_new_tokens=[4, 12])
    data["dataset"]["limit"] = 8
    data["resources"] = {"local_gpus": 2, "batch_size": 4}
    code = run_main([str(write_grid(tmp, data))])
    return code, tmp / "out"


@pytest.mark.slow  # finished_sweep: a sweep on Ray
def test_exit_code_1_when_some_cells_fail(finished_sweep):
    assert finished_sweep[0] == 1


@pytest.mark.slow  # finished_sweep: a sweep on Ray
def test_html_report_has_every_cell_front_and_plots(finished_sweep):
    out = finished_sweep[1]
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    for rebuilt in (False, True):
        if rebuilt:
            (out / "report.html").unlink()
            assert report_main([str(out)]) == 0
        parser = TableParser()
        parser.feed((out / "report.html").read_text())
        assert {cid for cid, _ in parser.rows} == set(results["cell_id"])
        classes = dict(parser.rows)
        failed = results[results["status"] == "failed"]["cell_id"]
        assert all(classes[c] == "failed" for c in failed) and len(failed) == 2
        assert any(k == "front" for k in classes.values())
        assert len(parser.images) == 3 and all(s.startswith("data:image/png;base64,") for s in parser.images)
    assert "human references" in (out / "report.html").read_text()
    # a custom loader's batches are timed as the wall of each batch, in results.csv and the report
    assert set(results[results["status"] == "ok"]["latency_kind"]) == {"batch_wall"}
    page = (out / "report.html").read_text()
    assert "<th>latency kind</th>" in page and "batch_wall" in page


def test_report_cli_refuses_a_folder_without_results(tmp_path):
    assert report_main([str(tmp_path)]) == 2


LLAVA_7B = {
    "model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
    "text_config": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
                    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                    "vocab_size": 32064},
    "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
                      "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336,
                      "patch_size": 14},
}


def test_cells_that_do_not_fit_the_gpu_are_refused_with_both_numbers(coco_mini, tmp_path):
    import json

    model = tmp_path / "llava-1.5-7b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAVA_7B))
    data = grid_dict(coco_mini, tmp_path / "out", models=[{"id": str(model)}], precisions=["fp16", "nf4"])
    data["resources"] = {"gpu_memory_gb": 16}
    proc = subprocess.run([sys.executable, "-m", "sweep.run", str(write_grid(tmp_path, data)), "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    refusal = next(line for line in proc.stdout.splitlines() if "CANNOT RUN" in line)
    assert "oom (estimated)" in refusal and "16.0 GB" in refusal and "needs about" in refusal
    assert "2 cells, 1 runnable, 1 cannot run" in proc.stdout
