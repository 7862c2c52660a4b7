"""The training recipe: two stages, checkpoints and resume, a loadable final model, two processes on CPU."""

import json
import math
import os
import subprocess
import sys

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainingArguments, pipeline, set_seed

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.data import Gaze2ReportCollator, make_synthetic_dataset
from modeling_gaze2report.presets import build_from_preset
from modeling_gaze2report.training import (
    DataArguments,
    Gaze2ReportTrainer,
    ModelArguments,
    RecipeArguments,
    ScanpathPretraining,
    load_training_data,
    main,
    run_training,
    scored_positions,
)
from modeling_gaze2report.vision_gaze2report import encode_patch_features

from .conftest import REPOSITORY_ROOT


@pytest.fixture(scope="module")
def small_dataset():
    return make_synthetic_dataset(num_studies=20, seed=0, image_size=64)


def arguments(output_dir, max_steps=4, save_steps=100, **recipe):
    """The tiny preset's arguments with LoRA on its language model, as a pretrained one gets."""
    model_args = ModelArguments(lora_r=4, lora_alpha=8, train_language_model=False, language_model_dtype="float32")
    data_args = DataArguments(num_synthetic_studies=20, synthetic_image_size=64, max_report_tokens=48)
    recipe_args = RecipeArguments(scanpath_max_steps=3, **recipe)
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        save_steps=save_steps,
        logging_steps=1,
        report_to=[],
        seed=0,
        use_cpu=True,
    )
    return model_args, data_args, recipe_args, training_args


def test_two_stage_recipe_writes_a_loadable_model(small_dataset, tmp_path, xray):
    model, processor, _ = run_training("tiny", *arguments(tmp_path), dataset=small_dataset)
    assert (tmp_path / "scanpath_stage.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    saved = Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    inputs = processor(images=[xray], reports=["No pleural effusion."])
    with torch.no_grad():
        torch.testing.assert_close(saved(**inputs).logits, model(**inputs).logits)
    [result] = pipeline("gaze2report", model=str(tmp_path / "model"))(xray, max_new_tokens=3)
    assert isinstance(result["report"], str) and result["scanpath"]
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-text-to-text"
    assert card.data.datasets == ["synthetic"] and not card.data.base_model  # the tiny preset's backbones are random
    assert "preset `tiny`" in card.text and "Intended use" in card.text and "never seen a real radiograph" in card.text
    recorded = json.loads((tmp_path / "training_arguments.json").read_text())
    assert recorded["model"]["source"] == "preset `tiny`" and recorded["training"]["max_steps"] == 4


def test_stage_one_trains_the_gaze_path_only_and_a_second_run_loads_it(small_dataset, tmp_path, monkeypatch):
    model_args, data_args, recipe, training_args = arguments(tmp_path)
    recipe.stages, recipe.scanpath_batch_size = "scanpath", 3  # stage 2 would take batches of 4
    batch_sizes = []
    collate = Gaze2ReportCollator.__call__
    monkeypatch.setattr(
        Gaze2ReportCollator,
        "__call__",
        lambda self, examples: batch_sizes.append(len(examples)) or collate(self, examples),
    )
    torch.manual_seed(0)
    model, processor = build_from_preset("tiny")
    untrained = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    requires_grad = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    run_training((model, processor), model_args, data_args, recipe, training_args, dataset=small_dataset)
    assert len(batch_sizes) >= recipe.scanpath_max_steps and set(batch_sizes) <= {1, 2, 3} and 3 in batch_sizes
    weights = load_file(tmp_path / "scanpath_stage.safetensors")
    assert weights and all(name.startswith(("vision_tower.", "scanpath_predictor.")) for name in weights)
    trained = model.state_dict()
    assert all(torch.equal(tensor, trained[f"model.{name}"]) for name, tensor in weights.items())
    changed = {name.split(".")[1] for name in trained if not torch.equal(trained[name], untrained[name])}
    assert changed == {"vision_tower", "scanpath_predictor"}, "the projector, graph and language model stay still"
    assert {name: parameter.requires_grad for name, parameter in model.named_parameters()} == requires_grad
    assert not (tmp_path / "model").exists()

    # a second run into the same folder loads stage 1 instead of training it again
    batch_sizes.clear()
    torch.manual_seed(1)
    again, processor = build_from_preset("tiny")
    run_training((again, processor), model_args, data_args, recipe, training_args, dataset=small_dataset)
    assert batch_sizes == []
    torch.testing.assert_close(again.model.scanpath_predictor.state_dict(), model.model.scanpath_predictor.state_dict())
    torch.testing.assert_close(again.model.vision_tower.state_dict(), model.model.vision_tower.state_dict())


def test_stage_one_finding_loss_adds_a_masked_chexpert_loss(small_dataset, tiny_model, tiny_processor):
    batch = Gaze2ReportCollator(tiny_processor, include_reports=False, include_finding_labels=True)(
        [small_dataset["train"][index] for index in range(4)]
    )
    inputs = {name: batch[name] for name in ("pixel_values", "fixations", "fixation_mask")}
    scanpath_only = ScanpathPretraining(tiny_model)
    assert scanpath_only.finding_classifier is None
    scanpath_loss = scanpath_only(**inputs)["loss"]
    assert scanpath_loss > 0
    torch.manual_seed(0)
    with_findings = ScanpathPretraining(tiny_model, finding_loss_weight=2.0)
    loss = with_findings(
        **inputs, finding_labels=batch["finding_labels"], finding_label_mask=batch["finding_label_mask"]
    )["loss"]
    # by hand: patch scores, log-sum-exp pooled over the patches, binary cross-entropy over the certain labels
    features = encode_patch_features(tiny_model.model.vision_tower, batch["pixel_values"]).flatten(2).transpose(1, 2)
    scores = with_findings.finding_classifier.patch_scores(features)
    logits = torch.logsumexp(scores, dim=1) - math.log(features.shape[1])
    mask = batch["finding_label_mask"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], batch["finding_labels"][mask])
    torch.testing.assert_close(loss, scanpath_loss + 2.0 * expected)
    flipped = batch["finding_labels"].clone()
    flipped[~mask] = 1 - flipped[~mask]
    torch.testing.assert_close(with_findings(**inputs, finding_labels=flipped, finding_label_mask=mask)["loss"], loss)
    loss.backward()
    assert tiny_model.model.vision_tower.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs finding_labels"):
        with_findings(**inputs)
    with pytest.raises(ValueError, match="finding_loss_weight must be >= 0"):
        ScanpathPretraining(tiny_model, finding_loss_weight=-1.0)
    without_gaze = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_gaze=False))
    with pytest.raises(ValueError, match="nothing to train"):
        ScanpathPretraining(without_gaze)
    finding_only = ScanpathPretraining(without_gaze, finding_loss_weight=1.0)
    assert finding_only(pixel_values=batch["pixel_values"], finding_labels=flipped, finding_label_mask=mask)["loss"] > 0


def test_the_trainer_runs_the_head_only_where_labels_score_with_the_loss_of_every_position(
    small_dataset, tiny_model, tiny_processor
):
    batch = Gaze2ReportCollator(tiny_processor)([small_dataset["train"][index] for index in range(3)])
    labels = batch["labels"]
    scored = scored_positions(labels)
    for row, position in scored.nonzero().tolist():
        assert labels[row, position + 1] != -100
    assert scored.sum() == (labels != -100).sum() - (labels[:, 0] != -100).sum()  # every label but a first token's
    tiny_model.eval()
    with torch.no_grad():
        every_position = tiny_model(**batch)
        kept = tiny_model(**batch, logits_to_keep=scored)
    assert kept.logits.shape == (int(scored.sum()), tiny_model.config.text_config.vocab_size)
    torch.testing.assert_close(kept.logits, every_position.logits[scored])
    torch.testing.assert_close(kept.lm_loss, every_position.lm_loss, atol=1e-5, rtol=0)


def test_bfloat16_stage_two_writes_a_float32_adapter_that_carries_the_stage_one_tower(small_dataset, tmp_path, xray):
    model_args, data_args, recipe, training_args = arguments(tmp_path)
    model_args.language_model_dtype = "bfloat16"
    set_seed(training_args.seed)  # run_training builds its model right after this same seeding
    untrained = build_from_preset("tiny")[0]
    model, processor, _ = run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {tensor.dtype for tensor in adapter.values()} == {torch.float32}
    assert any(name.startswith("base_model.model.model.vision_tower.") for name in adapter)
    # the adapter on the untrained preset model gives the trained model: stage 1's vision tower travels with it, and
    # the merged model holds the exact pretrained weights, not their bfloat16 roundings (which differ by ~2e-3 here)
    restored = PeftModel.from_pretrained(untrained, tmp_path / "adapter").merge_and_unload().eval()
    inputs = processor(images=[xray], reports=["No pleural effusion."])
    with torch.no_grad():
        torch.testing.assert_close(restored(**inputs).logits, model(**inputs).logits, atol=1e-4, rtol=1e-4)
    model_args.language_model_dtype = "float64"
    with pytest.raises(
        ValueError, match="language_model_dtype must be 'auto' or one of float32, bfloat16, float16, got 'float64'"
    ):
        run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    model_args.language_model_dtype, model_args.train_language_model = "bfloat16", True
    with pytest.raises(ValueError, match="applies to LoRA training"):
        run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)


def first_step_log(model, dataset, collator, batch_size, accumulation, tmp_path):
    """The loss and gradient norm that Trainer logs for one optimizer step."""
    args = TrainingArguments(
        output_dir=str(tmp_path / f"batch{batch_size}x{accumulation}"),
        max_steps=1,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
    )
    trainer = Gaze2ReportTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    [log] = [entry for entry in trainer.state.log_history if "grad_norm" in entry]
    return log["loss"], log["grad_norm"]


@pytest.mark.parametrize("stage", ["scanpath", "report"])
def test_gradient_accumulation_gives_the_step_of_the_whole_batch(small_dataset, tiny_processor, tmp_path, stage):
    # one study twice: two accumulated batches of one must log the loss and the gradient of one batch of two
    study = small_dataset["train"].filter(lambda example: len(example["fixations"]) > 0).select([0])
    twice = datasets.concatenate_datasets([study, study])
    logs = []
    for batch_size, accumulation in ((2, 1), (1, 2)):
        torch.manual_seed(0)
        model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig())
        if stage == "scanpath":
            model = ScanpathPretraining(model)
        collator = Gaze2ReportCollator(tiny_processor, include_reports=stage == "report")
        logs.append(first_step_log(model, twice, collator, batch_size, accumulation, tmp_path))
    (whole_loss, whole_norm), (accumulated_loss, accumulated_norm) = logs
    assert whole_norm > 0
    assert accumulated_loss == pytest.approx(whole_loss, rel=1e-4)
    assert accumulated_norm == pytest.approx(whole_norm, rel=1e-4)


def test_each_part_logs_its_own_learning_rate(small_dataset, tiny_processor, tmp_path):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig())
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-4,
        lr_scheduler_type="linear",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
    )
    rates = {"gaze_encoder": 1e-3, "projector": 1e-3, "scanpath_predictor": 5e-3}
    trainer = Gaze2ReportTrainer(
        model=model,
        args=args,
        train_dataset=small_dataset["train"].select(range(4)),
        data_collator=Gaze2ReportCollator(tiny_processor),
        part_learning_rates=rates,
    )
    trainer.train()
    [first, second] = [entry for entry in trainer.state.log_history if "learning_rate" in entry]
    for log in (first, second):  # the schedule scales every part alike: 10x and 50x the language model's rate
        assert log["learning_rate/gaze_encoder+projector"] == pytest.approx(10 * log["learning_rate"])
        assert log["learning_rate/scanpath_predictor"] == pytest.approx(50 * log["learning_rate"])
    assert first["learning_rate"] == pytest.approx(1e-4) and second["learning_rate"] == pytest.approx(5e-5)
    # the parts that train at the base rate (vision tower, language model) have no entry of their own
    assert {key for key in first if key.startswith("learning_rate")} == {
        "learning_rate",
        "learning_rate/gaze_encoder+projector",
        "learning_rate/scanpath_predictor",
    }


class StopAt(TrainerCallback):
    """Stops training after `step` optimizer steps, as a killed run would (its last checkpoint survives)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.slow
def test_resume_from_checkpoint_reaches_the_same_weights(small_dataset, tmp_path):
    run_training("tiny", *arguments(tmp_path / "whole", max_steps=4, save_steps=2), dataset=small_dataset)
    interrupted = arguments(tmp_path / "resumed", max_steps=4, save_steps=2)
    run_training("tiny", *interrupted, dataset=small_dataset, callbacks=[StopAt(2)])
    checkpoint = tmp_path / "resumed" / "stage_report" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    interrupted[3].resume_from_checkpoint = str(checkpoint)
    run_training("tiny", *interrupted, dataset=small_dataset)
    whole = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert whole.keys() == resumed.keys() and any("lora_B" in name for name in whole)
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], msg=name)


def record_report_steps(monkeypatch) -> list[tuple[list[str], dict, object]]:
    """Records each stage-2 step as (study ids, model inputs, model outputs): the collator's report batches in order,
    each paired with the forward pass that takes it (the data loader may collate one batch ahead)."""
    collated_ids, steps = [], []
    collate, forward = Gaze2ReportCollator.__call__, Gaze2ReportForConditionalGeneration.forward

    def recording_collate(collator, examples):
        if collator.include_reports:
            collated_ids.append([example["id"] for example in examples])
        return collate(collator, examples)

    def recording_forward(model, **inputs):
        outputs = forward(model, **inputs)
        if inputs.get("labels") is not None:
            steps.append((collated_ids.pop(0), inputs, outputs))
        return outputs

    monkeypatch.setattr(Gaze2ReportCollator, "__call__", recording_collate)
    monkeypatch.setattr(Gaze2ReportForConditionalGeneration, "forward", recording_forward)
    return steps


def test_predicted_gaze_builds_the_graph_from_the_prediction_that_recorded_gaze_supervises(
    small_dataset, tmp_path, monkeypatch
):
    model_args, data_args, recipe, training_args = arguments(tmp_path, max_steps=2)
    data_args.gaze_source = "predicted"
    steps = record_report_steps(monkeypatch)
    run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    assert len(steps) == 2
    for _, inputs, outputs in steps:
        # the trainer runs the language-model head only at the positions whose next token is a label
        assert outputs.logits.shape[0] == int((inputs["labels"][:, 1:] != -100).sum())
        assert not inputs["use_recorded_gaze"].any() and inputs["fixation_mask"].any()
        image = outputs.image_outputs
        torch.testing.assert_close(image.graph_fixations, image.scanpath.fixations)
        assert torch.equal(image.graph_fixation_mask, image.scanpath.fixation_mask)
        assert outputs.scanpath_loss > 0  # the recorded fixations the graph did not read train the predictor


def test_mixed_gaze_builds_each_graph_from_the_source_its_study_drew(small_dataset, tmp_path, monkeypatch):
    model_args, data_args, recipe, training_args = arguments(tmp_path, max_steps=4)  # one epoch of 16 studies
    data_args.gaze_source, data_args.recorded_gaze_probability = "mix", 0.5
    steps = record_report_steps(monkeypatch)
    run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    drawn = {}
    for ids, inputs, outputs in steps:
        recorded = inputs["use_recorded_gaze"].bool()
        assert not (recorded & ~inputs["fixation_mask"].any(-1)).any()  # a study without gaze never draws recorded
        image = outputs.image_outputs
        expected = torch.where(recorded[:, None, None], inputs["fixations"], image.scanpath.fixations)
        torch.testing.assert_close(image.graph_fixations, expected)
        drawn.update(zip(ids, recorded.tolist()))
        assert outputs.scanpath_loss > 0
    assert len(drawn) == 16
    # 16 draws at probability 0.5: both sources occur, in a share within three standard deviations (0.125) of 0.5
    assert 2 <= sum(drawn.values()) <= 14


def test_the_no_gaze_ablation_trains_its_tower_by_the_finding_loss(small_dataset, tmp_path):
    model_args, data_args, recipe, training_args = arguments(tmp_path / "no-gaze", max_steps=2)
    set_seed(training_args.seed)  # run_training builds its model right after this same seeding
    untrained = build_from_preset("tiny", use_gaze=False)[0]
    no_gaze = {"use_gaze": False}
    model, _, _ = run_training("tiny", model_args, data_args, recipe, training_args, no_gaze, dataset=small_dataset)
    assert model.model.scanpath_predictor is None
    # stage 1 gives the no-gaze variant's tower the same finding-loss training, without a predictor; stage 2 keeps it
    weights = load_file(tmp_path / "no-gaze" / "scanpath_stage.safetensors")
    assert weights and all(name.startswith("vision_tower.") for name in weights)
    name = "embeddings.patch_embeddings.projection.weight"
    torch.testing.assert_close(model.model.vision_tower.state_dict()[name], weights[f"vision_tower.{name}"])
    assert not torch.allclose(weights[f"vision_tower.{name}"], untrained.model.vision_tower.state_dict()[name])


def test_a_random_language_model_trains_in_full(small_dataset, tmp_path):
    model_args, data_args, recipe, training_args = arguments(tmp_path, max_steps=2)
    model_args.train_language_model = None  # the default: the tiny preset's language model is random
    set_seed(training_args.seed)  # run_training builds its model right after this same seeding
    before = build_from_preset("tiny")[0].model.language_model.state_dict()
    recipe.stages = "scanpath"
    untouched, _, _ = run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    torch.testing.assert_close(untouched.model.language_model.state_dict(), before)
    recipe.stages = "scanpath,report"
    model, _, _ = run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    after = model.model.language_model.state_dict()
    assert not any("lora" in name for name in after) and after.keys() == before.keys()
    for name in ("layers.0.mlp.down_proj.weight", "layers.1.self_attn.q_proj.weight", "embed_tokens.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert not (tmp_path / "adapter").exists() and (tmp_path / "model" / "model.safetensors").is_file()


def test_bad_data_and_recipe_arguments_are_named(tmp_path, small_dataset):
    with pytest.raises(FileNotFoundError, match="--data_path .*nowhere does not exist"):
        load_training_data(
            DataArguments(data_source="egd-cxr", data_path=str(tmp_path / "nowhere"), image_root=str(tmp_path))
        )
    with pytest.raises(ValueError, match="Unknown data_source 'chexpert'"):
        load_training_data(DataArguments(data_source="chexpert"))
    with pytest.raises(ValueError, match="needs --data_path"):
        load_training_data(DataArguments(data_source="mimic-cxr"))
    model_args, data_args, recipe, training_args = arguments(tmp_path)
    recipe.stages = "scanpath,finetune"
    with pytest.raises(ValueError, match="Unknown stage"):
        run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    model_args, data_args, recipe, training_args = arguments(tmp_path)
    data_args.gaze_source = "imagined"
    with pytest.raises(ValueError, match="--gaze_source must be one of recorded, predicted, mix, got 'imagined'"):
        run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    model_args, data_args, recipe, training_args = arguments(tmp_path)
    with pytest.raises(ValueError, match="Unknown preset 'huge'.*tiny"):
        run_training("huge", model_args, data_args, recipe, training_args, dataset=small_dataset)
    with pytest.raises(ValueError, match="pass them with a preset name"):
        run_training(build_from_preset("tiny"), model_args, data_args, recipe, training_args, {"use_gaze": False})
    with pytest.raises(ValueError, match="a preset name or a \\(model, processor\\) pair, got Gaze2Report"):
        run_training(build_from_preset("tiny")[0], model_args, data_args, recipe, training_args)
    with pytest.raises(ValueError, match="--config_overrides is not valid JSON"):
        main(["--config_overrides", "{use_gaze: false}", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--config_overrides must be a JSON object, got '\\[1\\]'"):
        main(["--config_overrides", "[1]", "--output_dir", str(tmp_path)])


LAUNCHERS = {
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"],
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_on_cpu_keep_identical_replicas(tmp_path, launcher):
    command = [
        sys.executable,
        *LAUNCHERS[launcher],
        str(REPOSITORY_ROOT / "examples" / "train.py"),
        "--preset",
        "tiny",
        "--config_overrides",
        '{"use_fixation_findings": true}',  # the shipped variant: stage 1 trains the graph network and node head too
        "--output_dir",
        str(tmp_path),
        "--num_synthetic_studies",
        "16",
        "--synthetic_image_size",
        "64",
        "--max_steps",
        "3",
        "--scanpath_max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--lora_r",
        "4",
        "--report_to",
        "none",
        "--use_cpu",
        "true",
        "--save_strategy",
        "no",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    check = json.loads((tmp_path / "stage_report" / "replica_check.json").read_text())
    assert len(check["checksums"]) == 2 and check["identical"]
    assert json.loads((tmp_path / "model" / "config.json").read_text())["use_fixation_findings"]


def test_group_by_length_groups_stage_two_by_the_tokens_of_each_report(small_dataset, tmp_path, monkeypatch):
    model_args, data_args, recipe, training_args = arguments(tmp_path, max_steps=4)
    training_args.train_sampling_strategy = "group_by_length"  # stage 1, without reports, samples at random
    seen = []
    collate = Gaze2ReportCollator.__call__

    def recording(collator, examples):
        if collator.include_reports:
            seen.extend((example["report"], example["length"]) for example in examples)
        return collate(collator, examples)

    monkeypatch.setattr(Gaze2ReportCollator, "__call__", recording)
    _, processor, _ = run_training("tiny", model_args, data_args, recipe, training_args, dataset=small_dataset)
    assert len(seen) == 16  # one epoch of the training studies
    for report, length in seen:  # the length Trainer's sampler groups by: the report's tokens, not its characters
        assert length == len(processor.tokenizer(report, add_special_tokens=False)["input_ids"]) != len(report)
