"""The recipe's arguments, one dataclass per concern; `HfArgumentParser` turns them into command-line options."""

import logging
import math
import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ..data import DataSourceArguments
from ..lora import DEFAULT_TARGETS
from ..precision_gaze2report import training_language_model_dtype

logger = logging.getLogger(__name__)

STAGES = ("scanpath", "report")
GAZE_SOURCES = ("recorded", "predicted", "mix")
NUMBER_RULES = {  # rule -> (what a value must be, the test of a finite number)
    "positive": ("a finite number > 0", lambda value: value > 0),
    "non-negative": ("a finite number >= 0", lambda value: value >= 0),
    "probability": ("a finite number in [0, 1]", lambda value: 0 <= value <= 1),
    "count": ("an integer >= 1", lambda value: isinstance(value, int) and value >= 1),
}
MAX_DEFAULT_DATALOADER_WORKERS = 4


@dataclass
class PresetArguments:
    """The command line's model: a preset and changes to its config. Library callers pass these to `run_training`
    directly (a preset name and a dict), or a built model and processor instead."""

    preset: str = field(default="tiny", metadata={"help": "A preset name in configuration/ or a preset JSON path."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Gaze2ReportConfig overrides as JSON, e.g. '{\"use_gaze\": false}'."}
    )


@dataclass
class ModelArguments:
    train_vision_tower: bool | None = field(
        default=None,
        metadata={"help": "Train the vision tower (default: only when it is not a pretrained checkpoint's)."},
    )
    train_language_model: bool | None = field(
        default=None,
        metadata={
            "help": "Train every weight of the language model instead of LoRA adapters (default: only when it is "
            "randomly initialised, where LoRA alone cannot learn a language)."
        },
    )
    language_model_dtype: str = field(
        default="auto",
        metadata={
            "help": "Stage 2 with LoRA: the dtype (auto, float32, bfloat16, float16) of the frozen language "
            "model and its adapters; the rest of the model stays float32. auto: bfloat16 where the device "
            "multiplies bfloat16 matrices fast (a GPU with bfloat16, a CPU with AVX512-BF16 or AMX), else "
            "float32. The model is cast back to float32 before the adapters are merged and saved."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "The language model's attention (eager, sdpa, flash_attention_2, ...); default: its own."},
    )
    compile_decoder_layers: bool = field(
        default=False,
        metadata={
            "help": "Stage 2: run the language model's decoder layers compiled (torch.compile with dynamic shapes), "
            "the same computation in fused kernels; the first step pays the compilation, which the compiler's disk "
            "cache shortens in later runs."
        },
    )
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = field(
        default=",".join(DEFAULT_TARGETS),
        metadata={"help": "Comma-separated layer names; only the language model's layers of these names get LoRA."},
    )


@dataclass
class DataArguments(DataSourceArguments):
    gaze_source: str = field(default="recorded", metadata={"help": f"Stage 2's gaze graph: {', '.join(GAZE_SOURCES)}."})
    recorded_gaze_probability: float = field(default=1.0, metadata={"help": "For gaze_source=mix."})
    max_report_tokens: int = 160


@dataclass
class RecipeArguments:
    stages: str = field(default="scanpath,report", metadata={"help": f"Comma-separated: {', '.join(STAGES)}."})
    scanpath_max_steps: int = 200
    scanpath_learning_rate: float = 1e-3
    scanpath_batch_size: int | None = field(
        default=None, metadata={"help": "Stage 1 batch size per device; default: --per_device_train_batch_size."}
    )
    finding_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "Stage 1 with a trainable vision tower: the weight of a CheXpert finding loss (the studies' "
            "`labels`: blank counts as negative; uncertain labels and studies without labels are left out) "
            "that teaches the tower what is there, beside the gaze losses. 0 turns it off."
        },
    )
    module_learning_rate: float = field(
        default=5e-4,
        metadata={"help": "Stage 2 learning rate of the scanpath predictor, graph network, projector and node head."},
    )
    vision_learning_rate: float = field(default=2e-4, metadata={"help": "Learning rate of a trained vision tower."})
    report_stage_trains_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Train the vision tower in stage 2 too, by the report loss. Off by default: stage 1 trains "
            "it with the gaze and finding losses and stage 2 keeps it fixed, so the report loss cannot "
            "change the features the language model learns to read (docs/experiments.md)."
        },
    )
    save_merged: bool = field(
        default=True,
        metadata={
            "help": "Write model/ with LoRA merged (loads with from_pretrained and pipeline). The adapter is "
            "always written to adapter/ as well."
        },
    )


@dataclass(frozen=True)
class TrainingPlan:
    """One run of the recipe: its arguments and what they resolve to for the model at hand."""

    model_args: ModelArguments
    data_args: DataArguments
    recipe: RecipeArguments
    training_args: TrainingArguments
    stages: tuple[str, ...]
    train_vision_tower: bool  # stage 1 trains it, and the adapter carries it
    train_language_model: bool  # in full; else LoRA
    language_model_dtype: torch.dtype  # stage 2's, with LoRA


def is_pretrained(sub_config) -> bool:
    """Whether a backbone came from a checkpoint (its config records where from) rather than random weights."""
    return bool(getattr(sub_config, "_name_or_path", ""))


def check_number(option: str, value, rule: str) -> None:
    """Refuses a `value` of command-line option `option` that is not a finite number (bools are none) passing `rule`
    (a NUMBER_RULES name), naming both."""
    wanted, passes = NUMBER_RULES[rule]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and math.isfinite(value) and passes(value)):
        raise ValueError(f"--{option} must be {wanted}, got {value!r}")


def check_arguments(model_args, data_args, recipe, training_args) -> tuple[str, ...]:
    """Checks the recipe's arguments before anything is built: the stages and gaze source by name, and every number
    the recipe and the Trainer use finite and in range (learning rates > 0, weights >= 0, probabilities in [0, 1],
    steps and sizes >= 1). Returns the stages, in order."""
    stages = tuple(stage.strip() for stage in recipe.stages.split(",") if stage.strip())
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"Unknown stage(s) {sorted(unknown)} in --stages {recipe.stages!r}; use {', '.join(STAGES)}")
    if data_args.gaze_source not in GAZE_SOURCES:
        raise ValueError(f"--gaze_source must be one of {', '.join(GAZE_SOURCES)}, got {data_args.gaze_source!r}")
    numbers = [
        ("lora_r", model_args.lora_r, "count"),
        ("lora_alpha", model_args.lora_alpha, "positive"),
        ("lora_dropout", model_args.lora_dropout, "probability"),
        ("recorded_gaze_probability", data_args.recorded_gaze_probability, "probability"),
        ("max_report_tokens", data_args.max_report_tokens, "count"),
        ("scanpath_max_steps", recipe.scanpath_max_steps, "count"),
        ("scanpath_learning_rate", recipe.scanpath_learning_rate, "positive"),
        ("finding_loss_weight", recipe.finding_loss_weight, "non-negative"),
        ("module_learning_rate", recipe.module_learning_rate, "positive"),
        ("vision_learning_rate", recipe.vision_learning_rate, "positive"),
        ("learning_rate", training_args.learning_rate, "positive"),
        ("weight_decay", training_args.weight_decay, "non-negative"),
        ("max_grad_norm", training_args.max_grad_norm, "non-negative"),
        ("num_train_epochs", training_args.num_train_epochs, "positive"),
        ("warmup_steps", training_args.warmup_steps, "non-negative"),
        ("adam_beta1", training_args.adam_beta1, "probability"),
        ("adam_beta2", training_args.adam_beta2, "probability"),
        ("adam_epsilon", training_args.adam_epsilon, "positive"),
        ("label_smoothing_factor", training_args.label_smoothing_factor, "probability"),
        ("per_device_train_batch_size", training_args.per_device_train_batch_size, "count"),
        ("gradient_accumulation_steps", training_args.gradient_accumulation_steps, "count"),
    ]
    if recipe.scanpath_batch_size is not None:
        numbers.append(("scanpath_batch_size", recipe.scanpath_batch_size, "count"))
    if training_args.max_steps != -1:  # -1: num_train_epochs decides
        numbers.append(("max_steps", training_args.max_steps, "count"))
    for option, value, rule in numbers:
        check_number(option, value, rule)
    return stages


def plan_training(model, model_args, data_args, recipe, training_args) -> TrainingPlan:
    """Checks the arguments (`check_arguments`) and resolves their defaults for `model`: the vision tower and the
    language model train (the language model in full) when they are not a pretrained checkpoint's."""
    stages = check_arguments(model_args, data_args, recipe, training_args)
    train_vision_tower = model_args.train_vision_tower
    if train_vision_tower is None:
        train_vision_tower = not is_pretrained(model.config.vision_config)
    train_language_model = model_args.train_language_model
    if train_language_model is None:
        train_language_model = not is_pretrained(model.config.text_config)
    dtype, reason = training_language_model_dtype(
        model_args.language_model_dtype, training_args.device, train_language_model
    )
    logger.info("Stage 2 trains the language model in %s: %s", str(dtype).removeprefix("torch."), reason)
    return TrainingPlan(
        model_args, data_args, recipe, training_args, stages, train_vision_tower, train_language_model, dtype
    )


def default_dataloader_workers(cpus: int, processes: int) -> int:
    """The DataLoader workers each training process gets when `--dataloader_num_workers` is not given: the CPUs each
    of the machine's `processes` training processes has, less the one it trains on, at most
    MAX_DEFAULT_DATALOADER_WORKERS; 0 (images loaded in the training process) when that leaves none."""
    for name, value in (("cpus", cpus), ("processes", processes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return max(0, min(MAX_DEFAULT_DATALOADER_WORKERS, cpus // processes - 1))


def machine_dataloader_workers() -> tuple[int, int, int]:
    """`(workers, cpus, processes)`: `default_dataloader_workers` for the CPUs this process may run on
    (`os.sched_getaffinity`) and the training processes on this machine (LOCAL_WORLD_SIZE, which torchrun and
    `accelerate launch` set; 1 without it)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_world_size = os.environ.get("LOCAL_WORLD_SIZE", "1")
    if not local_world_size.isdigit() or int(local_world_size) < 1:
        raise ValueError(f"The environment variable LOCAL_WORLD_SIZE must be an integer >= 1, got {local_world_size!r}")
    processes = int(local_world_size)
    return default_dataloader_workers(cpus, processes), cpus, processes


def set_default_dataloader_workers(training_args: TrainingArguments) -> None:
    """Sets `training_args.dataloader_num_workers` to `machine_dataloader_workers`' count and logs it with its
    reason."""
    workers, cpus, processes = machine_dataloader_workers()
    training_args.dataloader_num_workers = workers
    logger.info(
        "Images are decoded by %d DataLoader worker(s) per training process (--dataloader_num_workers not given: "
        "%d CPUs for %d training process(es) on this machine, one CPU each kept for training, at most %d workers)",
        workers,
        cpus,
        processes,
        MAX_DEFAULT_DATALOADER_WORKERS,
    )
