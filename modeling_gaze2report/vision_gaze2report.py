"""The vision tower of Gaze2Report: any `AutoModel` vision backbone, built without unused heads, with its last hidden
state read as a patch feature map."""

import inspect

import torch
from torch import nn
from transformers import AutoModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING


def vision_feature_size(vision_config) -> int:
    """Channels of the vision tower's last feature map: `hidden_sizes[-1]` for CNNs (ResNet, ConvNeXt), else
    `hidden_size` (ViT, DINOv2, SigLIP, Swin)."""
    hidden_sizes = getattr(vision_config, "hidden_sizes", None)
    return hidden_sizes[-1] if hidden_sizes else vision_config.hidden_size


def build_vision_tower(vision_config) -> nn.Module:
    """The vision tower for `vision_config`, without its pooling head where the architecture can leave it out (ViT,
    DeiT, ...): the model reads only the last hidden state, and a pooler that never gets a gradient makes DDP fail."""
    tower_class = MODEL_MAPPING[type(vision_config)] if type(vision_config) in MODEL_MAPPING else None
    if tower_class is not None and "add_pooling_layer" in inspect.signature(tower_class.__init__).parameters:
        return AutoModel.from_config(vision_config, add_pooling_layer=False)
    return AutoModel.from_config(vision_config)


def load_vision_weights(vision_tower: nn.Module, checkpoint: nn.Module, source: str) -> None:
    """Copies a pretrained tower's weights into `vision_tower` (or into its `vision_model`, for CLIP- and SigLIP-style
    towers). The checkpoint may hold more (the pooling head the tower is built without); a weight the tower needs and
    the checkpoint lacks is a ValueError naming `source`."""
    weights = checkpoint.state_dict()
    target = vision_tower
    if not set(target.state_dict()) <= set(weights) and hasattr(vision_tower, "vision_model"):
        target = vision_tower.vision_model
    missing = sorted(set(target.state_dict()) - set(weights))
    if missing:
        raise ValueError(
            f"{source}: the vision checkpoint lacks {len(missing)} weights of the tower (e.g. {', '.join(missing[:3])})"
        )
    target.load_state_dict({name: weights[name] for name in target.state_dict()})


def encode_patch_features(vision_tower: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Images -> the vision tower's patch feature map (batch, channels, height, width). CNN towers already give a map;
    token towers give (batch, prefix + side * side, channels), whose leading prefix tokens (CLS, registers) are
    dropped: the grid side is the integer square root of the token count, which holds while the prefix is shorter
    than 2 * side + 1."""
    return patch_feature_map(vision_tower(pixel_values=pixel_values, return_dict=True).last_hidden_state)


def patch_feature_map(last_hidden_state: torch.Tensor) -> torch.Tensor:
    """A vision tower's last hidden state as the patch feature map (batch, channels, height, width)."""
    if last_hidden_state.dim() == 4:
        return last_hidden_state
    batch, num_tokens, channels = last_hidden_state.shape
    side = int(num_tokens**0.5)
    grid_tokens = last_hidden_state[:, num_tokens - side * side :]  # (batch, side * side, channels)
    return grid_tokens.transpose(1, 2).reshape(batch, channels, side, side)


__all__ = [
    "build_vision_tower",
    "encode_patch_features",
    "load_vision_weights",
    "patch_feature_map",
    "vision_feature_size",
]
