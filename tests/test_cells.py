from conftest import grid_dict

from sweep.grid.cells import expand_cells
from sweep.grid.config import parse_grid


def test_grid_expands_to_every_combination_with_stable_ids(coco_mini, tmp_path):
    grid = parse_grid(grid_dict(
        coco_mini, tmp_path,
        models=[{"id": "tiny:llava"}, {"id": "tiny:qwen2_vl"}],
        precisions=["fp16", "int8"],
        max_new_tokens=[8, 16, 32],
        prompts=["a", "b"],
    ))
    cells = expand_cells(grid, "fp")
    assert len(cells) == 2 * 2 * 3 * 2
    assert len({c.cell_id for c in cells}) == len(cells)
    again = expand_cells(grid, "fp")
    assert [c.cell_id for c in cells] == [c.cell_id for c in again]


def test_id_follows_caption_relevant_fields_only(coco_mini, tmp_path):
    base = grid_dict(coco_mini, tmp_path)
    cell = expand_cells(parse_grid(base), "fp")[0]
    same = expand_cells(parse_grid({**base, "resources": {"batch_size": 32, "replicas": 2}}), "fp")[0]
    assert same.cell_id == cell.cell_id
    assert expand_cells(parse_grid(base), "other-data")[0].cell_id != cell.cell_id
    for change in ({"max_new_tokens": [5]}, {"prompts": ["other"]}, {"precisions": ["bf16"]},
                   {"models": [{"id": "tiny:llava", "revision": "v2"}]},
                   {"generation": {"num_beams": [3]}}):
        assert expand_cells(parse_grid({**base, **change}), "fp")[0].cell_id != cell.cell_id, change


def test_generate_kwargs_greedy_by_default(coco_mini, tmp_path):
    cell = expand_cells(parse_grid(grid_dict(coco_mini, tmp_path, max_new_tokens=[7])), "fp")[0]
    kwargs = cell.generation().generate_kwargs()
    assert kwargs["max_new_tokens"] == 7 and kwargs["do_sample"] is False
    # beams and min length left to the family's defaults unless the grid sets them
    assert "num_beams" not in kwargs and "min_new_tokens" not in kwargs and "temperature" not in kwargs
    cell = expand_cells(parse_grid(grid_dict(coco_mini, tmp_path, generation={"num_beams": [3]})), "fp")[0]
    assert cell.generation().generate_kwargs()["num_beams"] == 3
