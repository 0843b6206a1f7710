"""The dataset kinds (coco, hf, karpathy) give the same samples, captions and scores for the same images."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import grid_dict
from sweep_fixtures import fault_dir_fixture  # noqa: F401  (the fault_dir fixture)

from sweep.data.load import load_image_samples, reference_captions_file
from sweep.data.sources import DatasetError, dataset_fingerprint
from sweep.execute.stages import decode_batch
from sweep.grid.config import GridError, parse_grid


def build_hf_parquet(coco: Path, out: Path) -> Path:
    """coco-mini as lmms-lab publishes COCO-Caption2017: question_id (the file name), image (bytes embedded
    in the parquet), answer (the references), id; one image without captions, as in real exports."""
    import datasets

    data = json.loads((coco / "captions_val2017.json").read_text())
    refs: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    rows = {"question_id": [], "image": [], "answer": [], "id": []}
    for img in data["images"]:
        rows["question_id"].append(img["file_name"])
        rows["image"].append({"bytes": (coco / "val2017" / img["file_name"]).read_bytes(),
                              "path": img["file_name"]})
        rows["answer"].append(refs.get(img["id"], []))
        rows["id"].append(img["id"])
    features = datasets.Features({"question_id": datasets.Value("string"), "image": datasets.Image(),
                                  "answer": datasets.List(datasets.Value("string")),
                                  "id": datasets.Value("int64")})
    path = out / "coco_caption_test.parquet"
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


def build_karpathy(coco: Path, out: Path) -> Path:
    """coco-mini as a Karpathy split file: every image in 'test', and two more entries in 'train'."""
    data = json.loads((coco / "captions_val2017.json").read_text())
    refs: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        refs.setdefault(ann["image_id"], []).append(ann["caption"])
    images = [{"filepath": "val2017", "filename": img["file_name"], "imgid": k, "cocoid": img["id"],
               "split": "test",
               "sentences": [{"raw": c, "tokens": c.lower().split()} for c in refs.get(img["id"], [])]}
              for k, img in enumerate(data["images"])]
    images += [{**entry, "imgid": 1000 + k, "cocoid": 1000 + k, "split": "train"}
               for k, entry in enumerate(images[:2])]
    path = out / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


@pytest.fixture(scope="module")
def sources(coco_mini, tmp_path_factory) -> dict[str, dict]:
    """The `dataset` section of a grid for each kind, all over coco-mini's images."""
    out = tmp_path_factory.mktemp("sources")
    parquet = build_hf_parquet(coco_mini, out)
    karpathy = build_karpathy(coco_mini, out)
    return {
        "coco": {"captions": str(coco_mini / "captions_val2017.json"), "images": str(coco_mini / "val2017")},
        "hf": {"kind": "hf", "path": str(parquet), "split": "test", "cache_dir": str(out / "hf-cache")},
        "karpathy": {"kind": "karpathy", "split_file": str(karpathy), "images": str(coco_mini),
                     "split": "test"},
    }


def _grid(sources: dict, kind: str, out: Path, coco: Path, **dataset):
    data = grid_dict(coco, out)
    data["dataset"] = {**sources[kind], "image_max_side": 128, **dataset}
    return parse_grid(data)


def _decoded(samples) -> list:
    rows = [{"sample_id": s.sample_id, "path": s.path, "error": "", "arrow_row": s.arrow_row,
             "arrow_column": s.arrow_column} for s in samples]
    return decode_batch(rows, False, 128).pixels


def test_three_kinds_give_the_same_samples_and_pixels(sources, coco_mini, tmp_path):
    kinds = {k: load_image_samples(_grid(sources, k, tmp_path, coco_mini).dataset) for k in sources}
    coco, hf, karpathy = kinds["coco"], kinds["hf"], kinds["karpathy"]
    assert len(coco) == 79  # every coco-mini image with captions; karpathy's train entries are not in test
    for other in (hf, karpathy):
        assert [(s.sample_id, s.image_id, s.references, s.content_sha1) for s in other] == \
            [(s.sample_id, s.image_id, s.references, s.content_sha1) for s in coco]
    assert all(s.arrow_column == "image" and s.path.endswith(".arrow") for s in hf)  # no image on the driver
    fingerprints = {dataset_fingerprint(samples, 128) for samples in (coco, hf, karpathy)}
    assert len(fingerprints) == 1
    pixels = [_decoded(samples[:4]) for samples in (coco, hf, karpathy)]
    for other in pixels[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(pixels[0], other, strict=True))


def test_hf_reads_a_parquet_folder_and_a_save_to_disk_folder_alike(sources, coco_mini, tmp_path):
    import datasets

    parquet = Path(sources["hf"]["path"])
    folder = tmp_path / "parquet-folder" / "data"
    folder.mkdir(parents=True)
    (folder / "test-00000-of-00001.parquet").write_bytes(parquet.read_bytes())
    saved = tmp_path / "saved"
    split = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(tmp_path / "c"))
    datasets.DatasetDict({"test": split}).save_to_disk(str(saved))
    expected = [(s.sample_id, s.references, s.content_sha1) for s in
                load_image_samples(_grid(sources, "hf", tmp_path, coco_mini, limit=6).dataset)]
    for path in (folder.parent, saved):
        grid = _grid(sources, "hf", tmp_path, coco_mini, limit=6, path=str(path))
        samples = load_image_samples(grid.dataset)
        assert [(s.sample_id, s.references, s.content_sha1) for s in samples] == expected, path
    with pytest.raises(DatasetError, match=r"dataset.split: .*saved has no split 'val' \(its splits: test\)"):
        load_image_samples(_grid(sources, "hf", tmp_path, coco_mini, path=str(saved), split="val").dataset)


def test_a_limit_chooses_the_same_subset_in_every_kind(sources, coco_mini, tmp_path):
    for subset in ("random", "first"):
        chosen = {k: [s.sample_id for s in load_image_samples(
            _grid(sources, k, tmp_path, coco_mini, limit=7, seed=3, subset=subset).dataset)]
            for k in sources}
        assert chosen["coco"] == chosen["hf"] == chosen["karpathy"] and len(chosen["coco"]) == 7


def test_reference_file_holds_every_reference_of_the_split(sources, coco_mini, tmp_path):
    grid = _grid(sources, "hf", tmp_path, coco_mini, limit=5)
    path = reference_captions_file(grid.dataset, tmp_path / "out")
    data = json.loads(path.read_text())
    coco = json.loads((coco_mini / "captions_val2017.json").read_text())
    assert len(data["annotations"]) == len(coco["annotations"])
    assert reference_captions_file(grid.dataset, tmp_path / "out") == path  # content-named: written once


def test_a_missing_column_lists_the_columns(sources, coco_mini, tmp_path):
    grid = _grid(sources, "hf", tmp_path, coco_mini, references_column="captions")
    with pytest.raises(DatasetError) as err:
        load_image_samples(grid.dataset)
    text = str(err.value)
    assert "dataset.references_column" in text and "'captions'" in text
    assert "question_id, image, answer, id" in text and sources["hf"]["path"] in text


def test_an_image_column_that_is_no_image_is_named(sources, coco_mini, tmp_path):
    grid = _grid(sources, "hf", tmp_path, coco_mini, image_column="question_id")
    with pytest.raises(DatasetError, match="dataset.image_column: column 'question_id' .* not an Image"):
        load_image_samples(grid.dataset)


def test_a_hub_id_is_read_from_the_hub_cache_offline(sources, coco_mini, tmp_path, monkeypatch):
    """As `hf download --repo-type dataset testorg/coco-mini` leaves it: the parquet files under
    datasets--testorg--coco-mini/snapshots/<commit>/, refs/main naming the commit."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--testorg--coco-mini"
    data = repo / "snapshots" / commit / "data"
    data.mkdir(parents=True)
    (data / "test-00000-of-00001.parquet").write_bytes(Path(sources["hf"]["path"]).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    grid = _grid(sources, "hf", tmp_path, coco_mini, path="testorg/coco-mini", limit=5)
    expected = load_image_samples(_grid(sources, "hf", tmp_path, coco_mini, limit=5).dataset)
    assert [s.content_sha1 for s in load_image_samples(grid.dataset)] == [s.content_sha1 for s in expected]


def test_a_hub_id_not_in_the_cache_says_to_download_it(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path)
    data["dataset"] = {"kind": "hf", "path": "nobody/not-a-dataset-here", "cache_dir": str(tmp_path / "c")}
    with pytest.raises(DatasetError, match="dataset.path: 'nobody/not-a-dataset-here'.*offline.*download"):
        load_image_samples(parse_grid(data).dataset)


def test_karpathy_split_without_images_lists_the_splits(sources, coco_mini, tmp_path):
    grid = _grid(sources, "karpathy", tmp_path, coco_mini, split="restval")
    with pytest.raises(DatasetError, match=r"dataset.split: .*dataset_coco.json.*'restval' \(its splits: "
                                           r"test, train\)"):
        load_image_samples(grid.dataset)


def test_karpathy_bad_entry_names_the_field_and_file(sources, coco_mini, tmp_path):
    data = json.loads(Path(sources["karpathy"]["split_file"]).read_text())
    data["images"][5]["sentences"][1] = {"tokens": ["x"]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    grid = _grid({**sources, "karpathy": {**sources["karpathy"], "split_file": str(bad)}}, "karpathy",
                 tmp_path, coco_mini)
    with pytest.raises(DatasetError, match=r"dataset.split_file: .*bad.json: images\[5\].sentences\[1\].raw"):
        load_image_samples(grid.dataset)


def test_grid_errors_name_the_dataset_fields(coco_mini, tmp_path):
    data = grid_dict(coco_mini, tmp_path)
    data["dataset"] = {"kind": "karpathy", "split_file": str(tmp_path / "none.json"),
                       "images": str(coco_mini), "split": "dev"}
    with pytest.raises(GridError) as err:
        parse_grid(data)
    paths = {p for p, _ in err.value.problems}
    assert paths == {"dataset.split_file", "dataset.split"}
    data["dataset"] = {"kind": "hf", "path": "x/y", "image_col": "img"}
    with pytest.raises(GridError) as err:
        parse_grid(data)
    assert err.value.problems == [("dataset.image_col", "unknown field")]


@pytest.mark.slow
@pytest.mark.shared_ray  # three sweeps, one Ray
def test_three_kinds_caption_and_score_the_same(sources, coco_mini, tmp_path, fault_dir):
    """A captioner whose caption is a function of the decoded pixels: the same captions and CIDEr (its
    document frequencies from every reference of each source) whatever the source."""
    from sweep.engine import run_sweep
    from sweep.grid.cells import expand_cells

    tables, cider = {}, {}
    for kind in sources:
        grid = _grid(sources, kind, tmp_path / kind, coco_mini, limit=8)
        data = grid.model_dump(mode="json")
        data["models"] = [{"id": "pixels", "loader": "fault_models:pixels"}]
        data["resources"] = {"local_gpus": 2, "batch_size": 4}  # the shared Ray's (one cell: alone)
        data["max_new_tokens"] = [8]
        data["energy"] = {"enabled": False}  # codecarbon adds seconds per actor; not what this test is about
        grid = parse_grid(data)
        samples = load_image_samples(grid.dataset)
        cells = expand_cells(grid, dataset_fingerprint(samples, 128))
        info = run_sweep(grid, cells, samples)
        assert info.exit_code == 0, kind
        from sweep.results.store import ResultStore

        table = ResultStore(grid.output_dir).read_captions(cells[0].cell_id)
        tables[kind] = table.sort_values("sample_id")[["sample_id", "caption", "cider"]]
        tables[kind] = tables[kind].reset_index(drop=True)
        cider[kind] = float(info.results["cider"].iloc[0])
    assert len(tables["coco"]) == 8 and tables["coco"]["caption"].nunique() > 1
    for kind in ("hf", "karpathy"):
        assert tables[kind][["sample_id", "caption"]].equals(tables["coco"][["sample_id", "caption"]]), kind
        assert np.allclose(tables[kind]["cider"], tables["coco"]["cider"]), kind
        assert cider[kind] == pytest.approx(cider["coco"]), kind
