"""Stage 1 of the recipe ("scanpath"): on the studies with recorded gaze, what the model's gaze losses reach (the
scanpath predictor and, with the fixation-node head, the graph network and that head) and a trainable vision tower;
its weights and the settings it ran with are written beside each other, so a later run into the same folder reuses
stage 1 only with the same settings."""

import hashlib
import json
import logging
from dataclasses import fields
from pathlib import Path

import safetensors.torch
import torch

from ..data import DataSourceArguments, Gaze2ReportCollator
from ..files import write_atomically, write_text_atomically
from .arguments import TrainingPlan
from .trainer import (
    Gaze2ReportTrainer,
    ScanpathPretraining,
    freeze_tower_parameters_without_gradient,
    head_target_options,
    stage_arguments,
)

logger = logging.getLogger(__name__)

SCANPATH_WEIGHTS = "scanpath_stage.safetensors"
SCANPATH_RECORD = "scanpath_stage.json"  # what stage 1 ran with, beside its weights
STAGE_ONE_TRAINING_ARGUMENTS = (  # the Trainer settings stage 1 runs with, beside the recipe's scanpath_* ones
    "seed",
    "gradient_accumulation_steps",
    "weight_decay",
    "max_grad_norm",
    "lr_scheduler_type",
    "warmup_steps",
    "optim",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "bf16",
    "fp16",
    "world_size",
)


def stage_one_parts(model) -> dict[str, torch.nn.Module]:
    """The parts of `model` stage 1 runs and may change, by their name under `model.model`: the vision tower, the
    scanpath predictor and, with the fixation-node head, the graph network and that head. Their state is what
    `scanpath_stage.safetensors` holds."""
    names = ["vision_tower", "scanpath_predictor"] if model.config.use_gaze else ["vision_tower"]
    if model.model.fixation_head is not None:
        names += ["gaze_encoder", "fixation_head"]
    return {name: getattr(model.model, name) for name in names}


def stage_one_state(parts: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": tensor.detach().cpu().contiguous()
        for name, part in parts.items()
        for key, tensor in part.state_dict().items()
    }


def stage_one_record(model, dataset, plan: TrainingPlan) -> dict:
    """What stage 1 runs with, as JSON values: the model's config, the training studies (their number and a digest of
    their ids), the data source, the stage's recipe settings and the Trainer settings it uses."""
    recipe, training_args = plan.recipe, plan.training_args
    ids = json.dumps([str(study_id) for study_id in dataset["id"]])
    record = {
        "config": model.config.to_dict(),
        "studies": {"count": len(dataset), "ids_sha256": hashlib.sha256(ids.encode()).hexdigest()},
        "data": {field.name: getattr(plan.data_args, field.name) for field in fields(DataSourceArguments)},
        "recipe": {
            "train_vision_tower": plan.train_vision_tower,
            "finding_loss_weight": recipe.finding_loss_weight if plan.train_vision_tower else 0.0,
            "scanpath_max_steps": recipe.scanpath_max_steps,
            "scanpath_learning_rate": recipe.scanpath_learning_rate,
            "vision_learning_rate": recipe.vision_learning_rate,
            "scanpath_batch_size": recipe.scanpath_batch_size or training_args.per_device_train_batch_size,
        },
        "training": {name: getattr(training_args, name) for name in STAGE_ONE_TRAINING_ARGUMENTS},
    }
    return json.loads(json.dumps(record, default=str))


def flat_items(record: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    items = {}
    for key, value in record.items():
        if isinstance(value, dict):
            items.update(flat_items(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def check_stage_one_record(weights_path: Path, record: dict) -> None:
    """Refuses to reuse the stage-1 weights at `weights_path` unless the record beside them (SCANPATH_RECORD) shows the
    same settings as `record`, naming the settings that differ and how to proceed."""
    record_path = weights_path.with_name(SCANPATH_RECORD)
    how = f"delete {weights_path} to train stage 1 again with this run's settings, or use another --output_dir"
    if not record_path.is_file():
        raise ValueError(f"{weights_path} has no record of the settings stage 1 ran with ({record_path}); {how}")
    try:
        earlier = json.loads(record_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{record_path} is not a valid stage-1 record ({error}); {how}") from error
    if not isinstance(earlier, dict):
        raise ValueError(f"{record_path} is not a valid stage-1 record (not a JSON object); {how}")
    before, now = flat_items(earlier), flat_items(record)
    differing = [key for key in sorted(before.keys() | now.keys()) if before.get(key) != now.get(key)]
    if differing:
        shown = "; ".join(f"{key} was {before.get(key)!r}, now {now.get(key)!r}" for key in differing[:3])
        more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
        raise ValueError(f"{weights_path} is stage 1 of a run with other settings ({shown}{more}); {how}")


def train_scanpath_stage(model, processor, dataset, plan: TrainingPlan) -> None:
    """Stage 1, or, where `output_dir` holds its weights from an earlier run of this model with the same stage-1
    settings (`stage_one_record`, kept in SCANPATH_RECORD beside the weights), their loading; weights from a run with
    other settings are refused. Only the parts it trains require a gradient while it runs (the projector, the
    language model and, without the fixation-node head, the graph network stay still, so DDP finds no unused
    parameter); afterwards every parameter requires a gradient as before."""
    recipe, training_args = plan.recipe, plan.training_args
    weights_path = Path(training_args.output_dir) / SCANPATH_WEIGHTS
    parts = stage_one_parts(model)
    record = stage_one_record(model, dataset, plan)
    if weights_path.is_file():
        check_stage_one_record(weights_path, record)
        weights, expected = safetensors.torch.load_file(weights_path), stage_one_state(parts)
        if weights.keys() != expected.keys():
            missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
            raise ValueError(
                f"{weights_path} does not hold this model's stage-1 weights (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); delete it to train stage 1 again"
            )
        model.model.load_state_dict(weights, strict=False)
        logger.info(f"Stage 1 already done: loaded {weights_path}")
        return
    pretraining = ScanpathPretraining(model, recipe.finding_loss_weight if plan.train_vision_tower else 0.0)
    if model.config.use_gaze:
        studies = dataset.filter(lambda example: len(example["fixations"]) > 0)
        logger.info(f"Stage 1 (scanpath): {len(studies)} of {len(dataset)} training studies have recorded gaze")
        if len(studies) == 0:
            raise ValueError("Stage 1 (scanpath) needs studies with recorded gaze; this training split has none.")
    else:
        studies = dataset
        logger.info(f"Stage 1 (no gaze): the finding loss trains the vision tower on {len(dataset)} studies")
    # stage 1 reads images of one size and no text: grouping by report length has nothing to save there
    sampling = training_args.train_sampling_strategy
    args = stage_arguments(
        training_args,
        "scanpath",
        max_steps=recipe.scanpath_max_steps,
        learning_rate=recipe.scanpath_learning_rate,
        per_device_train_batch_size=recipe.scanpath_batch_size or training_args.per_device_train_batch_size,
        remove_unused_columns=False,
        save_strategy="no",
        report_to=[],
        train_sampling_strategy="random" if sampling == "group_by_length" else sampling,
    )
    requires_grad = {parameter: parameter.requires_grad for parameter in model.parameters()}
    model.requires_grad_(False)
    for name, part in parts.items():
        part.requires_grad_(name != "vision_tower" or plan.train_vision_tower)
    if model.model.fixation_head is not None:  # it writes into the visual-gaze tokens, which stage 1 does not read
        model.model.fixation_head.finding_embedding.requires_grad_(False)
    freeze_tower_parameters_without_gradient(model.model.vision_tower, model.config)
    target_options = head_target_options(model)  # the stage's own finding classifier reads the study's labels too
    target_options["include_finding_labels"] |= pretraining.finding_classifier is not None
    try:
        trainer = Gaze2ReportTrainer(
            model=pretraining,
            args=args,
            train_dataset=studies,
            data_collator=Gaze2ReportCollator(
                processor,
                include_reports=False,
                **target_options,
            ),
            part_learning_rates={"vision_tower": recipe.vision_learning_rate},
        )
        trainer.train()
    finally:
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)
    if trainer.is_world_process_zero():
        state = stage_one_state(parts)  # the record first: weights without one are never reused
        write_text_atomically(weights_path.with_name(SCANPATH_RECORD), json.dumps(record, indent=2) + "\n")
        write_atomically(weights_path, lambda stream: stream.write(safetensors.torch.save(state)), binary=True)
    trainer.accelerator.wait_for_everyone()
