"""One bad input fails no more than itself (issue 19, items 4, 5, 7 and 12): a decompression bomb and an
image the processor rejects are error rows, an invalid config.json is that model's cells not running (the
file named), and bad grids or datasets are refused up front (exit 2) naming the field."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import grid_dict
from PIL import Image
from test_token_budgets import IMAGES, PlainCaptioner, plain_host, run, sample_batch

from actors.contract import CaptionResult, SampleBatch
from actors.generation import BudgetCut, Generation
from sweep.data.sources import DatasetError, load_coco_samples
from sweep.grid.config import GridError, load_grid, parse_grid

ROOT = Path(__file__).resolve().parents[1]


def write_grid(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- item 4: decompression bomb -------------------------------------------------------------------------


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels and holds none: what PIL reads before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def decode_rows(tmp_path: Path, decode) -> list[dict]:
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), "red").save(good)
    bomb = png_header(tmp_path / "bomb.png", 20000, 20000)
    return [decode({"sample_id": sid, "path": str(path), "error": ""})
            for sid, path in (("a", good), ("bomb", bomb), ("b", good))]


def test_a_decompression_bomb_is_an_error_row_naming_the_limit(tmp_path):
    from sweep.execute.stages import DecodeImage

    rows = decode_rows(tmp_path, DecodeImage(64))
    assert [r["error"] for r in rows[::2]] == ["", ""] and rows[0]["image"].shape == (30, 40, 3)
    assert "20000x20000" in rows[1]["error"] and "dataset.max_image_pixels = 89478485" in rows[1]["error"]
    assert rows[1]["image"].shape == (1, 1, 3)


def test_the_pixel_limit_is_a_grid_field_passed_to_the_decode_stage(tmp_path, coco_mini):
    from sweep.execute.pipeline import PipelineSettings
    from sweep.execute.stages import DecodeImage

    rows = decode_rows(tmp_path, DecodeImage(64, max_pixels=1000))  # 40x30 = 1200 pixels: over it too
    assert all("dataset.max_image_pixels = 1000" in r["error"] for r in rows)
    assert DecodeImage(64, max_pixels=None)({"sample_id": "a", "path": str(tmp_path / "good.png"),
                                             "error": ""})["error"] == ""
    data = grid_dict(coco_mini, tmp_path / "out")
    assert PipelineSettings.from_grid(parse_grid(data)).max_image_pixels == 89_478_485
    data["dataset"]["max_image_pixels"] = 1000
    assert PipelineSettings.from_grid(parse_grid(data)).max_image_pixels == 1000
    data["dataset"]["max_image_pixels"] = 0
    with pytest.raises(GridError, match="dataset.max_image_pixels"):
        parse_grid(data)


# --- item 5: an image the processor rejects -------------------------------------------------------------


def with_pixels(batch: SampleBatch, i: int, pixels: np.ndarray) -> SampleBatch:
    images = list(batch.pixels)
    images[i] = pixels
    return SampleBatch(batch.sample_ids, batch.errors, [p.shape[1] for p in images],
                       [p.shape[0] for p in images], pixels=images)


def test_an_image_qwen2_vl_rejects_is_one_error_row_and_its_batch_is_captioned():
    from test_token_budgets import host_for

    host = host_for("tiny:qwen2_vl", "fp32")
    batch = with_pixels(sample_batch(4, sizes=[(64, 64)]), 1, np.zeros((10, 4000, 3), dtype=np.uint8))
    result = run(host, batch, 4, (2,))
    errors = [s.error for s in result.samples]
    assert errors[1].startswith("ValueError: absolute aspect ratio must be smaller than 200")
    assert errors[0] == errors[2] == errors[3] == "" and result.captioned == 3
    assert all(result.samples[i].generated_tokens > 0 for i in (0, 2, 3))
    assert result.samples[1].caption == "" and result.samples[1].generated_tokens == 0
    cut = result.budgets[2]
    assert cut.captions[1] == "" and cut.generated_tokens[1] == 0
    assert all(cut.generated_tokens[i] > 0 for i in (0, 2, 3))


class Rejecting(PlainCaptioner):
    """Raises ValueError on any call that holds the sample `bad`, as a processor does on its input."""

    def __init__(self, bad: str, **kwargs):
        super().__init__(**kwargs)
        self.bad = bad

    def generate(self, requests, generate_kwargs):
        if any(r.sample_id == self.bad for r in requests):
            self.calls.append((len(requests), generate_kwargs["max_new_tokens"]))
            raise ValueError(f"cannot take {self.bad}")
        return super().generate(requests, generate_kwargs)


class SharingRejecter(Rejecting):
    """The same, cutting its budgets from the generation at max_new_tokens (as HF does)."""

    def can_share_budgets(self, generate_kwargs, budgets):
        return True

    def generate_budgets(self, requests, generate_kwargs, budgets):
        results = self.generate(requests, generate_kwargs)
        cuts = {t: BudgetCut([CaptionResult(" ".join([r.sample_id] * t), t) for r in requests], 0.01,
                             "decode_step_times") for t in budgets}
        return Generation(results, 0.02, cuts)


@pytest.mark.parametrize("captioner_class", [Rejecting, SharingRejecter])
def test_a_rejected_request_is_retried_image_by_image_and_every_budget_is_answered(captioner_class):
    batch = sample_batch(5, error_at=0)  # row 0 failed to decode; row 2 is rejected by the "processor"
    bad = batch.sample_ids[2]
    captioner = captioner_class(bad)
    result = run(plain_host(captioner), batch, 8, (2, 4))
    rejected = f"ValueError: cannot take {bad}"
    assert [s.error for s in result.samples] == ["cannot decode", "", rejected, "", ""]
    good = {1, 3, 4}
    assert [s.caption for s in result.samples] == [
        " ".join([sid] * 8) if i in good else "" for i, sid in enumerate(batch.sample_ids)]
    assert result.captioned == 3 and result.samples[2].processing_time_sec == 0.0
    assert captioner.calls[:5] == [(4, 8), (1, 8), (1, 8), (1, 8), (1, 8)]  # the batch, then one by one
    measured = "own_generation" if captioner_class is Rejecting else "decode_step_times"
    for t in (2, 4):
        answer = result.budgets[t]
        assert answer.measured == measured
        assert answer.captions == [" ".join([sid] * t) if i in good else ""
                                   for i, sid in enumerate(batch.sample_ids)]
        assert answer.generated_tokens == [t if i in good else 0 for i in range(5)]


def test_a_batch_whose_every_image_is_rejected_is_all_error_rows():
    batch = sample_batch(1)
    result = run(plain_host(Rejecting(batch.sample_ids[0])), batch, 8, (4,))
    assert result.samples[0].error == f"ValueError: cannot take {batch.sample_ids[0]}"
    assert result.captioned == 0 and result.budgets[4].captions == [""]


def test_out_of_memory_is_not_taken_for_a_bad_input():
    from actors.generation_retry import CellOutOfMemory

    with pytest.raises(CellOutOfMemory, match="oom"):
        run(plain_host(Rejecting("none", fits=1)), sample_batch(4), 8, (4,))


# --- item 7: an invalid config.json ---------------------------------------------------------------------

BAD_JSON = '{"model_type": "llava", "architectures": ["LlavaForConditional"], "texts": {,}}'  # column 77
LLAVA_SMALL = {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}


def model_dir(root: Path, name: str, text: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(text)
    return folder


def test_an_invalid_config_json_raises_a_model_config_error_naming_the_file(tmp_path):
    from actors.backends import resolve_family
    from actors.resolve import ModelConfigError, local_config_json, read_config_json

    bad = model_dir(tmp_path, "bad", BAD_JSON)
    for read in (lambda: read_config_json(str(bad)), lambda: local_config_json(str(bad)),
                 lambda: resolve_family(str(bad), None, None)):
        with pytest.raises(ModelConfigError) as info:
            read()
        assert str(info.value).startswith(f"{bad / 'config.json'}: invalid JSON at line 1 column 77")
        assert isinstance(info.value, ValueError)
    (bad / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelConfigError, match="not an object"):
        read_config_json(str(bad))
    assert local_config_json(str(tmp_path / "absent")) is None  # absent is still "unknown here"


def test_plan_and_memory_check_keep_the_other_models_of_a_bad_config_json(tmp_path, coco_mini):
    from sweep.grid.cells import expand_cells
    from sweep.plan.dry_run import memory_refusals, plan_cells
    from sweep.results.store import ResultStore

    bad = model_dir(tmp_path, "bad", BAD_JSON)
    good = model_dir(tmp_path, "good", json.dumps(LLAVA_SMALL))
    grid = parse_grid(grid_dict(coco_mini, tmp_path / "out", models=[{"id": str(bad)}, {"id": str(good)}]))
    cells = expand_cells(grid, "fp")
    assert memory_refusals(cells, 16 * 10**9, 448) == {}
    plans = plan_cells(cells, ResultStore(tmp_path / "out"), set(), 16 * 10**9, 448)
    assert plans[0].problems == [f"{bad / 'config.json'}: invalid JSON at line 1 column 77 "
                                 "(Expecting property name enclosed in double quotes)"]
    assert plans[1].runnable and plans[1].family == "llava"


def test_dry_run_names_a_bad_config_json_plans_the_others_and_imports_no_loader(tmp_path, coco_mini):
    bad = model_dir(tmp_path, "models/bad", BAD_JSON)
    good = model_dir(tmp_path, "models/good", json.dumps(LLAVA_SMALL))
    marker = tmp_path / "imported"
    (tmp_path / "bomb_loader.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "def build(model_id, precision):\n    raise RuntimeError('never here')\n")
    data = grid_dict(coco_mini, tmp_path / "out",
                     models=[{"id": "tiny:llava"}, {"id": str(bad)}, {"id": str(good)},
                             {"id": "mine", "loader": "bomb_loader:build"}])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "sweep.run", str(write_grid(tmp_path, data)), "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    out = proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"CANNOT RUN: {bad / 'config.json'}: invalid JSON at line 1 column 77" in out
    assert "4 cells, 3 runnable, 1 cannot run" in out and "family=custom" in out
    assert "Traceback" not in proc.stderr
    assert not marker.exists()  # the plan never imports a user's loader


# --- item 12: clear errors, exit 2, naming the field ----------------------------------------------------


def coco_grid(tmp_path: Path, coco: dict | bytes) -> Path:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.open(IMAGES[0]).save(images / "a.png")
    captions = tmp_path / "captions.json"
    captions.write_bytes(coco if isinstance(coco, bytes) else json.dumps(coco).encode())
    data = {"name": "bad", "dataset": {"captions": str(captions), "images": str(images)},
            "models": [{"id": "tiny:llava"}], "output_dir": str(tmp_path / "out")}
    return write_grid(tmp_path, data)


GOOD_COCO = {"images": [{"id": 1, "file_name": "a.png"}],
             "annotations": [{"image_id": 1, "caption": "a shape"}, {"image_id": 1, "caption": "red"}]}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["annotations"][1].pop("image_id"), "annotations[1] has no 'image_id'"),
    (lambda c: c["annotations"][1].update(image_id="one"), "annotations[1].image_id must be an integer"),
    (lambda c: c["annotations"][1].update(image_id=True), "annotations[1].image_id must be an integer"),
    (lambda c: c["images"][0].pop("file_name"), "images[0] (id 1) has no 'file_name'"),
    (lambda c: c["images"][0].update(id=1.5), "images[0].id must be an integer"),
    (lambda c: c["annotations"][1].update(caption=None), "annotations[1].caption must be a string, got null"),
])
def test_a_bad_coco_entry_exits_2_naming_it(tmp_path, capsys, change, message):
    from sweep.run import main

    coco = json.loads(json.dumps(GOOD_COCO))
    change(coco)
    assert main([str(coco_grid(tmp_path, coco)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "dataset.captions" in err and "captions.json" in err


def test_a_coco_json_that_is_not_utf8_exits_2(tmp_path, capsys):
    from sweep.run import main

    text = json.dumps(GOOD_COCO).replace("a shape", "caf\u00e9")
    assert main([str(coco_grid(tmp_path, text.encode("latin-1"))), "--dry-run"]) == 2
    assert "is not UTF-8" in capsys.readouterr().err


def test_string_digit_ids_still_read(tmp_path):
    coco = {"images": [{"id": "1", "file_name": "a.png"}], "annotations": [{"image_id": "1", "caption": "x"}]}
    grid = load_grid(coco_grid(tmp_path, coco))
    assert [(s.sample_id, s.references) for s in load_coco_samples(grid.dataset)] == [("1", ("x",))]
    with pytest.raises(DatasetError):
        load_coco_samples(load_grid(coco_grid(tmp_path, {**coco, "images": [{"id": []}]})).dataset)


def test_a_bad_yaml_value_in_set_exits_2_naming_the_key(tmp_path, capsys):
    from sweep.run import main

    grid = coco_grid(tmp_path, GOOD_COCO)
    assert main([str(grid), "--set", "max_new_tokens=[8, 16", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--set" in err and "max_new_tokens: value '[8, 16' is not valid YAML" in err


def grid_problems(tmp_path: Path, **changes) -> list[tuple[str, str]]:
    data = yaml.safe_load(coco_grid(tmp_path, GOOD_COCO).read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    with pytest.raises(GridError) as info:
        parse_grid(data)
    return info.value.problems


def test_booleans_are_not_token_counts(tmp_path):
    assert grid_problems(tmp_path, max_new_tokens=[True])[0][0] == "max_new_tokens.0"
    assert grid_problems(tmp_path, resources__batch_size=True)[0][0] == "resources.batch_size"
    assert grid_problems(tmp_path, generation__num_beams=[True])[0][0] == "generation.num_beams.0"


def test_an_unknown_country_code_is_refused(tmp_path):
    from sweep.grid.config import codecarbon_countries

    ((path, message),) = grid_problems(tmp_path, energy__country_iso_code="XYZ")
    assert path == "energy.country_iso_code" and "unknown country 'XYZ'" in message
    assert {"USA", "FRA", "DEU"} <= codecarbon_countries()


@pytest.mark.parametrize("model_id", ["/no/such/model", "./no-such-model", "../no-such", "~/no-such-model",
                                      "models/org/name"])
def test_a_local_model_path_that_does_not_exist_is_not_taken_for_a_hub_id(tmp_path, model_id):
    ((path, message),) = grid_problems(tmp_path, models=[{"id": model_id}])
    assert path == "models.0" and f"id '{model_id}' is not a folder, and not a hub id" in message


def test_hub_ids_folders_and_loaders_are_still_models(tmp_path):
    data = yaml.safe_load(coco_grid(tmp_path, GOOD_COCO).read_text())
    data["models"] = [{"id": "org/name"}, {"id": str(tmp_path)}, {"id": "a/b/c", "loader": "m:f"},
                      {"id": "tiny:llava"}]
    assert len(parse_grid(data).models) == 4


# --- end to end: each bad input fails only itself --------------------------------------------------------


@pytest.mark.slow  # a sweep on Ray
@pytest.mark.shared_ray
def test_a_sweep_keeps_every_good_image_and_model_around_the_bad_ones(coco_mini, tmp_path):
    from sweep.data.sources import dataset_fingerprint
    from sweep.engine import run_sweep
    from sweep.grid.cells import expand_cells
    from sweep.results.store import ResultStore

    images = tmp_path / "images"
    images.mkdir()
    coco = json.loads((coco_mini / "captions_val2017.json").read_text())
    kept = coco["images"][:2]
    for img in kept:
        Image.open(coco_mini / "val2017" / img["file_name"]).save(images / img["file_name"])
    png_header(images / "bomb.png", 20000, 20000)
    Image.new("RGB", (4000, 10), "blue").save(images / "strip.png")
    kept += [{"id": 1, "file_name": "bomb.png"}, {"id": 2, "file_name": "strip.png"}]
    ids = {img["id"] for img in kept}
    annotations = [a for a in coco["annotations"] if a["image_id"] in ids]
    annotations += [{"image_id": 1, "caption": "a bomb"}, {"image_id": 2, "caption": "a blue strip"}]
    (tmp_path / "captions.json").write_text(json.dumps({"images": kept, "annotations": annotations}))
    bad = model_dir(tmp_path, "models/bad", BAD_JSON)
    data = grid_dict(coco_mini, tmp_path / "out", models=[{"id": "tiny:qwen2_vl"}, {"id": str(bad)}])
    data["dataset"] = {"captions": str(tmp_path / "captions.json"), "images": str(images),
                       "image_max_side": 448}
    data["resources"] = {"local_gpus": 2, "batch_size": 4}
    data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
    grid = parse_grid(data)
    samples = load_coco_samples(grid.dataset)
    cells = expand_cells(grid, dataset_fingerprint(samples, grid.dataset.image_max_side))
    info = run_sweep(grid, cells, samples)
    assert info.exit_code == 1
    results = info.results.set_index("model")
    assert results.loc["bad", "status"] == "failed"
    assert f"{bad / 'config.json'}: invalid JSON at line 1 column 77" in results.loc["bad", "reason"]
    assert results.loc["qwen2_vl", "status"] == "ok" and results.loc["qwen2_vl", "n_errors"] == 2
    table = ResultStore(tmp_path / "out").read_captions(cells[0].cell_id).set_index("image_id")
    assert "dataset.max_image_pixels" in table.loc[1, "error"]
    assert table.loc[2, "error"].startswith("ValueError: absolute aspect ratio must be smaller than 200")
    assert (table.drop(index=[1, 2])["error"] == "").all()
