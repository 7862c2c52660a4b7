"""benchmarks/train_step.py: the tiny setting runs end to end and reports every field; the baseline sees the same
token sequences without the <gaze> placeholders."""

import json

import pytest
import torch

from .conftest import load_script


@pytest.fixture(scope="module")
def train_step_benchmark():
    return load_script("benchmarks/train_step.py")


def test_tiny_setting_reports_every_field(train_step_benchmark, tmp_path, capsys):
    output = tmp_path / "results" / "train_step.json"
    returned = train_step_benchmark.main(
        ["--setting", "tiny", "--steps", "2", "--warmup", "1", "--batch_size", "2", "--attn_implementation", "eager",
         "--output", str(output)]
    )
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["torch_threads"] == torch.get_num_threads() and written["steps"] == 2 and written["warmup"] == 1
    assert list(tmp_path.joinpath("results").iterdir()) == [output]

    (result,) = written["results"]
    assert result["setting"] == "tiny" and result["attn_implementation"] == "eager"
    assert result["batch_size"] == 2 and result["sequence_length"] > result["gaze_tokens_per_study"]
    assert result["studies_with_recorded_gaze"] >= 1
    assert result["lora"]["layers"] > 0 and result["lora"]["r"] == 16
    for name in ("gaze2report", "baseline"):
        run = result[name]
        assert len(run["step_ms"]) == 2 and len(run["losses"]) == 2
        assert run["median_step_ms"] > 0 and run["tokens_per_second"] > 0 and run["trainable_parameters"] > 0
        assert run["peak_memory_mb"] >= 0
        expected_tokens_per_second = 2 * result["sequence_length"] / (run["median_step_ms"] / 1000)
        assert run["tokens_per_second"] == pytest.approx(expected_tokens_per_second)
    assert result["gaze2report"]["trainable_parameters"] > result["baseline"]["trainable_parameters"]
    assert result["overhead_ratio"] == pytest.approx(
        result["gaze2report"]["median_step_ms"] / result["baseline"]["median_step_ms"]
    )
    breakdown = result["gaze2report"]["forward_breakdown_ms"]
    assert set(breakdown) == {"forward", "other", *train_step_benchmark.FORWARD_PARTS}
    assert all(breakdown[part] > 0 for part in train_step_benchmark.FORWARD_PARTS)

    printed = capsys.readouterr().out
    assert "| tiny | Gaze2Report, eager attention | 2 x" in printed
    assert "| tiny | LLM + LoRA (baseline), eager attention |" in printed


def test_baseline_batch_is_the_same_sequence_without_gaze_placeholders(train_step_benchmark):
    model, processor, device, dtype = train_step_benchmark.build_setting("tiny")
    gaze_token_id = model.config.gaze_token_id
    gaze_batch, baseline_batch, _ = train_step_benchmark.make_batches(processor, gaze_token_id, 2, 64, 0, device, dtype)
    placeholders = gaze_batch["input_ids"] == gaze_token_id
    assert int(placeholders.sum()) == 2 * model.config.num_gaze_tokens
    assert not (baseline_batch["input_ids"] == gaze_token_id).any()
    assert torch.equal(baseline_batch["input_ids"][~placeholders], gaze_batch["input_ids"][~placeholders])
    assert torch.equal(baseline_batch["labels"], gaze_batch["labels"])
    assert torch.equal(baseline_batch["attention_mask"], gaze_batch["attention_mask"])
    # the baseline's head runs over the report span only, with the loss it would have over every position
    baseline = train_step_benchmark.build_baseline(model, device, dtype).eval()
    span = baseline_batch["logits_to_keep"]
    assert 0 < len(span) < gaze_batch["input_ids"].shape[1] - 1
    everywhere = {name: baseline_batch[name] for name in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        report_span = baseline(**baseline_batch)
        torch.testing.assert_close(report_span.loss, baseline(**everywhere).loss)
    assert report_span.logits.shape[1] == len(span)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is absent")
def test_gpu_setting_is_skipped_with_a_message_without_cuda(train_step_benchmark):
    args = train_step_benchmark.parse_args(["--setting", "gpu"])
    result = train_step_benchmark.benchmark_setting("gpu", args)
    assert result["setting"] == "gpu" and "CUDA is not available" in result["skipped"]


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--batch_size", "0"], ["--threads", "0"], ["--setting", "huge"]])
def test_bad_arguments_are_rejected(train_step_benchmark, argv, capsys):
    with pytest.raises(SystemExit):
        train_step_benchmark.parse_args(argv)
    assert "error" in capsys.readouterr().err
