"""LoRA on the language model only; the scanpath predictor, graph network and projector stay fully trainable.

`apply_lora` returns a `Gaze2ReportLoraModel`, a `peft.PeftModel` that supports what PEFT supports for this
arrangement (save/load, `merge_and_unload`, `unload`, `disable_adapter`, several named adapters switched with
`set_adapter`) and refuses, with the reason, what PEFT cannot do with fully trained modules (`modules_to_save`):
batches that mix adapters, and weighted combinations of adapters."""

from peft import LoraConfig, PeftModel

TRAINED_IN_FULL = ["scanpath_predictor", "gaze_encoder", "projector"]
DEFAULT_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "c_attn",
    "c_proj",
    "c_fc",
    "out_proj",
    "fc1",
    "fc2",
    "query_key_value",
    "dense",
    "qkv_proj",
    "Wqkv",
)
FULLY_TRAINED_REASON = (
    "each Gaze2Report adapter carries its own fully trained scanpath predictor, graph network and projector "
    "(LoRA's modules_to_save), and PEFT can neither switch those per example nor average them"
)


def lora_target_regex(model, target_modules=DEFAULT_TARGETS) -> str:
    """A regex matching only the language model's linear layers whose last name is in `target_modules` (a plain list
    would also match the vision tower's layers of the same name)."""
    names = sorted(
        {name.rsplit(".", 1)[-1] for name, _ in model.model.language_model.named_modules()} & set(target_modules)
    )
    if not names:
        raise ValueError(
            f"None of {list(target_modules)} names a layer of the language model "
            f"({type(model.model.language_model).__name__}); pass target_modules naming its linear layers."
        )
    return rf".*model\.language_model\..*\.({'|'.join(names)})"


def lora_config(
    model,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules=DEFAULT_TARGETS,
    save_vision_tower: bool = False,
) -> LoraConfig:
    """The LoRA configuration of a Gaze2Report model: adapters on the language model's linear layers; the scanpath
    predictor, graph network, projector, the fixation-node head (when the model has one) and, with
    `save_vision_tower`, the vision tower trained in full and saved with the adapter. Also what `add_adapter` takes
    for a second adapter."""
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_regex(model, target_modules),
        modules_to_save=TRAINED_IN_FULL
        + (["fixation_head"] if model.model.fixation_head is not None else [])
        + (["vision_tower"] if save_vision_tower else []),
        task_type=None,
    )


class Gaze2ReportLoraModel(PeftModel):
    """`peft.PeftModel` around a Gaze2Report model. `adapter_names=` (mixed-adapter batches) and
    `add_weighted_adapter` raise a ValueError saying why; everything else is PeftModel's. Load a saved adapter with
    `Gaze2ReportLoraModel.from_pretrained(model, adapter_dir)` (plain `PeftModel.from_pretrained` loads it too)."""

    def forward(self, *args, **kwargs):
        refuse_mixed_adapters(kwargs)
        return super().forward(*args, **kwargs)

    def generate(self, *args, **kwargs):
        refuse_mixed_adapters(kwargs)
        return super().generate(*args, **kwargs)

    def add_weighted_adapter(self, *args, **kwargs):
        raise ValueError(
            f"add_weighted_adapter is not supported: {FULLY_TRAINED_REASON}. Use one adapter at a time "
            "(set_adapter), or merge one into the model (merge_and_unload)."
        )


def refuse_mixed_adapters(kwargs: dict) -> None:
    """Raises for a mixed-adapter batch (`adapter_names=`)."""
    if kwargs.get("adapter_names") is not None:
        raise ValueError(
            f"adapter_names={kwargs['adapter_names']!r}: mixed-adapter batches are not supported: "
            f"{FULLY_TRAINED_REASON}. Run one batch per adapter, choosing it with set_adapter(name)."
        )


def apply_lora(
    model, train_vision_tower: bool = False, save_vision_tower: bool = False, **lora_options
) -> Gaze2ReportLoraModel:
    """Wraps `model` with LoRA adapters on the language model's linear layers: `lora_config(model, **lora_options)`
    (`r`, `alpha`, `dropout`, `target_modules`). The scanpath predictor, graph network and projector (and, with
    `train_vision_tower`, the vision tower) are trained in full and saved with the adapter. `save_vision_tower` saves a
    frozen vision tower with the adapter too: one trained from scratch in stage 1 is part of what the adapter must
    carry."""
    config = lora_config(model, save_vision_tower=train_vision_tower or save_vision_tower, **lora_options)
    peft_model = Gaze2ReportLoraModel(model, config)
    if not train_vision_tower:
        peft_model.get_base_model().model.vision_tower.requires_grad_(False)
    return peft_model
