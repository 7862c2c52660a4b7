"""LoRA on the language model only; the scanpath predictor, graph network and projector stay fully trainable."""

from peft import LoraConfig, PeftModel, get_peft_model

TRAINED_IN_FULL = ["scanpath_predictor", "gaze_encoder", "projector"]
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "c_attn", "c_proj",
                   "c_fc", "out_proj", "fc1", "fc2", "query_key_value", "dense", "qkv_proj", "Wqkv")


def lora_target_regex(model, target_modules=DEFAULT_TARGETS) -> str:
    """A regex matching only the language model's linear layers whose last name is in `target_modules` (a plain list
    would also match the vision tower's layers of the same name)."""
    names = sorted({name.rsplit(".", 1)[-1] for name, _ in model.model.language_model.named_modules()} & set(target_modules))
    if not names:
        raise ValueError(
            f"None of {list(target_modules)} names a layer of the language model "
            f"({type(model.model.language_model).__name__}); pass target_modules naming its linear layers."
        )
    return rf".*model\.language_model\..*\.({'|'.join(names)})"


def apply_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules=DEFAULT_TARGETS,
               train_vision_tower: bool = False, save_vision_tower: bool = False) -> PeftModel:
    """Wraps `model` with LoRA adapters on the language model's linear layers. The scanpath predictor, graph network
    and projector (and, with `train_vision_tower`, the vision tower) are trained in full and saved with the adapter
    (`modules_to_save`). `save_vision_tower` saves a frozen vision tower with the adapter too: one trained from
    scratch in stage 1 is part of what the adapter must carry."""
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_regex(model, target_modules),
        modules_to_save=TRAINED_IN_FULL
        + (["finding_head"] if model.model.finding_head is not None else [])
        + (["vision_tower"] if train_vision_tower or save_vision_tower else []),
        task_type=None,
    )
    peft_model = get_peft_model(model, config)
    if not train_vision_tower:
        peft_model.get_base_model().model.vision_tower.requires_grad_(False)
    return peft_model
