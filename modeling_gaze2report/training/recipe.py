"""The two-stage training recipe behind `examples/train.py` and `gaze2report demo`.

Stage 1 ("scanpath") trains, on the studies with recorded gaze, what the model's gaze losses reach (`gaze_loss`: the
scanpath predictor and, with the fixation-node head, the graph network and that head) and a trainable vision tower,
which a CheXpert finding loss also teaches what is there (a model without gaze trains its tower with the finding loss
alone, on every study). Stage 2 ("report") wraps the model with LoRA on the language model and trains the adapters,
the graph network, the projector and the predictor (by the gaze losses) on report generation (a randomly initialised
language model, as in the tiny presets, is trained in full instead); the gaze graph is built from recorded gaze,
predicted gaze or a mix (`gaze_source`). Both stages run under `transformers.Trainer`, so `accelerate launch` and
`torchrun` work unchanged.
"""

import hashlib
import json
import logging
import os
from dataclasses import asdict, fields
from pathlib import Path

import safetensors.torch
import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed

from ..data import DataSourceArguments, Gaze2ReportCollator, load_training_data
from ..files import write_atomically, write_text_atomically
from ..lora import apply_lora
from ..precision_gaze2report import lower_language_model_precision, restore_language_model_precision
from ..presets import build_from_preset
from ..vision_gaze2report import encode_patch_features
from .arguments import (
    DataArguments,
    ModelArguments,
    PresetArguments,
    RecipeArguments,
    TrainingPlan,
    check_arguments,
    plan_training,
    set_default_dataloader_workers,
)
from .callbacks import ReplicaCheckCallback
from .model_card import write_model_card
from .trainer import Gaze2ReportTrainer, ScanpathPretraining

logger = logging.getLogger(__name__)

MODULE_PARTS = ("scanpath_predictor", "gaze_encoder", "projector", "fixation_head")  # stage 2's module_learning_rate
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


def stage_arguments(training_args: TrainingArguments, stage: str, **changes) -> TrainingArguments:
    """The TrainingArguments of one stage: its own output folder under `output_dir`."""
    values = {**training_args.to_dict(), **changes}
    values["output_dir"] = str(Path(training_args.output_dir) / f"stage_{stage}")
    values.pop("push_to_hub_token", None)
    return TrainingArguments(**{k: v for k, v in values.items() if k in TrainingArguments.__dataclass_fields__})


def freeze_tower_parameters_without_gradient(vision_tower: torch.nn.Module, config) -> list[str]:
    """Freezes the trainable vision-tower parameters the patch features do not depend on: a pooling head the
    architecture cannot leave out (ConvNeXt's norm of the pooled output, CLIP's post-layernorm, SigLIP's attention
    pooling). DDP fails on parameters that never get a gradient. One probe image of `config`'s size finds them (the
    tower in eval mode, so that no running statistic moves); returns their names."""
    trainable = {name: parameter for name, parameter in vision_tower.named_parameters() if parameter.requires_grad}
    if not trainable:
        return []
    reference = next(iter(trainable.values()))
    probe = torch.zeros(
        1, config.vision_config.num_channels, config.image_size, config.image_size, device=reference.device
    )  # (1, channels, height, width)
    was_training = vision_tower.training
    vision_tower.eval()
    with torch.enable_grad():
        features = encode_patch_features(vision_tower, probe.to(reference.dtype))
        gradients = torch.autograd.grad(features.sum(), list(trainable.values()), allow_unused=True)
    vision_tower.train(was_training)
    unused = [name for name, gradient in zip(trainable, gradients) if gradient is None]
    for name in unused:
        trainable[name].requires_grad_(False)
    if unused:
        logger.info(
            f"Vision tower: {len(unused)} parameters the patch features do not use are frozen "
            f"({', '.join(unused[:3])}{', ...' if len(unused) > 3 else ''})"
        )
    return unused


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
    try:
        trainer = Gaze2ReportTrainer(
            model=pretraining,
            args=args,
            train_dataset=studies,
            data_collator=Gaze2ReportCollator(
                processor,
                include_reports=False,
                include_finding_labels=pretraining.finding_classifier is not None,
                include_fixation_findings=model.model.fixation_head is not None,
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


def report_lengths(processor, dataset) -> list[int]:
    """The number of tokens of each study's report: what `--train_sampling_strategy group_by_length` sorts on, so that
    the reports of a batch are of about one length and little of it is padding."""
    return [len(ids) for ids in processor.tokenizer(list(dataset["report"]), add_special_tokens=False)["input_ids"]]


def scanpath_predictor_training(model, dataset) -> bool | None:
    """Stage 2 trains the scanpath predictor only through the scanpath loss on recorded fixations (the graph reads its
    predictions detached). With no recorded gaze in `dataset` it is frozen. Returns what DDP's
    `find_unused_parameters` must be: True when only some studies have gaze (a batch without any leaves the predictor
    without a gradient), else None (Trainer's default)."""
    if not model.config.use_gaze:
        return None
    with_gaze = sum(1 for fixations in dataset["fixations"] if fixations)
    if with_gaze == 0:
        model.model.scanpath_predictor.requires_grad_(False)
        logger.info("Stage 2: no training study has recorded gaze; the scanpath predictor is frozen")
        return None
    if with_gaze < len(dataset):
        logger.info(
            f"Stage 2: {with_gaze} of {len(dataset)} training studies have recorded gaze; batches without "
            "any leave the scanpath predictor without a gradient, so DDP looks for unused parameters"
        )
        return True
    return None


def train_report_stage(model, processor, dataset, plan: TrainingPlan, callbacks=()):
    """Stage 2. Returns the trained model (a PeftModel with LoRA, else the model itself; float32 whatever
    `language_model_dtype` it trained in) and the trainer."""
    model_args, recipe, training_args = plan.model_args, plan.recipe, plan.training_args
    trains_vision_tower = plan.train_vision_tower and recipe.report_stage_trains_vision_tower
    if plan.train_language_model:
        trained = model.train()
        trained.requires_grad_(True)
        model.model.vision_tower.requires_grad_(trains_vision_tower)
    else:
        trained = apply_lora(
            model,
            r=model_args.lora_r,
            alpha=model_args.lora_alpha,
            dropout=model_args.lora_dropout,
            target_modules=tuple(name.strip() for name in model_args.lora_target_modules.split(",") if name.strip()),
            train_vision_tower=trains_vision_tower,
            save_vision_tower=plan.train_vision_tower,  # stage 1 trained it: the adapter must carry it
        )
    freeze_tower_parameters_without_gradient(model.model.vision_tower, model.config)
    find_unused_parameters = scanpath_predictor_training(model, dataset)
    frozen_weights = None
    if not plan.train_language_model and plan.language_model_dtype != torch.float32:
        frozen_weights = lower_language_model_precision(model, plan.language_model_dtype)
    gaze_source = plan.data_args.gaze_source if model.config.use_gaze else "predicted"
    collator = Gaze2ReportCollator(
        processor,
        gaze_source=gaze_source,
        recorded_gaze_probability=plan.data_args.recorded_gaze_probability if gaze_source == "mix" else 1.0,
        seed=training_args.seed,
        max_report_tokens=plan.data_args.max_report_tokens,
        include_fixation_findings=model.model.fixation_head is not None,
    )
    args = stage_arguments(
        training_args,
        "report",
        remove_unused_columns=False,
        label_names=["labels"],
        ddp_find_unused_parameters=training_args.ddp_find_unused_parameters
        if training_args.ddp_find_unused_parameters is not None
        else find_unused_parameters,
    )
    if args.train_sampling_strategy == "group_by_length" and args.length_column_name not in dataset.column_names:
        dataset = dataset.add_column(args.length_column_name, report_lengths(processor, dataset))
    trainer = Gaze2ReportTrainer(
        model=trained,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[ReplicaCheckCallback(), *callbacks],
        part_learning_rates={
            **dict.fromkeys(MODULE_PARTS, recipe.module_learning_rate),
            "vision_tower": recipe.vision_learning_rate,
        },
    )
    resume = training_args.resume_from_checkpoint
    if resume is not None and resume.lower() in ("true", "last"):
        resume = True
    trainer.train(resume_from_checkpoint=resume)
    if frozen_weights is not None:
        restore_language_model_precision(model, frozen_weights)
    return trained, trainer


def run_training(
    model,
    model_args: ModelArguments,
    data_args: DataArguments,
    recipe: RecipeArguments,
    training_args: TrainingArguments,
    config_overrides: dict | None = None,
    dataset=None,
    callbacks=(),
    model_card: bool = True,
):
    """Runs the recipe on `model`: a preset name or path (built with `config_overrides`, right after seeding), or a
    built `(model, processor)` pair. Returns `(model, processor, dataset)` with the merged model in eval mode.

    Writes under `output_dir`: `scanpath_stage.safetensors` (stage 1's weights) and `scanpath_stage.json` (what it
    ran with): a second run into the same folder with the same stage-1 settings loads them instead of training stage 1
    again, one with other settings is refused, `stage_*/` (Trainer checkpoints), `adapter/` (with LoRA) and, with
    `save_merged`, `model/` with its model card (`model_card=False` leaves the card to the caller, who may add
    measured numbers: `write_model_card`) and `training_arguments.json`.

    Both stages load their images in `training_args.dataloader_num_workers` DataLoader workers, as given (the command
    line's `main` sets `default_dataloader_workers` when the option is not given)."""
    check_arguments(model_args, data_args, recipe, training_args)
    set_seed(training_args.seed)
    if isinstance(model, (str, os.PathLike)):
        source = f"preset `{model}`"
        model, processor = build_from_preset(str(model), **(config_overrides or {}))
    elif isinstance(model, tuple) and len(model) == 2:
        if config_overrides:
            raise ValueError("config_overrides change what a preset builds; pass them with a preset name")
        source = "a given model"
        model, processor = model
    else:
        raise ValueError(f"run_training takes a preset name or a (model, processor) pair, got {type(model).__name__}")
    plan = plan_training(model, model_args, data_args, recipe, training_args)
    if model_args.attn_implementation is not None:
        model.get_decoder().set_attn_implementation(model_args.attn_implementation)
    model.config.freeze_vision_tower = not plan.train_vision_tower
    dataset = dataset if dataset is not None else load_training_data(data_args)
    if "train" not in dataset:
        raise ValueError(f"The dataset has no train split (splits: {list(dataset)})")
    trains_findings = plan.train_vision_tower and recipe.finding_loss_weight > 0
    if "scanpath" in plan.stages and (model.config.use_gaze or trains_findings):
        train_scanpath_stage(model, processor, dataset["train"], plan)
    if "report" not in plan.stages:
        return model.eval(), processor, dataset
    trained, trainer = train_report_stage(model, processor, dataset["train"], plan, callbacks)
    output_dir = Path(training_args.output_dir)
    if not plan.train_language_model and trainer.is_world_process_zero():
        trained.save_pretrained(output_dir / "adapter")
        processor.save_pretrained(output_dir / "adapter")
    merged = (trained if plan.train_language_model else trained.merge_and_unload()).eval()
    if recipe.save_merged and trainer.is_world_process_zero():
        merged.save_pretrained(output_dir / "model")
        processor.save_pretrained(output_dir / "model")
        if model_card:
            write_model_card(output_dir / "model", merged.config, source, data_args, training_args)
        record = {
            "model": {"source": source, "config_overrides": config_overrides or {}, **asdict(model_args)},
            "data": asdict(data_args),
            "recipe": asdict(recipe),
            "training": training_args.to_dict(),
        }
        write_text_atomically(output_dir / "training_arguments.json", json.dumps(record, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    return merged, processor, dataset


def dataloader_workers_given(parser: HfArgumentParser, argv) -> bool:
    """Whether the command line `argv` sets --dataloader_num_workers (its parsed value, 0 by default, cannot tell an
    explicit 0 from none)."""
    parser.set_defaults(dataloader_num_workers=None)
    try:
        return parser.parse_known_args(args=argv)[0].dataloader_num_workers is not None
    finally:
        parser.set_defaults(dataloader_num_workers=TrainingArguments.dataloader_num_workers)


def main(argv=None) -> None:
    """The command line of `examples/train.py` and `gaze2report train`. Without --dataloader_num_workers, images are
    decoded in `default_dataloader_workers` DataLoader workers per training process; a given count, 0 included, is
    kept."""
    parser = HfArgumentParser((PresetArguments, ModelArguments, DataArguments, RecipeArguments, TrainingArguments))
    workers_given = dataloader_workers_given(parser, argv)
    preset_args, model_args, data_args, recipe, training_args = parser.parse_args_into_dataclasses(args=argv)
    try:
        config_overrides = json.loads(preset_args.config_overrides or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"--config_overrides is not valid JSON: {error}") from error
    if not isinstance(config_overrides, dict):
        raise ValueError(f"--config_overrides must be a JSON object, got {preset_args.config_overrides!r}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not workers_given:
        set_default_dataloader_workers(training_args)
    run_training(preset_args.preset, model_args, data_args, recipe, training_args, config_overrides)
