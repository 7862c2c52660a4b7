"""The two-stage training recipe behind `examples/train.py` and `gaze2report demo`.

Stage 1 ("scanpath") trains the vision tower (when trainable) and the scanpath predictor on the studies that have
recorded gaze, with the scanpath loss and, for a trainable vision tower, a CheXpert finding loss (a model without
gaze trains its tower with the finding loss alone, on every study). Stage 2 ("report")
wraps the model with LoRA on the language model and trains the adapters, the gaze graph network, the projector and
the predictor (weighted by `gaze_loss_weight`) on report generation (a randomly initialised language model, as in
the tiny presets, is trained in full instead); the gaze graph is built from recorded gaze, predicted gaze or a mix
(`gaze_source`). Both stages run under `transformers.Trainer`, so `accelerate launch` and `torchrun` work unchanged.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from .data import (
    Gaze2ReportCollator,
    load_egd_cxr,
    load_iu_xray,
    load_mimic_cxr,
    load_reflacx,
    make_synthetic_dataset,
)
from .files import write_text_atomically
from .finding_gaze2report import FindingClassifier, finding_loss
from .lora import DEFAULT_TARGETS, apply_lora
from .precision_gaze2report import language_model_parts, resolve_language_model_dtype
from .presets import build_from_preset, load_preset
from .vision_gaze2report import encode_patch_features, vision_feature_size

logger = logging.getLogger(__name__)

DATA_SOURCES = ("synthetic", "mimic-cxr", "iu-xray", "egd-cxr", "reflacx", "saved")
STAGES = ("scanpath", "report")
SCANPATH_WEIGHTS = "scanpath_stage.safetensors"


@dataclass
class ModelArguments:
    preset: str = field(default="tiny", metadata={"help": "A preset name in configuration/ or a preset JSON path."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Gaze2ReportConfig overrides as JSON, e.g. '{\"max_fixations\": 32}'."}
    )
    use_gaze: bool = field(default=True, metadata={"help": "False trains the no-gaze ablation (same token count)."})
    gaze_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the scanpath loss in stage 2."})
    train_vision_tower: bool | None = field(
        default=None,
        metadata={"help": "Train the vision tower (default: only when the preset's tower is not pretrained)."},
    )
    train_language_model: bool | None = field(
        default=None,
        metadata={
            "help": "Train every weight of the language model instead of LoRA adapters (default: only when the "
            "preset's language model is randomly initialised, where LoRA alone cannot learn a language)."
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
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = field(
        default=",".join(DEFAULT_TARGETS),
        metadata={"help": "Comma-separated layer names; only the language model's layers of these names get LoRA."},
    )


@dataclass
class DataArguments:
    data_source: str = field(default="synthetic", metadata={"help": f"One of {', '.join(DATA_SOURCES)}."})
    data_path: str | None = field(
        default=None,
        metadata={
            "help": "mimic-cxr / iu-xray: annotation.json; egd-cxr / reflacx: the dataset root; saved: a directory "
            "written by DatasetDict.save_to_disk; synthetic: none."
        },
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Images: MIMIC-CXR-JPG 2.0.0 root (mimic-cxr, egd-cxr, reflacx) or IU images."}
    )
    num_synthetic_studies: int = 400
    synthetic_image_size: int = 128
    synthetic_seed: int = 0
    gaze_source: str = field(default="recorded", metadata={"help": "recorded, predicted or mix (stage 2)."})
    recorded_gaze_probability: float = field(default=1.0, metadata={"help": "For gaze_source=mix."})
    labelled_finding_probability: float = field(
        default=0.0,
        metadata={
            "help": "Stage 2 with the finding conditioning: the probability that a study's conditioning "
            "carry its CheXpert labels instead of the classifier's probabilities (teacher forcing, drawn per "
            "study). The language model then learns from clean answers what each one means; generation always "
            "uses the classifier."
        },
    )
    max_report_tokens: int = 160
    strict: bool = field(default=True, metadata={"help": "False: readers skip and count malformed rows."})


@dataclass
class RecipeArguments:
    stages: str = field(default="scanpath,report", metadata={"help": "Comma-separated: scanpath, report."})
    scanpath_max_steps: int = 200
    scanpath_learning_rate: float = 1e-3
    scanpath_batch_size: int | None = field(
        default=None, metadata={"help": "Stage 1 batch size per device; default: --per_device_train_batch_size."}
    )
    finding_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the CheXpert finding loss (the studies' `labels`: blank counts as negative; "
            "uncertain labels and studies without labels are left out). Stage 1: it trains a trainable vision "
            "tower together with the scanpath loss, and the finding classifier of a model with the finding "
            "conditioning (over a frozen tower too). Stage 2, with the conditioning: it keeps training that "
            "classifier beside the report loss. 0 turns it off."
        },
    )
    module_learning_rate: float = field(
        default=5e-4, metadata={"help": "Stage 2 learning rate of the graph network, projector and predictor."}
    )
    vision_learning_rate: float = field(default=2e-4, metadata={"help": "Learning rate of a trained vision tower."})
    report_stage_trains_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Train the vision tower in stage 2 too, by the report loss. Off by default: stage 1 trains "
            "it with the scanpath and finding losses and stage 2 keeps it fixed, so the report loss cannot "
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


def load_training_data(data_args: DataArguments) -> datasets.DatasetDict:
    """The dataset of `data_args.data_source`, in the Gaze2Report schema."""
    source = data_args.data_source
    if source not in DATA_SOURCES:
        raise ValueError(f"Unknown data_source {source!r}; choose one of {', '.join(DATA_SOURCES)}")
    if source == "synthetic":
        return make_synthetic_dataset(
            num_studies=data_args.num_synthetic_studies,
            seed=data_args.synthetic_seed,
            image_size=data_args.synthetic_image_size,
        )
    if data_args.data_path is None:
        raise ValueError(f"data_source {source!r} needs --data_path")
    data_path = Path(data_args.data_path)
    if not data_path.exists():
        raise FileNotFoundError(f"--data_path {data_path} does not exist (data_source {source!r})")
    if source == "saved":
        return datasets.load_from_disk(str(data_path))
    if source != "iu-xray" and data_args.image_root is None:
        raise ValueError(f"data_source {source!r} needs --image_root (the MIMIC-CXR-JPG 2.0.0 root)")
    if data_args.image_root is not None and not Path(data_args.image_root).exists():
        raise FileNotFoundError(f"--image_root {data_args.image_root} does not exist")
    readers = {
        "mimic-cxr": lambda: load_mimic_cxr(data_path, data_args.image_root, strict=data_args.strict),
        "iu-xray": lambda: load_iu_xray(data_path, data_args.image_root, strict=data_args.strict),
        "egd-cxr": lambda: load_egd_cxr(data_path, data_args.image_root, strict=data_args.strict),
        "reflacx": lambda: load_reflacx(data_path, data_args.image_root, strict=data_args.strict),
    }
    dataset, read_report = readers[source]()
    logger.info(read_report.summary())
    return dataset


class ScanpathPretraining(nn.Module):
    """Stage 1: the vision tower and scanpath predictor of a model, trained with the scanpath loss and, with
    `finding_loss_weight` > 0, a CheXpert finding loss. The scanpath loss teaches a vision tower where a radiologist
    looks; the finding loss teaches it what is there, through a [`FindingClassifier`] on the patch features: the
    classifier of the model's finding conditioning when it has one (then it is trained here and kept, even over a
    frozen tower), else a classifier that serves this stage only. A model without gaze (`use_gaze=False`, the
    ablation) has no predictor: the finding loss alone trains it, so that the ablation's variants get the same vision
    training. A model with the fixation-node head (`use_fixation_findings`) also trains its gaze graph network and
    that head here, on the recorded fixations and the findings seen at them (weighted by
    `fixation_finding_loss_weight`)."""

    def __init__(self, model, finding_loss_weight: float = 0.0):
        super().__init__()
        if finding_loss_weight < 0:
            raise ValueError(f"finding_loss_weight must be >= 0, got {finding_loss_weight}")
        self.vision_tower = model.model.vision_tower
        self.scanpath_predictor = model.model.scanpath_predictor  # None without gaze
        if self.scanpath_predictor is None and finding_loss_weight == 0:
            raise ValueError(
                "Stage 1 has nothing to train: the model has no scanpath predictor (use_gaze=False) and "
                "finding_loss_weight is 0"
            )
        self.finding_loss_weight = finding_loss_weight
        model_finding_head = model.model.finding_head
        self.keeps_finding_head = model_finding_head is not None and finding_loss_weight > 0
        self.finding_head = None
        if self.keeps_finding_head:
            self.finding_head = model_finding_head.classifier
        elif finding_loss_weight > 0:
            self.finding_head = FindingClassifier(vision_feature_size(model.config.vision_config))
        self.gaze_encoder = self.fixation_head = None  # trained here only with the fixation-node head
        if model.model.fixation_head is not None:
            self.gaze_encoder = model.model.gaze_encoder
            self.fixation_head = model.model.fixation_head
        self.fixation_finding_loss_weight = model.config.fixation_finding_loss_weight

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that belong to the model (a stage-only finding head left out)."""
        return {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in self.state_dict().items()
            if self.keeps_finding_head or not name.startswith("finding_head.")
        }

    def forward(
        self,
        pixel_values,
        fixations=None,
        fixation_mask=None,
        finding_labels=None,
        finding_label_mask=None,
        fixation_finding_labels=None,
        fixation_finding_mask=None,
        **unused_inputs,
    ):
        patch_features = encode_patch_features(self.vision_tower, pixel_values)  # (batch, channels, height, width)
        loss = patch_features.new_zeros(())
        if self.scanpath_predictor is not None:
            if fixations is None or fixation_mask is None:
                raise ValueError("Stage 1 with a scanpath predictor needs fixations and fixation_mask")
            scanpath = self.scanpath_predictor(patch_features)
            loss = loss + self.scanpath_predictor.loss(scanpath, fixations, fixation_mask).loss
        if self.fixation_head is not None:
            if fixation_finding_labels is None or fixation_finding_mask is None:
                raise ValueError(
                    "Stage 1 with the fixation-node head needs fixation_finding_labels and fixation_finding_mask "
                    "from the collator (include_fixation_findings)"
                )
            node_states = self.gaze_encoder(patch_features, fixations, fixation_mask)  # (batch, nodes, hidden)
            fixation_logits = self.fixation_head(node_states)  # (batch, K, 13)
            fixation_loss = finding_loss(fixation_logits, fixation_finding_labels, fixation_finding_mask)
            loss = loss + self.fixation_finding_loss_weight * fixation_loss
        if self.finding_head is None:
            return {"loss": loss}
        if finding_labels is None or finding_label_mask is None:
            raise ValueError("finding_loss_weight > 0 needs finding_labels and finding_label_mask from the collator")
        stage_finding_loss = finding_loss(self.finding_head(patch_features), finding_labels, finding_label_mask)
        return {"loss": loss + self.finding_loss_weight * stage_finding_loss}


class Gaze2ReportTrainer(Trainer):
    """A Trainer whose optimizer gives each part of the model its own learning rate: parameters whose name contains
    a key of `part_learning_rates` use its value; the rest (the LoRA adapters) use `args.learning_rate`. Its logs
    hold, beside Trainer's `learning_rate` (the rest's), the rate each part with a rate of its own took at the logged
    step (`learning_rate/gaze_encoder+projector`: the parts that share one rate share one entry)."""

    def __init__(self, *args, part_learning_rates: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.part_learning_rates = part_learning_rates or {}

    def training_step(self, model, inputs, *args, **kwargs):
        """Trainer's step, with the language-model head run only at the positions labels score
        (`logits_at_labels_only`)."""
        if "labels" in inputs:
            inputs = {**inputs, "logits_at_labels_only": True}
        return super().training_step(model, inputs, *args, **kwargs)

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is None:
            groups: dict[tuple[float, float], list] = {}
            parts_at_rate: dict[float, set] = {}
            for name, parameter in self.model.named_parameters():
                if not parameter.requires_grad:
                    continue
                part = next((part for part in self.part_learning_rates if part in name), None)
                rate = self.args.learning_rate if part is None else self.part_learning_rates[part]
                decay = 0.0 if parameter.ndim < 2 else self.args.weight_decay
                groups.setdefault((rate, decay), []).append(parameter)
                parts_at_rate.setdefault(rate, set()).add(part)
            # the groups at args.learning_rate come first: Trainer logs the first group's learning rate
            ordered = sorted(groups.items(), key=lambda item: item[0][0] != self.args.learning_rate)
            self.optimizer = torch.optim.AdamW(
                [
                    {
                        "params": params,
                        "lr": rate,
                        "weight_decay": decay,
                        "parts": "+".join(sorted(part for part in parts_at_rate[rate] if part is not None)),
                    }
                    for (rate, decay), params in ordered
                ],
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
        return self.optimizer

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "learning_rate" in logs and self.optimizer is not None:
            # Trainer logs the first group's rate of the step just taken; the schedule scales every group alike
            groups = self.optimizer.param_groups
            base_rate = groups[0].get("initial_lr", groups[0]["lr"])
            for group in groups[1:] if base_rate else ():
                rate = group.get("initial_lr", group["lr"])
                if rate != base_rate:
                    logs[f"learning_rate/{group['parts']}"] = logs["learning_rate"] * rate / base_rate
        super().log(logs, *args, **kwargs)


class ReplicaCheckCallback(TrainerCallback):
    """Under several processes, checks at the end of training that every replica holds the same trainable weights
    and writes the per-rank checksums to `replica_check.json`."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return
        checksum = (
            torch.stack([p.detach().double().sum() for p in model.parameters() if p.requires_grad]).sum().reshape(1)
        )
        gathered = [torch.zeros_like(checksum) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, checksum)
        checksums = [float(value) for value in gathered]
        if state.is_world_process_zero:
            write_text_atomically(
                Path(args.output_dir) / "replica_check.json",
                json.dumps({"checksums": checksums, "identical": len(set(checksums)) == 1}, indent=2),
            )
        if len(set(checksums)) != 1:
            raise RuntimeError(f"Replicas diverged: trainable-weight checksums per rank {checksums}")


def stage_arguments(training_args: TrainingArguments, stage: str, **changes) -> TrainingArguments:
    """The TrainingArguments of one stage: its own output folder under `output_dir`."""
    values = {**training_args.to_dict(), **changes}
    values["output_dir"] = str(Path(training_args.output_dir) / f"stage_{stage}")
    values.pop("push_to_hub_token", None)
    return TrainingArguments(**{k: v for k, v in values.items() if k in TrainingArguments.__dataclass_fields__})


def stage_one_finding_loss_weight(model, recipe: RecipeArguments, train_vision_tower: bool) -> float:
    """The finding loss weight of stage 1: the recipe's where there is something for it to train (a trainable vision
    tower, or the model's own finding classifier), else 0."""
    trains_findings = train_vision_tower or model.model.finding_head is not None
    return recipe.finding_loss_weight if trains_findings else 0.0


def freeze_tower_parameters_without_gradient(vision_tower: nn.Module, config) -> list[str]:
    """Freezes the trainable vision-tower parameters the patch features do not depend on: a pooling head the
    architecture cannot leave out (ConvNeXt's norm of the pooled output, CLIP's post-layernorm, SigLIP's attention
    pooling). DDP fails on parameters that never get a gradient. One probe image of `config`'s size finds them (the
    tower in eval mode, so that no running statistic moves); returns their names."""
    trainable = {name: parameter for name, parameter in vision_tower.named_parameters() if parameter.requires_grad}
    if not trainable:
        return []
    reference = next(iter(trainable.values()))
    probe = torch.zeros(
        1,
        config.vision_config.num_channels,
        config.image_size,
        config.image_size,
        device=reference.device,
        dtype=reference.dtype,
    )  # (1, channels, height, width)
    was_training = vision_tower.training
    vision_tower.eval()
    with torch.enable_grad():
        gradients = torch.autograd.grad(
            encode_patch_features(vision_tower, probe).sum(), list(trainable.values()), allow_unused=True
        )
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


def count_studies_with_gaze(dataset) -> int:
    """The number of studies in `dataset` with at least one recorded fixation."""
    return sum(1 for fixations in dataset["fixations"] if fixations)


def train_scanpath_stage(
    model, processor, dataset, recipe: RecipeArguments, training_args: TrainingArguments, train_vision_tower: bool
) -> None:
    weights_path = Path(training_args.output_dir) / SCANPATH_WEIGHTS
    pretraining = ScanpathPretraining(model, stage_one_finding_loss_weight(model, recipe, train_vision_tower))
    if weights_path.is_file():
        missing, unexpected = pretraining.load_state_dict(load_file(weights_path), strict=False)
        if not pretraining.keeps_finding_head:
            missing = [name for name in missing if not name.startswith("finding_head.")]
        if missing or unexpected:
            raise ValueError(
                f"{weights_path} does not hold this model's stage-1 weights (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); delete it to train stage 1 again"
            )
        logger.info(f"Stage 1 already done: loaded {weights_path}")
        return
    if pretraining.scanpath_predictor is None:
        with_gaze = dataset
        logger.info(f"Stage 1 (no gaze): the finding loss trains the vision tower on {len(dataset)} studies")
    else:
        with_gaze = dataset.filter(lambda example: len(example["fixations"]) > 0)
        logger.info(f"Stage 1 (scanpath): {len(with_gaze)} of {len(dataset)} training studies have recorded gaze")
        if len(with_gaze) == 0:
            raise ValueError("Stage 1 (scanpath) needs studies with recorded gaze; this training split has none.")
    pretraining.vision_tower.requires_grad_(train_vision_tower)
    freeze_tower_parameters_without_gradient(pretraining.vision_tower, model.config)
    # stage 1 reads images of one size and no text: grouping by report length has nothing to save there
    sampling = training_args.train_sampling_strategy
    if sampling == "group_by_length":
        sampling = "random"
    args = stage_arguments(
        training_args,
        "scanpath",
        max_steps=recipe.scanpath_max_steps,
        learning_rate=recipe.scanpath_learning_rate,
        per_device_train_batch_size=recipe.scanpath_batch_size or training_args.per_device_train_batch_size,
        remove_unused_columns=False,
        save_strategy="no",
        report_to=[],
        train_sampling_strategy=sampling,
    )
    trainer = Gaze2ReportTrainer(
        model=pretraining,
        args=args,
        train_dataset=with_gaze,
        data_collator=Gaze2ReportCollator(
            processor,
            include_reports=False,
            include_finding_labels=pretraining.finding_head is not None,
            include_fixation_findings=pretraining.fixation_head is not None,
        ),
        part_learning_rates={"vision_tower": recipe.vision_learning_rate},
    )
    trainer.train()
    if trainer.is_world_process_zero():
        state = pretraining.model_state_dict()
        temporary = weights_path.with_name(f".{weights_path.name}.tmp")
        weights_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(temporary))
        temporary.replace(weights_path)
    trainer.accelerator.wait_for_everyone()


def language_model_dtype(
    model_args: ModelArguments, device: torch.device, train_language_model: bool
) -> tuple[torch.dtype, str]:
    """Stage 2's language-model dtype and the reason for it: `--language_model_dtype` when named, else (auto) the
    device's preferred dtype with LoRA, and float32 for a language model trained in full."""
    if train_language_model:
        if model_args.language_model_dtype not in ("auto", "float32"):
            raise ValueError(
                "--language_model_dtype applies to LoRA training; a language model trained in full stays "
                "float32 (use --bf16 for mixed precision)"
            )
        return torch.float32, "a language model trained in full stays float32"
    return resolve_language_model_dtype(model_args.language_model_dtype, device)


def lower_language_model_precision(peft_model, dtype: torch.dtype) -> dict[tuple[int, str], torch.Tensor]:
    """Casts the language model parts to `dtype`. Returns float32 copies (on the CPU) of their frozen weights, which
    `restore_language_model_precision` puts back so that the merged model keeps the exact pretrained weights rather
    than their rounded copies."""
    frozen_weights = {}
    for index, part in enumerate(language_model_parts(peft_model.get_base_model())):
        for name, parameter in part.named_parameters():
            if not parameter.requires_grad and parameter.dtype == torch.float32:
                frozen_weights[index, name] = parameter.detach().to("cpu", copy=True)
        part.to(dtype)
    return frozen_weights


def restore_language_model_precision(peft_model, frozen_weights: dict[tuple[int, str], torch.Tensor]) -> None:
    """Casts the language model parts back to float32 (the trained adapters with them) and restores their frozen
    weights."""
    with torch.no_grad():
        for index, part in enumerate(language_model_parts(peft_model.get_base_model())):
            part.to(torch.float32)
            for name, parameter in part.named_parameters():
                if (index, name) in frozen_weights:
                    parameter.copy_(frozen_weights[index, name])


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
    with_gaze = count_studies_with_gaze(dataset)
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


def train_report_stage(
    model,
    processor,
    dataset,
    model_args: ModelArguments,
    data_args: DataArguments,
    recipe: RecipeArguments,
    training_args: TrainingArguments,
    own_vision_tower: bool,
    train_vision_tower: bool,
    train_language_model: bool,
    dtype: torch.dtype,
    callbacks=(),
):
    """Stage 2. Returns the trained model (a PeftModel with LoRA, else the model itself; float32 whatever
    `language_model_dtype` it trained in) and the trainer.
    `own_vision_tower`: the tower is not a pretrained checkpoint's (stage 1 trained it), so the adapter must carry it;
    `train_vision_tower`: stage 2 trains it too; `dtype`: the language model's dtype with LoRA
    (`language_model_dtype`)."""
    if train_language_model:
        trained = model.train()
        trained.requires_grad_(True)
        trained.model.vision_tower.requires_grad_(train_vision_tower)
    else:
        trained = apply_lora(
            model,
            r=model_args.lora_r,
            alpha=model_args.lora_alpha,
            dropout=model_args.lora_dropout,
            target_modules=tuple(name.strip() for name in model_args.lora_target_modules.split(",") if name.strip()),
            train_vision_tower=train_vision_tower,
            save_vision_tower=own_vision_tower,
        )
    freeze_tower_parameters_without_gradient(model.model.vision_tower, model.config)
    find_unused_parameters = scanpath_predictor_training(model, dataset)
    frozen_weights = None
    if not train_language_model and dtype != torch.float32:
        frozen_weights = lower_language_model_precision(trained, dtype)
    gaze_source = data_args.gaze_source if model.config.use_gaze else "predicted"
    if data_args.labelled_finding_probability > 0 and model.model.finding_head is None:
        raise ValueError(
            f"--labelled_finding_probability {data_args.labelled_finding_probability} teacher-forces "
            "the finding conditioning; this model has none (config use_finding_conditioning=False)"
        )
    with_finding_labels = model.model.finding_head is not None and (
        model.config.finding_loss_weight > 0 or data_args.labelled_finding_probability > 0
    )
    collator = Gaze2ReportCollator(
        processor,
        gaze_source=gaze_source,
        recorded_gaze_probability=data_args.recorded_gaze_probability if gaze_source == "mix" else 1.0,
        seed=training_args.seed,
        max_report_tokens=data_args.max_report_tokens,
        include_finding_labels=with_finding_labels,
        labelled_finding_probability=data_args.labelled_finding_probability,
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
            "gaze_encoder": recipe.module_learning_rate,
            "projector": recipe.module_learning_rate,
            "finding_head": recipe.module_learning_rate,
            "fixation_head": recipe.module_learning_rate,
            "scanpath_predictor": recipe.module_learning_rate,
            "vision_tower": recipe.vision_learning_rate,
        },
    )
    resume = training_args.resume_from_checkpoint
    if resume is not None and resume.lower() in ("true", "last"):
        resume = True
    trainer.train(resume_from_checkpoint=resume)
    if frozen_weights is not None:
        restore_language_model_precision(trained, frozen_weights)
    return trained, trainer


def write_model_card(
    directory: Path,
    preset: dict,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    metrics: dict | None = None,
) -> None:
    """README.md with Hub metadata: base models, datasets, measured metrics, intended use and limits."""
    base_models = [name for name in (preset.get("vision_model"), preset.get("language_model")) if name]
    dataset_name = data_args.data_source if data_args.data_source != "saved" else Path(data_args.data_path).name
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags:",
        "- gaze2report",
        "- radiology",
        "- chest-x-ray",
        "- report-generation",
        "- eye-tracking",
        "- lora",
    ]
    if base_models:
        lines += ["base_model:"] + [f"- {name}" for name in base_models]
    lines += ["datasets:", f"- {dataset_name}"]
    if metrics:
        lines += [
            "model-index:",
            "- name: gaze2report",
            "  results:",
            "  - task:",
            "      type: image-text-to-text",
            "    dataset:",
            f"      name: {dataset_name}",
            f"      type: {dataset_name}",
            "    metrics:",
        ]
        lines += [
            f"    - name: {name}\n      type: {name}\n      value: {value:.4f}"
            for name, value in metrics.items()
            if isinstance(value, (int, float))
        ]
    lines += [
        "---",
        "",
        "# Gaze2Report model",
        "",
        f"Trained with the Gaze2Report recipe from preset `{model_args.preset}` on `{dataset_name}` "
        f"(use_gaze={model_args.use_gaze}, gaze_source={data_args.gaze_source}, LoRA r={model_args.lora_r}, "
        f"seed={training_args.seed}).",
        "",
        "```python",
        "import modeling_gaze2report  # or trust_remote_code=True where it is not installed",
        "from transformers import pipeline",
        'pipe = pipeline("gaze2report", model="path/to/model")',
        'pipe("chest.dcm")  # [{"report": ..., "scanpath": [{"x", "y", "duration"}, ...]}]',
        "```",
        "",
        "## Intended use",
        "",
        "Research on gaze-guided radiology report generation. Not a medical device: never use its reports or "
        "scanpaths for diagnosis.",
        "",
        "## Limits",
        "",
    ]
    if data_args.data_source == "synthetic":
        lines.append(
            "Trained on Gaze2Report's synthetic chest X-ray phantoms with simulated radiologist gaze: it has "
            "never seen a real radiograph and its reports on real images are meaningless. It demonstrates "
            "the pipeline, nothing clinical."
        )
    else:
        lines.append("Reports can be wrong or incomplete; scanpaths are predictions of one reader population's gaze.")
    if metrics:
        lines += ["", "## Measured", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in metrics.items() if isinstance(value, (int, float))]
    write_text_atomically(directory / "README.md", "\n".join(lines) + "\n")


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    recipe: RecipeArguments,
    training_args: TrainingArguments,
    dataset: datasets.DatasetDict | None = None,
    callbacks=(),
):
    """Runs the recipe; returns `(model, processor, dataset)` with the merged model in eval mode. Writes under
    `output_dir`: `stage_*/` (Trainer checkpoints), `adapter/` (with LoRA) and, with `save_merged`, `model/`."""
    stages = [stage.strip() for stage in recipe.stages.split(",") if stage.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"Unknown stage(s) {sorted(unknown)} in --stages {recipe.stages!r}; use {', '.join(STAGES)}")
    if data_args.gaze_source not in ("recorded", "predicted", "mix"):
        raise ValueError(f"--gaze_source must be recorded, predicted or mix, got {data_args.gaze_source!r}")
    set_seed(training_args.seed)
    dataset = dataset if dataset is not None else load_training_data(data_args)
    if "train" not in dataset:
        raise ValueError(f"The dataset has no train split (splits: {list(dataset)})")
    preset = load_preset(model_args.preset)
    overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    overrides.update(
        use_gaze=model_args.use_gaze,
        gaze_loss_weight=model_args.gaze_loss_weight,
        finding_loss_weight=recipe.finding_loss_weight,
    )
    model, processor = build_from_preset(model_args.preset, **overrides)
    if model_args.attn_implementation is not None:
        model.get_decoder().set_attn_implementation(model_args.attn_implementation)
    train_vision_tower = (
        model_args.train_vision_tower if model_args.train_vision_tower is not None else "vision_model" not in preset
    )
    model.config.freeze_vision_tower = not train_vision_tower
    train_language_model = (
        model_args.train_language_model
        if model_args.train_language_model is not None
        else "language_model" not in preset
    )
    dtype, dtype_reason = language_model_dtype(model_args, training_args.device, train_language_model)  # before stage 1
    logger.info("Stage 2 trains the language model in %s: %s", str(dtype).removeprefix("torch."), dtype_reason)
    finding_stage = stage_one_finding_loss_weight(model, recipe, train_vision_tower) > 0
    if "scanpath" in stages and (model.config.use_gaze or finding_stage):
        train_scanpath_stage(model, processor, dataset["train"], recipe, training_args, train_vision_tower)
    output_dir = Path(training_args.output_dir)
    if "report" not in stages:
        return model.eval(), processor, dataset
    trained, trainer = train_report_stage(
        model,
        processor,
        dataset["train"],
        model_args,
        data_args,
        recipe,
        training_args,
        train_vision_tower,
        train_vision_tower and recipe.report_stage_trains_vision_tower,
        train_language_model,
        dtype,
        callbacks,
    )
    if not train_language_model and trainer.is_world_process_zero():
        trained.save_pretrained(output_dir / "adapter")
        processor.save_pretrained(output_dir / "adapter")
    merged = (trained if train_language_model else trained.merge_and_unload()).eval()
    if recipe.save_merged and trainer.is_world_process_zero():
        merged.save_pretrained(output_dir / "model")
        processor.save_pretrained(output_dir / "model")
        write_model_card(output_dir / "model", preset, model_args, data_args, training_args)
        write_text_atomically(
            output_dir / "training_arguments.json",
            json.dumps(
                {
                    "model": asdict(model_args),
                    "data": asdict(data_args),
                    "recipe": asdict(recipe),
                    "training": training_args.to_dict(),
                },
                indent=2,
                default=str,
            )
            + "\n",
        )
    trainer.accelerator.wait_for_everyone()
    return merged, processor, dataset


def main(argv=None) -> None:
    parser = HfArgumentParser((ModelArguments, DataArguments, RecipeArguments, TrainingArguments))
    model_args, data_args, recipe, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    run_training(model_args, data_args, recipe, training_args)
