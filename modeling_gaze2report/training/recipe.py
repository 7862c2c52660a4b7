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

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed

from ..data import Gaze2ReportCollator, load_training_data
from ..files import write_text_atomically
from ..lora import apply_lora
from ..precision_gaze2report import lower_language_model_precision, restore_language_model_precision
from ..presets import build_from_preset
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
from .scanpath_stage import train_scanpath_stage
from .trainer import Gaze2ReportTrainer, freeze_tower_parameters_without_gradient, head_target_options, stage_arguments

logger = logging.getLogger(__name__)


MODULE_PARTS = ("scanpath_predictor", "gaze_encoder", "projector", "fixation_head")  # stage 2's module_learning_rate


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
        **head_target_options(model),
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
        compile_decoder_layers=model_args.compile_decoder_layers,
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
