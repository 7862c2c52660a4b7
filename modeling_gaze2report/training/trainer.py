"""The recipe's loss computations: the Trainer of both stages (a learning rate per part of the model, and the
language-model head run only where a label scores it) and stage 1's objective."""

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Trainer, TrainingArguments

from ..finding_gaze2report import FindingClassifier, finding_loss
from ..vision_gaze2report import encode_patch_features, patch_feature_map, vision_feature_size

logger = logging.getLogger(__name__)


def scored_positions(labels: torch.Tensor) -> torch.BoolTensor:
    """Where the language-model head must run for the loss: the positions of `labels` (batch, sequence) whose next
    token is a label (not -100), as a mask of the same shape."""
    return F.pad(labels[:, 1:] != -100, (0, 1), value=False)


def training_inputs(inputs: dict) -> dict:
    """What a training step passes the model for a batch with `labels`: the language-model head only at
    `scored_positions` (`logits_to_keep`), and no key/value cache (`use_cache=False`: a training step reads none).
    A batch without labels passes as it is."""
    if "labels" not in inputs:
        return inputs
    return {**inputs, "logits_to_keep": scored_positions(inputs["labels"]), "use_cache": False}


def part_parameter_groups(model, part_learning_rates: dict[str, float], learning_rate: float, weight_decay: float):
    """The optimizer's parameter groups: each trainable parameter of `model` at the rate of the first key of
    `part_learning_rates` its name contains, else at `learning_rate`; `weight_decay` on matrices only. Each group
    records the parts it holds (`parts`, joined by "+"); the groups at `learning_rate` come first."""
    groups: dict[tuple[float, float], list] = {}
    parts_at_rate: dict[float, set] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = next((part for part in part_learning_rates if part in name), None)
        rate = learning_rate if part is None else part_learning_rates[part]
        decay = 0.0 if parameter.ndim < 2 else weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
        parts_at_rate.setdefault(rate, set()).add(part)
    ordered = sorted(groups.items(), key=lambda item: item[0][0] != learning_rate)
    return [
        {
            "params": params,
            "lr": rate,
            "weight_decay": decay,
            "parts": "+".join(sorted(part for part in parts_at_rate[rate] if part is not None)),
        }
        for (rate, decay), params in ordered
    ]


def fused_optimizer_supported(groups: list[dict]) -> bool:
    """Whether torch's fused AdamW kernel (one call for every parameter) serves `groups`: all their parameters on
    one CPU or CUDA device and in a floating dtype."""
    parameters = [parameter for group in groups for parameter in group["params"]]
    return (
        len({parameter.device for parameter in parameters}) == 1
        and parameters[0].device.type in ("cpu", "cuda")
        and all(parameter.is_floating_point() for parameter in parameters)
    )


def decoder_layers(language_model: nn.Module) -> list[nn.Module]:
    """The decoder layers of a transformers language model: its modules of the classes in `_no_split_modules`."""
    layer_classes = set(getattr(language_model, "_no_split_modules", None) or ())
    layers = [module for module in language_model.modules() if type(module).__name__ in layer_classes]
    if not layers:
        raise ValueError(
            f"{type(language_model).__name__} names no decoder layer class in _no_split_modules "
            f"({sorted(layer_classes)}): there is nothing to compile"
        )
    return layers


@contextmanager
def compiled_decoder_layers(language_model: nn.Module):
    """Within the block, each decoder layer of `language_model` runs compiled (`torch.compile` with dynamic shapes:
    identical layers share one compiled graph, and batches of other lengths reuse it); after it, they run as before.
    The fused kernels round differently from the eager ones (bfloat16 most), the computation is the same."""
    layers = decoder_layers(language_model)
    for layer in layers:
        layer.compile(dynamic=True)
    try:
        yield layers
    finally:
        for layer in layers:
            layer._compiled_call_impl = None  # what nn.Module.compile set: calls go to the eager forward again


class Gaze2ReportTrainer(Trainer):
    """A Trainer whose optimizer gives each part of the model its own learning rate: parameters whose name contains
    a key of `part_learning_rates` use its value; the rest (the LoRA adapters) use `args.learning_rate`. Its logs
    hold, beside Trainer's `learning_rate` (the rest's), the rate each part with a rate of its own took at the logged
    step (`learning_rate/gaze_encoder+projector`: the parts that share one rate share one entry). A training step
    with labels runs the language-model head only at `scored_positions` (`logits_to_keep`): the loss of every
    position, at a fraction of the cost, and builds no key/value cache (`training_inputs`). The optimizer is AdamW,
    fused into one kernel call where `fused_optimizer_supported`. With `compile_decoder_layers`, `train` runs the
    language model's decoder layers compiled (`compiled_decoder_layers`)."""

    def __init__(
        self, *args, part_learning_rates: dict[str, float] | None = None, compile_decoder_layers: bool = False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.part_learning_rates = part_learning_rates or {}
        self.compile_decoder_layers = compile_decoder_layers

    def train(self, *args, **kwargs):
        if not self.compile_decoder_layers:
            return super().train(*args, **kwargs)
        with compiled_decoder_layers(self.model.get_decoder()):
            return super().train(*args, **kwargs)

    def training_step(self, model, inputs, *args, **kwargs):
        return super().training_step(model, training_inputs(inputs), *args, **kwargs)

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is not None:
            return self.optimizer
        groups = part_parameter_groups(
            self.model, self.part_learning_rates, self.args.learning_rate, self.args.weight_decay
        )
        self.optimizer = torch.optim.AdamW(
            groups,
            betas=(self.args.adam_beta1, self.args.adam_beta2),
            eps=self.args.adam_epsilon,
            fused=fused_optimizer_supported(groups),
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


def head_target_options(model) -> dict[str, bool]:
    """The `Gaze2ReportCollator` options that give `model`'s fixation-node head its targets: with gaze the findings
    seen at each recorded fixation (`include_fixation_findings`), without gaze the study's labels
    (`include_finding_labels`); both False for a model without the head."""
    has_head = model.model.fixation_head is not None
    return {
        "include_fixation_findings": has_head and model.config.use_gaze,
        "include_finding_labels": has_head and not model.config.use_gaze,
    }


class ScanpathPretraining(nn.Module):
    """Stage 1's objective over a Gaze2Report model: the model's own image path (`get_image_features`) on the recorded
    fixations, its gaze losses (`gaze_loss`: the scanpath loss and, with the fixation-node head, the loss of the
    findings seen at the recorded fixations) and, with `finding_loss_weight` > 0, a CheXpert finding loss through a
    [`FindingClassifier`] of this stage only, on the vision tower's patch features: the scanpath loss teaches a vision
    tower where a radiologist looks, the finding loss what is there. A model without gaze (`use_gaze=False`, the
    ablation) has no scanpath loss: the finding loss alone trains its tower, so the ablation's variants get the same
    vision training (and its fixation-node head, if it has one, learns the study's findings)."""

    def __init__(self, model, finding_loss_weight: float = 0.0):
        super().__init__()
        if finding_loss_weight < 0:
            raise ValueError(f"finding_loss_weight must be >= 0, got {finding_loss_weight}")
        if not model.config.use_gaze and not model.config.use_fixation_findings and finding_loss_weight == 0:
            raise ValueError(
                "Stage 1 has nothing to train: the model has no gaze losses (use_gaze=False, no fixation-node head) "
                "and finding_loss_weight is 0"
            )
        self.model = model.model
        self.finding_loss_weight = finding_loss_weight
        self.finding_classifier = None
        if finding_loss_weight > 0:
            self.finding_classifier = FindingClassifier(vision_feature_size(model.config.vision_config))

    def forward(
        self,
        pixel_values,
        fixations=None,
        fixation_mask=None,
        use_recorded_gaze=None,
        finding_labels=None,
        finding_label_mask=None,
        fixation_finding_labels=None,
        fixation_finding_mask=None,
        **prompt_inputs,
    ):
        """The stage's loss (`{"loss": ...}`) from the collator's batch; its prompt (`input_ids`, ...) is not read."""
        if self.model.config.use_gaze and (fixations is None or fixation_mask is None):
            raise ValueError("Stage 1 of a model with gaze needs fixations and fixation_mask")
        image_outputs = self.model.get_image_features(pixel_values, fixations, fixation_mask, use_recorded_gaze)
        loss = self.model.gaze_loss(
            image_outputs,
            fixations,
            fixation_mask,
            fixation_finding_labels,
            fixation_finding_mask,
            finding_labels,
            finding_label_mask,
        ).loss
        if self.finding_classifier is None:
            return {"loss": loss}
        if finding_labels is None or finding_label_mask is None:
            raise ValueError("finding_loss_weight > 0 needs finding_labels and finding_label_mask from the collator")
        patch_features = patch_feature_map(image_outputs.last_hidden_state)  # (batch, channels, height, width)
        logits = self.finding_classifier(patch_features)  # (batch, 14)
        weighted = self.finding_loss_weight * finding_loss(logits, finding_labels, finding_label_mask)
        return {"loss": weighted if loss is None else loss + weighted}


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
