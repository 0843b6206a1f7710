"""Nothing lost: finished cells are read back, half-finished ones continue, faults stay in their cell."""

import pytest
import torch
from conftest import grid_dict

from actors.captioner import Captioner
from actors.contract import CaptionRequest, CaptionResult
from actors.generation_retry import CellOutOfMemory, generate_with_oom_retry
from sweep.data.sources import dataset_fingerprint, load_coco_samples
from sweep.engine import run_sweep
from sweep.execute.trials import root_cause
from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid

# the module's sweep (llava_and_broken, a module fixture) and the tests' run on the shared Ray: the module is
# marked, so the Ray is up before the module's fixtures (tests/conftest.py)
pytestmark = pytest.mark.shared_ray


def _sweep(coco, out, models, **kw):
    grid = parse_grid(grid_dict(
        coco, out, models=models, max_new_tokens=[3],
        dataset={"captions": str(coco / "captions_val2017.json"), "images": str(coco / "val2017"),
                 "limit": 12, "image_max_side": 96},
        resources={"local_gpus": 2, "batch_size": 4},
        energy={"enabled": False},  # codecarbon adds seconds per actor; not what these tests are about
    ))
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples, **kw)
    code = info.exit_code
    return code, info, cells


def _children(info):
    t = info.tracker
    return t.client.search_runs([t.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{t.parent_id}'")


@pytest.fixture(scope="module")
def llava_and_broken(coco_mini, tmp_path_factory):
    """One sweep for both tests below: tiny llava beside a model that fails to load (its output dir is then
    the earlier run that --fresh archives)."""
    root = tmp_path_factory.mktemp("resume")
    broken = root / "no-such-model"  # a folder that says llava but holds no processor nor weights
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llava"}')
    out = root / "out"
    code, info, cells = _sweep(coco_mini, out, [{"id": "tiny:llava"}, {"id": str(broken)}])
    return out, code, info, cells


@pytest.mark.slow  # sweeps on Ray
def test_fresh_archives_instead_of_deleting(coco_mini, llava_and_broken):
    out, _, _, earlier = llava_and_broken  # its tiny llava cell is finished there
    code, info, cells = _sweep(coco_mini, out, [{"id": "tiny:llava"}], fresh=True)
    assert cells[0].cell_id == earlier[0].cell_id
    assert code == 0 and not info.results.iloc[0]["reused"]
    archived = list((out / "cells-archive").glob(f"*/{cells[0].cell_id}/captions.parquet"))
    assert len(archived) == 1


@pytest.mark.slow  # a sweep on Ray
def test_a_model_that_fails_to_load_fails_only_its_cell(llava_and_broken):
    _, code, info, _ = llava_and_broken  # (what it reads, --fresh of the other test leaves as it was)
    assert code == 1
    results = info.results.set_index("model")
    assert results.loc["llava", "status"] == "ok"
    assert results.loc["no-such-model", "status"] == "failed"
    assert "no-such-model" in results.loc["no-such-model", "reason"]
    failed = [r for r in _children(info) if r.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["failure_reason"] == "error"


class OomCaptioner(Captioner):
    """Raises CUDA OOM above a batch size, like a model that does not fit the batch."""

    def __init__(self, fits: int):
        self.fits = fits
        self.calls: list[int] = []

    def generate(self, requests, generate_kwargs):
        self.calls.append(len(requests))
        if len(requests) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [CaptionResult(r.sample_id, 1) for r in requests]


def _requests(n):
    return [CaptionRequest(str(i), [], "p") for i in range(n)]


def test_oom_retries_once_at_half_batch_then_fails_with_oom():
    ok = OomCaptioner(fits=4)
    assert [r.caption for r in generate_with_oom_retry(ok, _requests(8), {})] == [str(i) for i in range(8)]
    assert ok.calls == [8, 4, 4]
    too_big = OomCaptioner(fits=1)
    with pytest.raises(CellOutOfMemory) as info:
        generate_with_oom_retry(too_big, _requests(8), {})
    assert str(info.value).startswith("oom")
    text = f"Traceback...\nactors.model_host.CellOutOfMemory: {info.value}"
    assert root_cause(text).startswith("oom: CUDA")
