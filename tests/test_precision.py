"""The language model's dtype follows the hardware: one rule (precision_gaze2report), an explicit name always wins."""

import pytest
import torch
from transformers import pipeline

import modeling_gaze2report  # noqa: F401  (registers the pipeline task)
from modeling_gaze2report import precision_gaze2report as precision
from modeling_gaze2report.precision_gaze2report import (
    cast_language_model,
    preferred_language_model_dtype,
    resolve_language_model_dtype,
    training_language_model_dtype,
)


@pytest.fixture
def cpu(monkeypatch):
    """Sets what the CPU reports (bfloat16 units) and what the timed probe measures (float32 time / bf16 time)."""

    def set_cpu(has_units: bool, speedup: float):
        monkeypatch.setattr(precision, "cpu_has_bfloat16_matrix_units", lambda: has_units)
        monkeypatch.setattr(precision, "cpu_bfloat16_matmul_speedup", lambda: speedup)

    return set_cpu


@pytest.mark.parametrize(
    "has_units, speedup, expected, reason",
    [
        (False, 3.0, torch.float32, "no bfloat16 matrix units"),  # an AVX2-only CPU: never bfloat16
        (True, 0.2, torch.float32, "5.0x slower than float32"),  # units reported, library restricted to AVX2
        (True, 2.1, torch.bfloat16, "2.1x faster than float32"),  # AVX512-BF16 / AMX that delivers
    ],
)
def test_cpu_rule(cpu, has_units, speedup, expected, reason):
    cpu(has_units, speedup)
    dtype, said = preferred_language_model_dtype("cpu")
    assert dtype == expected
    assert reason in said


def test_an_explicit_dtype_wins_and_a_bad_name_is_refused(cpu):
    cpu(False, 0.1)
    assert resolve_language_model_dtype("bfloat16", "cpu") == (torch.bfloat16, "asked for explicitly")
    assert resolve_language_model_dtype("auto", "cpu")[0] == torch.float32
    cpu(True, 2.0)
    assert resolve_language_model_dtype("float32", "cpu")[0] == torch.float32
    with pytest.raises(ValueError, match="'auto' or one of float32, bfloat16, float16, got 'fp8'"):
        resolve_language_model_dtype("fp8", "cpu")


def test_the_probe_measures_this_cpu():
    speedup = precision.cpu_bfloat16_matmul_speedup()
    assert speedup > 0
    dtype, _ = preferred_language_model_dtype("cpu")
    # bfloat16 only on a CPU that both reports the units and computes bfloat16 faster here
    assert (dtype == torch.bfloat16) == (precision.cpu_has_bfloat16_matrix_units() and speedup > 1.0)


def test_cast_touches_only_the_language_model(tiny_model):
    cast_language_model(tiny_model, torch.bfloat16)
    assert {p.dtype for p in tiny_model.model.language_model.parameters()} == {torch.bfloat16}
    assert tiny_model.get_output_embeddings().weight.dtype == torch.bfloat16
    assert {p.dtype for p in tiny_model.model.vision_tower.parameters()} == {torch.float32}
    assert {p.dtype for p in tiny_model.model.scanpath_predictor.parameters()} == {torch.float32}


@pytest.mark.parametrize("has_units, speedup, expected", [(False, 1.0, torch.float32), (True, 2.0, torch.bfloat16)])
def test_pipeline_runs_the_language_model_in_the_preferred_dtype(
    cpu, tiny_model_dir, xray, has_units, speedup, expected
):
    cpu(has_units, speedup)
    pipe = pipeline("gaze2report", model=str(tiny_model_dir))
    assert pipe.language_model_dtype == expected
    assert pipe.model.get_output_embeddings().weight.dtype == expected
    [result] = pipe(xray, max_new_tokens=3)
    assert isinstance(result["report"], str) and result["scanpath"]
    explicit = pipeline("gaze2report", model=str(tiny_model_dir), language_model_dtype="float32")
    assert explicit.model.get_output_embeddings().weight.dtype == torch.float32


def test_training_picks_the_preferred_dtype_for_lora_and_float32_for_a_language_model_trained_in_full(cpu):
    cpu(True, 2.0)
    assert training_language_model_dtype("auto", "cpu", train_in_full=False)[0] == torch.bfloat16
    assert training_language_model_dtype("auto", "cpu", train_in_full=True)[0] == torch.float32
    with pytest.raises(ValueError, match="language_model_dtype='float16' applies to LoRA training"):
        training_language_model_dtype("float16", "cpu", train_in_full=True)
    cpu(False, 2.0)
    assert training_language_model_dtype("auto", "cpu", train_in_full=False)[0] == torch.float32
