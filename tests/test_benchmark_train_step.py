"""benchmarks/train_step.py: the tiny setting runs end to end and reports every field; the baseline sees the same
token sequences without the <gaze> placeholders."""

import json
import math

import pytest
import torch

from .conftest import load_script


@pytest.fixture(scope="module")
def train_step_benchmark():
    return load_script("benchmarks/train_step.py")


def test_tiny_setting_reports_every_field(train_step_benchmark, tmp_path, capsys):
    output = tmp_path / "results" / "train_step.json"
    returned = train_step_benchmark.main(
        [
            "--setting",
            "tiny",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch_size",
            "2",
            "--attn_implementation",
            "eager",
            "--lora_dropout",
            "0",
            "--output",
            str(output),
        ]
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
        assert len(run["step_ms"]) == 2 and all(map(math.isfinite, run["losses"]))
        assert run["losses"][0] != run["losses"][1]  # no dropout: only the optimizer's step changes the loss
        assert run["median_step_ms"] > 0 and run["tokens_per_second"] > 0 and run["peak_memory_mb"] >= 0
    assert result["gaze2report"]["trainable_parameters"] > result["baseline"]["trainable_parameters"]
    assert len(result["overhead_ratio_pairs"]) == 2 and set(result["overhead_ratio_spread"]) == {
        "median",
        "q1",
        "q3",
        "min",
        "max",
    }
    work = result["same_language_model_work"]
    assert work["attn_implementation"] == "eager" and work["lora_layers"] == result["lora"]["layers"]
    assert work["sequence_shape"] == [2, result["sequence_length"]] and work["scored_positions"] > 0
    breakdown = result["gaze2report"]["forward_breakdown_ms"]
    assert set(breakdown) == {"forward", "other", *train_step_benchmark.FORWARD_PARTS}
    assert all(breakdown[part] > 0 for part in train_step_benchmark.FORWARD_PARTS)

    printed = capsys.readouterr().out
    assert "| tiny | Gaze2Report, eager attention | 2 x" in printed
    assert "| tiny | LLM + LoRA (baseline), eager attention |" in printed


def test_step_times_give_the_median_step_tokens_per_second_and_the_overhead_spread(train_step_benchmark):
    batch = {"input_ids": torch.zeros(2, 50, dtype=torch.long)}
    summary = train_step_benchmark.step_summary([0.3, 0.1, 0.2], [1.0, 0.9, 0.8], batch, 12.5, torch.nn.Linear(2, 3))
    assert summary["median_step_ms"] == pytest.approx(200.0) and summary["step_ms"] == pytest.approx([300, 100, 200])
    assert summary["tokens_per_second"] == pytest.approx(500.0)  # 2 x 50 tokens in the median step of 0.2 s
    assert summary["trainable_parameters"] == 9 and summary["peak_memory_mb"] == 12.5
    spread = train_step_benchmark.ratio_spread([1.0, 4.0, 2.0, 3.0])
    assert spread == pytest.approx({"median": 2.5, "q1": 1.75, "q3": 3.25, "min": 1.0, "max": 4.0})
    assert train_step_benchmark.ratio_spread([1.5]) == {"median": 1.5, "q1": 1.5, "q3": 1.5, "min": 1.5, "max": 1.5}


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
    # the baseline's head runs at the scored positions only, with the loss it would have over every position
    baseline = train_step_benchmark.build_baseline(model, device, dtype).eval()
    peft_baseline = train_step_benchmark.get_peft_model(
        baseline, train_step_benchmark.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=True)
    )
    with torch.no_grad():
        torch.testing.assert_close(
            train_step_benchmark.baseline_loss(peft_baseline, baseline_batch), peft_baseline(**baseline_batch).loss
        )


def test_models_that_would_do_different_language_model_work_are_refused(train_step_benchmark):
    model, processor, device, dtype = train_step_benchmark.build_setting("tiny")
    gaze_batch, baseline_batch, _ = train_step_benchmark.make_batches(
        processor, model.config.gaze_token_id, 2, 64, 0, device, dtype
    )
    baseline = train_step_benchmark.build_baseline(model, device, dtype)
    gaze_model = train_step_benchmark.apply_lora(model, r=4, alpha=8, dropout=0.0)
    baseline_model, _, _ = train_step_benchmark.apply_same_lora(baseline, gaze_model, 4, 8, 0.0)
    for language_model in (model.get_decoder(), baseline_model.get_base_model().base_model):
        language_model.set_attn_implementation("eager")
    work = train_step_benchmark.same_language_model_work(gaze_model, gaze_batch, baseline_model, baseline_batch)
    assert work["lora_layers"] > 0
    baseline_model.get_base_model().base_model.set_attn_implementation("sdpa")
    with pytest.raises(ValueError, match="attn_implementation is 'eager' for Gaze2Report and 'sdpa'"):
        train_step_benchmark.same_language_model_work(gaze_model, gaze_batch, baseline_model, baseline_batch)
    baseline_model.get_base_model().base_model.set_attn_implementation("eager")
    shorter = {name: tensor[:, :-1] for name, tensor in baseline_batch.items()}
    with pytest.raises(ValueError, match="sequence_shape"):
        train_step_benchmark.same_language_model_work(gaze_model, gaze_batch, baseline_model, shorter)


def test_interleaved_steps_alternate_their_order(train_step_benchmark):
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.weight = name, torch.nn.Parameter(torch.ones(1))

    def loss_function(model, batch):
        calls.append(model.name)
        return (model.weight * batch).sum()

    runs = {name: (Recorder(name), loss_function, torch.ones(1)) for name in ("a", "b")}
    timed = train_step_benchmark.measure_interleaved(runs, warmup=1, steps=4, device=torch.device("cpu"))
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(len(timed[name]["seconds"]) == 4 for name in runs)


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
