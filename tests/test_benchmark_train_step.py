"""benchmarks.train_step and the training comparison of benchmarks.common: the tiny setting runs end to end and
reports every field; the baseline sees the same token sequences without the <gaze> placeholders, and both losses are
the full losses computed at the scored positions only; models that would do different language-model work are
refused."""

import json
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from benchmarks import common, train_step
from modeling_gaze2report.presets import build_from_preset


def test_tiny_setting_reports_every_field(tmp_path, capsys):
    output = tmp_path / "results" / "train_step.json"
    argv = ["--setting", "tiny", "--steps", "2", "--warmup", "1", "--batch_size", "2", "--attn_implementation", "eager"]
    returned = train_step.main([*argv, "--output", str(output)])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["torch_threads"] == torch.get_num_threads() and written["steps"] == 2 and written["warmup"] == 1
    assert list(tmp_path.joinpath("results").iterdir()) == [output]

    (result,) = written["results"]
    assert result["setting"] == "tiny" and result["attn_implementation"] == "eager"
    assert result["batch_size"] == 2 and result["sequence_length"] > result["gaze_tokens_per_study"]
    assert result["studies_with_recorded_gaze"] >= 1 and result["text_model"]["num_hidden_layers"] == 2
    assert result["lora"]["layers"] > 0 and result["lora"]["r"] == common.LORA["r"]
    for name in ("gaze2report", "baseline"):
        run = result[name]
        assert len(run["step_ms"]) == 2 and all(map(math.isfinite, run["losses"]))
        assert run["losses"][0] != run["losses"][1]  # the optimizer's step changes the loss
        assert run["median_step_ms"] > 0 and run["tokens_per_second"] > 0 and run["peak_memory_mb"] >= 0
    assert result["gaze2report"]["trainable_parameters"] > result["baseline"]["trainable_parameters"]
    assert len(result["overhead_ratio_pairs"]) == 2
    assert set(result["overhead_ratio_spread"]) == {"median", "q1", "q3", "min", "max"}
    work = result["same_language_model_work"]
    assert work["attn_implementation"] == "eager" and work["lora_layers"] == result["lora"]["layers"]
    assert work["sequence_shape"] == [2, result["sequence_length"]] and work["scored_positions"] > 0
    breakdown = result["gaze2report"]["forward_breakdown_ms"]
    parts = [part for part in common.FORWARD_PARTS if part != "fixation_head"]  # the tiny preset has no such head
    assert set(breakdown) == {"forward", "other", *parts} and all(breakdown[part] > 0 for part in parts)

    printed = capsys.readouterr().out
    assert "| tiny | Gaze2Report, eager attention | 2 x" in printed
    assert "| tiny | LLM + LoRA (baseline), eager attention |" in printed


def test_step_times_give_the_median_step_tokens_per_second_and_the_overhead_spread():
    batch = {"input_ids": torch.zeros(2, 50, dtype=torch.long)}
    summary = common.step_summary([0.3, 0.1, 0.2], [1.0, 0.9, 0.8], batch, 12.5, torch.nn.Linear(2, 3))
    assert summary["median_step_ms"] == pytest.approx(200.0) and summary["step_ms"] == pytest.approx([300, 100, 200])
    assert summary["tokens_per_second"] == pytest.approx(500.0)  # 2 x 50 tokens in the median step of 0.2 s
    assert summary["trainable_parameters"] == 9 and summary["peak_memory_mb"] == 12.5
    spread = common.ratio_spread([1.0, 4.0, 2.0, 3.0])
    assert spread == pytest.approx({"median": 2.5, "q1": 1.75, "q3": 3.25, "min": 1.0, "max": 4.0})
    assert common.ratio_spread([1.5]) == {"median": 1.5, "q1": 1.5, "q3": 1.5, "min": 1.5, "max": 1.5}


def test_both_losses_are_the_full_losses_on_the_same_sequences_without_placeholders():
    torch.manual_seed(0)
    model, processor = build_from_preset("tiny")
    model.eval()
    gaze_batch, baseline_batch, _ = common.make_training_batches(model, processor, 2, 0)
    placeholders = gaze_batch["input_ids"] == model.config.gaze_token_id
    assert int(placeholders.sum()) == 2 * model.config.num_gaze_tokens
    assert not (baseline_batch["input_ids"] == model.config.gaze_token_id).any()
    assert torch.equal(baseline_batch["input_ids"][~placeholders], gaze_batch["input_ids"][~placeholders])
    assert torch.equal(baseline_batch["labels"], gaze_batch["labels"])
    assert torch.equal(baseline_batch["attention_mask"], gaze_batch["attention_mask"])
    # each runs its head at the scored positions only, with the loss it would have over every position
    peft_baseline = get_peft_model(common.build_baseline(model).eval(), LoraConfig(r=2, target_modules=["q_proj"]))
    with torch.no_grad():
        torch.testing.assert_close(
            common.baseline_loss(peft_baseline, baseline_batch), peft_baseline(**baseline_batch).loss
        )
        torch.testing.assert_close(common.gaze2report_loss(model, gaze_batch), model(**gaze_batch).loss)


def test_models_that_would_do_different_language_model_work_are_refused():
    model, processor = build_from_preset("tiny")
    model.get_decoder().set_attn_implementation("eager")
    runs, record = common.prepare_training(model, processor, 2, 0)
    assert common.same_language_model_work(runs)["lora_layers"] == record["lora"]["layers"] > 0
    baseline_model, baseline_loss, baseline_batch = runs["baseline"]
    baseline_model.get_base_model().get_decoder().set_attn_implementation("sdpa")
    with pytest.raises(ValueError, match="attn_implementation is 'eager' for Gaze2Report and 'sdpa'"):
        common.same_language_model_work(runs)
    baseline_model.get_base_model().get_decoder().set_attn_implementation("eager")
    shorter = {name: tensor[:, :-1] for name, tensor in baseline_batch.items()}
    with pytest.raises(ValueError, match="sequence_shape"):
        common.same_language_model_work({**runs, "baseline": (baseline_model, baseline_loss, shorter)})


def test_interleaved_steps_alternate_their_order():
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.weight = name, torch.nn.Parameter(torch.ones(1))

    def loss_function(model, batch):
        calls.append(model.name)
        return (model.weight * batch).sum()

    runs = {name: (Recorder(name), loss_function, torch.ones(1)) for name in ("a", "b")}
    timed = common.measure_interleaved(runs, warmup=1, steps=4)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(len(timed[name]["seconds"]) == 4 for name in runs)


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--batch_size", "0"], ["--threads", "0"], ["--setting", "gpu"]])
def test_bad_arguments_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        train_step.parse_args(argv)
    assert "error" in capsys.readouterr().err
