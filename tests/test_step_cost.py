"""Cheaper stage-2 steps that change nothing of the method: a training step builds no key/value cache, AdamW runs
fused, compiled decoder layers compute the same loss, length grouping and the short prompt run fewer positions; and
the train-step benchmark's --variants comparison reports each beside today's step."""

import dataclasses
import json

import pytest
import torch
from transformers import TrainingArguments

from benchmarks import train_step
from modeling_gaze2report.data import Gaze2ReportCollator, make_synthetic_dataset
from modeling_gaze2report.demo.run import BUDGETS
from modeling_gaze2report.lora import apply_lora
from modeling_gaze2report.presets import build_from_preset
from modeling_gaze2report.training import Gaze2ReportTrainer, scored_positions
from modeling_gaze2report.training.trainer import (
    compiled_decoder_layers,
    decoder_layers,
    fused_optimizer_supported,
    part_parameter_groups,
    training_inputs,
)

RATES = {"gaze_encoder": 1e-3, "projector": 1e-3, "scanpath_predictor": 1e-3}


@pytest.fixture(scope="module")
def train_split():
    return make_synthetic_dataset(12, seed=0, image_size=64, split_fractions=(1, 0, 0))["train"]


def lora_model():
    """The tiny preset with LoRA on its language model, as stage 2 trains a pretrained one, in train mode."""
    torch.manual_seed(0)
    model, processor = build_from_preset("tiny")
    return apply_lora(model, r=4, alpha=8, dropout=0.0).train(), processor


def loss_and_gradients(model, inputs: dict) -> tuple:
    model.zero_grad(set_to_none=True)
    outputs = model(**inputs)
    outputs.loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return outputs, gradients


def trainer_arguments(output_dir, max_steps=1) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        seed=0,
    )


def test_a_training_step_builds_no_cache_and_keeps_the_loss_and_gradients(train_split):
    model, processor = lora_model()
    batch = dict(Gaze2ReportCollator(processor)(list(train_split.select(range(4)))))
    before, before_gradients = loss_and_gradients(model, {**batch, "logits_to_keep": scored_positions(batch["labels"])})
    after, after_gradients = loss_and_gradients(model, training_inputs(batch))
    assert before.cache is not None and after.cache is None  # the cache the step built and never read is gone
    assert torch.equal(after.loss, before.loss) and after_gradients.keys() == before_gradients.keys()
    assert all(torch.equal(after_gradients[name], gradient) for name, gradient in before_gradients.items())
    assert after.logits.shape[0] == int(scored_positions(batch["labels"]).sum())  # the head at scored positions only
    prompts = {"input_ids": batch["input_ids"], "pixel_values": batch["pixel_values"]}
    assert training_inputs(prompts) is prompts  # a batch without labels passes as it is


def test_the_trainers_adamw_is_fused_and_steps_as_the_unfused_one(train_split, tmp_path):
    (fused_model, processor), (plain_model, _) = lora_model(), lora_model()
    batch = dict(Gaze2ReportCollator(processor)(list(train_split.select(range(4)))))
    args = trainer_arguments(tmp_path)
    trainer = Gaze2ReportTrainer(model=fused_model, args=args, part_learning_rates=RATES)
    fused = trainer.create_optimizer()
    plain = torch.optim.AdamW(part_parameter_groups(plain_model, RATES, args.learning_rate, args.weight_decay))
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    assert [group["parts"] for group in fused.param_groups] == [group["parts"] for group in plain.param_groups]
    trained = [name for name, parameter in plain_model.named_parameters() if parameter.requires_grad]
    initial = {name: plain_model.get_parameter(name).detach().clone() for name in trained}
    for _ in range(2):
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            loss_and_gradients(model, training_inputs(batch))
            optimizer.step()
    fused_parameters, plain_parameters = dict(fused_model.named_parameters()), dict(plain_model.named_parameters())
    assert sum(not torch.equal(plain_parameters[name], initial[name]) for name in trained) > len(trained) // 2
    for name in trained:  # each step moves a weight by up to the rate (1e-3): they agree to a tenth of that
        torch.testing.assert_close(fused_parameters[name], plain_parameters[name], rtol=1e-5, atol=1e-4)
    meta = [{"params": [torch.nn.Parameter(torch.zeros(2, device="meta"))]}]
    assert fused_optimizer_supported(fused.param_groups) and not fused_optimizer_supported(meta)


def test_compiled_decoder_layers_train_to_the_same_loss_and_run_eager_afterwards(train_split, tmp_path):
    logs, models = [], []
    for compile_layers in (False, True):
        model, processor = lora_model()
        trainer = Gaze2ReportTrainer(
            model=model,
            args=trainer_arguments(tmp_path / str(compile_layers), max_steps=2),
            train_dataset=train_split.select(range(8)),
            data_collator=Gaze2ReportCollator(processor),
            compile_decoder_layers=compile_layers,
        )
        trainer.train()
        logs.append([(entry["loss"], entry["grad_norm"]) for entry in trainer.state.log_history if "loss" in entry])
        models.append(model)
    (eager, compiled), layers = logs, decoder_layers(models[1].get_decoder())
    assert len(eager) == len(compiled) == 2 and len(layers) == models[1].config.text_config.num_hidden_layers
    for (eager_loss, eager_norm), (compiled_loss, compiled_norm) in zip(eager, compiled):
        assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
        assert compiled_norm == pytest.approx(eager_norm, rel=1e-4)
    assert all(layer._compiled_call_impl is None for layer in layers)  # training over, the layers run eager again
    with compiled_decoder_layers(models[1].get_decoder()) as compiled_layers:
        assert compiled_layers == layers and all(layer._compiled_call_impl is not None for layer in layers)
    with pytest.raises(ValueError, match="names no decoder layer class"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_length_grouping_and_the_short_prompt_run_fewer_positions_with_the_same_report_labels(
    train_split, tiny_processor
):
    short = train_step.short_prompt_processor(tiny_processor)
    studies = list(train_split.select(range(4)))
    default_batch, short_batch = (Gaze2ReportCollator(processor)(studies) for processor in (tiny_processor, short))
    saved = len(tiny_processor.prompt_ids) - len(short.prompt_ids)
    assert saved > 0 and short_batch["input_ids"].shape[1] == default_batch["input_ids"].shape[1] - saved
    for default_labels, short_labels in zip(default_batch["labels"], short_batch["labels"]):
        assert torch.equal(default_labels[default_labels != -100], short_labels[short_labels != -100])
    placeholders = {int((batch["input_ids"] == short.gaze_token_id).sum()) for batch in (default_batch, short_batch)}
    assert placeholders == {4 * short.num_gaze_tokens}

    # 40 studies in batches of 2: transformers groups them in mega-batches of 5 batches
    studies = make_synthetic_dataset(40, seed=0, image_size=64, split_fractions=(1, 0, 0))["train"]
    budget = dataclasses.replace(BUDGETS["tiny"], batch_size=2, report_steps=20)
    figures = train_step.padded_positions({"default": tiny_processor, "short": short}, studies, budget, 0)
    for prompt in ("default", "short"):
        random, grouped = figures[prompt]["random"], figures[prompt]["group_by_length"]
        assert grouped["tokens"] == random["tokens"] and grouped["positions"] < random["positions"]
        assert 0 <= grouped["padding_share"] < random["padding_share"]
    assert figures["default"]["random"]["tokens"] - figures["short"]["random"]["tokens"] == saved * len(studies)


def test_the_variants_benchmark_times_each_change_beside_todays_step(tmp_path, capsys):
    output = tmp_path / "train_step.json"
    output.write_text(json.dumps({"torch_threads": 2, "results": [{"setting": "demo", "device": "cpu (older)"}]}))
    variants = ["no_cache", "fused_adamw", "short_prompt", "float32"]
    argv = ["--setting", "tiny", "--variants", *variants, "--steps", "2", "--warmup", "1", "--batch_size", "2"]
    returned = train_step.main([*argv, "--output", str(output), "--append"])
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(returned))
    earlier, result = written["results"]
    assert earlier == {"setting": "demo", "device": "cpu (older)", "run": {"torch_threads": 2}}
    assert result["mode"] == "variants" and result["language_model_dtype"]["dtype"] == "float32"  # the tiny budget's
    assert list(result["variants"]) == ["today", *variants] and len(result["study_ids"]) == 2
    today, runs = result["variants"]["today"], result["variants"]
    for name, run in runs.items():
        assert len(run["step_ms"]) == 2 and len(run["losses"]) == 3 and run["median_step_ms"] > 0
        assert run["speedup"] > 0 and set(run["speedup_spread"]) == {"median", "q1", "q3", "min", "max"}
    assert today["first_loss_difference"] == 0 and today["losses"][0] != today["losses"][1]
    assert runs["no_cache"]["losses"] == today["losses"]  # the same computation, to the bit
    assert runs["fused_adamw"]["losses"][0] == today["losses"][0] and runs["fused_adamw"]["max_loss_difference"] < 1e-4
    assert runs["short_prompt"]["sequence_length"] < today["sequence_length"]
    assert set(result["padded_positions"]["short"]) == {"prompt_tokens", "random", "group_by_length"}
    assert "| tiny | cpu (" in capsys.readouterr().out

    train_step.main([*argv, "--output", str(output), "--append"])  # the same setting, mode and device: replaced
    assert [entry.get("mode") for entry in json.loads(output.read_text())["results"]] == [None, "variants"]


@pytest.mark.parametrize("argv", [["--variants", "today", "--warmup", "0"], ["--append"], ["--variants", "packed"]])
def test_bad_variant_arguments_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        train_step.parse_args(argv)
    assert "error" in capsys.readouterr().err
