"""The family's processor in the CPU decode tasks (issue 26, item 3; docs/measurement.md): a host offers its
processor (`CellStart.preprocessor`), the decode task builds each sample's inputs (`actors.prepare`), and
the host only pads, moves and generates. Captions must be those of the host-side path, through length
groups, token-budget cuts, the OOM half-batch retry and a sample the processor rejects. The real tiny
Qwen2-VL (its processor widened to real pixel ranges, so images of different sizes split into length
groups) and tiny LLaVA; no Ray (the decode task's function called here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.collate import collate
from actors.contract import CellStart, GenerationSettings, LoadSpec, Measurement, ModelRef, SampleBatch
from actors.model_host import ModelHost
from actors.prepare import load_preprocessor, prepare_batch
from sweep.execute.pipeline import decode_task_preprocessor
from sweep.execute.stages import decode_batch

PROMPT = "Describe this image in one sentence."
# ~10-25 s each on 2 shared cores (the widened processor's many patches): the slow loop's
WIDE_QWEN = pytest.param("wide_qwen", marks=pytest.mark.slow)
SETTINGS = GenerationSettings(PROMPT, 6, num_beams=1, min_new_tokens=1, budgets=(2, 4))


@pytest.fixture(scope="module")
def wide_qwen(tmp_path_factory: pytest.TempPathFactory) -> str:
    from benchmarks import model_side
    from benchmarks.padding import widened_copy

    return str(widened_copy(model_side.model_path("tiny:qwen2_vl"), tmp_path_factory.mktemp("m") / "qwen"))


def rows(coco_mini: Path, n: int, start: int = 0) -> list[dict]:
    files = sorted((coco_mini / "val2017").glob("*.jpg"))[start:start + n]
    return [{"sample_id": f.stem, "path": str(f), "error": ""} for f in files]


def host_for(model: str) -> tuple[ModelHost, CellStart]:
    host = ModelHost(LoadSpec(ModelRef(model), "fp32", backend="hf"), None)
    return host, host.begin_cell("c", SETTINGS, Measurement(warmup_batches=0))


def both_ways(host: ModelHost, start: CellStart, pieces: list[tuple[list[dict], int]]):
    """One batch decoded in pieces (rows, max side each) as the pipeline's tasks decode it, captioned with
    the processor on the host and with it in the tasks."""
    prepare = (start.preprocessor, PROMPT)
    plain = SampleBatch.concat([decode_batch(r, False, side) for r, side in pieces])
    prepared = SampleBatch.concat([decode_batch(r, False, side, prepare=prepare) for r, side in pieces])
    return host.caption(plain, SETTINGS, "c"), host.caption(prepared, SETTINGS, "c"), prepared


def outputs(result) -> list:
    budgets = [(t, b.captions, b.generated_tokens) for t, b in sorted(result.budgets.items())]
    return [(s.sample_id, s.caption, s.generated_tokens, s.error) for s in result.samples] + budgets


@pytest.mark.parametrize("model", [WIDE_QWEN, "tiny:llava"])
def test_collate_rebuilds_the_processors_own_batch(model, coco_mini, request):
    """Per-sample processor outputs padded on the host are, tensor for tensor, what the processor builds
    for the whole batch (images of two sizes: different prompt lengths, so padding is exercised)."""
    import torch
    from PIL import Image

    from actors.contract import Preprocessor

    path = request.getfixturevalue(model) if model == "wide_qwen" else model
    host, start = host_for(path)
    family, processor = load_preprocessor(start.preprocessor)
    assert isinstance(start.preprocessor, Preprocessor) and family.name == host.captioner.family.name
    files = [r["path"] for r in rows(coco_mini, 4)]
    images = [[Image.open(f).convert("RGB").resize((64, 48) if i % 2 else (448, 336))]
              for i, f in enumerate(files)]
    whole = family.build_inputs(processor, [PROMPT] * 4, images)
    one_by_one = [dict(family.build_inputs(processor, [PROMPT], [imgs]).items()) for imgs in images]
    padded = collate(one_by_one, processor.tokenizer.pad_token_id, processor.tokenizer.padding_side)
    assert sorted(padded) == sorted(whole)
    for key in whole:
        assert torch.equal(padded[key], whole[key]), key
    if model == "wide_qwen":
        assert int((whole["attention_mask"] == 0).sum()) > 0  # the sizes do differ in tokens


@pytest.mark.parametrize("model", [WIDE_QWEN, "tiny:llava"])
def test_captions_are_identical_with_the_processor_in_the_decode_tasks(model, coco_mini, request):
    """A batch of two pieces decoded at two sizes (Qwen2-VL: two length groups), a missing file between:
    the same captions, token counts, budget cuts and error rows both ways; the prepared batch reached the
    host without pixels, and each result says where its processor ran and for how long."""
    from actors.length_groups import length_groups

    path = request.getfixturevalue(model) if model == "wide_qwen" else model
    host, start = host_for(path)
    small, large = rows(coco_mini, 3), rows(coco_mini, 3, start=3)
    small.insert(1, {"sample_id": "missing", "path": str(coco_mini / "nope.jpg"), "error": ""})
    on_host, in_tasks, prepared = both_ways(host, start, [(small, 64), (large, 448)])

    assert outputs(in_tasks) == outputs(on_host)
    assert in_tasks.samples[1].error == on_host.samples[1].error != ""
    assert prepared.pixels is None and prepared.prepared is not None
    assert prepared.prepared.tensors[1] is None and len(prepared.prepared.tensors) == 7
    assert (on_host.preprocess_where, in_tasks.preprocess_where) == ("host", "decode_task")
    assert in_tasks.preprocess_sec == prepared.prepared.seconds > 0 and on_host.preprocess_sec > 0
    if model == "wide_qwen":  # the batch does split into length groups
        lengths = [int(t["attention_mask"].sum()) for t in prepared.prepared.tensors if t is not None]
        assert len(length_groups(lengths, 6, host.captioner.family.length_group_slack)) == 2


@pytest.mark.slow  # ~10 s
def test_oom_half_batch_retry_works_on_prepared_inputs(coco_mini, monkeypatch):
    """CUDA out of memory at the batch's size: the host retries its two halves, each padded from the
    prepared inputs, and the captions are those of one batch generated whole."""
    import torch

    host, start = host_for("tiny:llava")
    on_host, _, prepared = both_ways(host, start, [(rows(coco_mini, 4), 336)])
    model = host.captioner.model
    real = model.generate
    sizes: list[int] = []

    def tight(**kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if sizes[-1] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", tight)
    retried = host.caption(prepared, SETTINGS, "c")
    assert sizes == [4, 2, 2]
    assert outputs(retried) == outputs(on_host)


def test_a_sample_the_processor_rejects_is_an_error_row_in_the_task_as_on_the_host(wide_qwen):
    """Qwen2-VL refuses an aspect ratio above 200: in the decode task that sample becomes an error row with
    the processor's message, the one the host gives it, and the rest of the batch is captioned alike."""
    host, start = host_for(wide_qwen)
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), rng.integers(0, 255, (2, 600, 3),
                                                                                  dtype=np.uint8)]
    batch = SampleBatch(["ok", "thin"], ["", ""], [224, 600], [224, 2], pixels=pixels)
    on_host = host.caption(batch, SETTINGS, "c")
    in_tasks = host.caption(prepare_batch(batch, start.preprocessor, PROMPT), SETTINGS, "c")
    assert "aspect ratio" in on_host.samples[1].error
    assert outputs(in_tasks) == outputs(on_host)


def test_who_can_prepare_off_host():
    """Families whose generate() is their own (remote code: it needs the PIL images) and backends that run
    their own processor (vLLM) or user loaders offer nothing: their processor stays on the host."""
    from actors.captioner import Captioner
    from actors.registry import get_family, known_families
    from actors.vllm_backend import VLLMCaptioner

    own = {name for name in known_families() if "generate" in type(get_family(name)).__dict__}
    assert own >= {"phi3_v", "internvl_chat", "mobilevlm", "deepseek_vl_v1"}
    for name in known_families():
        assert get_family(name).prepares_off_host is (name not in own), name
    assert VLLMCaptioner.preprocessor is Captioner.preprocessor  # the base: None


def test_the_pipeline_prepares_only_on_one_offer_from_every_host():
    from actors.contract import LoadReport, Preprocessor

    report = LoadReport("hf", "", "llava", "cpu", 0.0, 1)
    offer, other = Preprocessor("llava", "/m", "m"), Preprocessor("llava", "/n", "n")

    def starts(*offers):
        return [CellStart(f"h:{i}", "", report, {}, 0, preprocessor=o) for i, o in enumerate(offers)]

    assert decode_task_preprocessor(starts(offer, offer), PROMPT, True) == (offer, PROMPT)
    assert decode_task_preprocessor(starts(offer, offer), PROMPT, False) is None  # turned off
    assert decode_task_preprocessor(starts(offer, None), PROMPT, True) is None
    assert decode_task_preprocessor(starts(offer, other), PROMPT, True) is None
