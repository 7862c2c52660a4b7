"""Scanpath predictor, gaze graph and gaze graph network of Gaze2Report.

Conventions shared by everything here:

- fixations are `(batch, K, 3)` float tensors `(x, y, duration)`: `x` and `y` normalised to `[0, 1]` over the model's
  input image (`x` to the right, `y` down), `duration` in seconds;
- `fixation_mask` is a `(batch, K)` bool tensor marking the real fixations, a valid prefix of the K slots; the values
  in padded slots are ignored (they may be anything, NaN included);
- patch features are a feature map `(batch, C, H, W)` over the vision tower's patch grid; the cell in row `r`, column
  `c` covers `[c / W, (c + 1) / W] x [r / H, (r + 1) / H]` of the image.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import TransformerConv
from transformers.utils import ModelOutput

from .configuration_gaze2report import Gaze2ReportConfig

MIN_FIXATION_DURATION = 0.01
"""Shortest fixation duration in seconds: predicted durations and the log of recorded ones are clamped to it."""
MAX_FIXATION_DURATION = 10.0
"""Longest predicted fixation duration in seconds."""
GAZE_FREE_FIXATION_DURATION = 0.3
"""Duration in seconds of the fixed fixation nodes used when `config.use_gaze` is False."""
NUM_EDGE_TYPES = 5
"""Gaze graph edge types: 0 patch grid, 1 fixation -> next fixation, 2 fixation -> previous fixation,
3 fixation -> nearby patch, 4 patch -> nearby fixation."""


def _check_feature_map(patch_features: torch.Tensor, feature_size: int) -> None:
    if patch_features.dim() != 4 or patch_features.shape[1] != feature_size:
        raise ValueError(
            f"patch_features must be a feature map of shape (batch, {feature_size}, height, width), "
            f"got shape {tuple(patch_features.shape)}"
        )


def _padded_fixations(fixations: torch.Tensor, fixation_mask: torch.Tensor, name: str) -> torch.Tensor:
    """`fixations` with zeros in the padded slots, after checking the shapes and dtypes (no value is read: the
    processor validates the values once, where they come in)."""
    if fixations.dim() != 3 or fixations.shape[-1] != 3 or not fixations.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor of shape (batch, num_fixations, 3) holding (x, y, duration), got "
            f"{fixations.dtype} of shape {tuple(fixations.shape)}"
        )
    if fixation_mask.shape != fixations.shape[:2] or fixation_mask.dtype != torch.bool:
        raise ValueError(
            f"the mask of {name} must be a bool tensor of shape {tuple(fixations.shape[:2])}, got "
            f"{fixation_mask.dtype} of shape {tuple(fixation_mask.shape)}"
        )
    return torch.where(fixation_mask[..., None], fixations, 0.0)


def _cell_centres(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Centres `(x, y)` of the cells of a `height x width` grid over the unit square, row-major: `(H * W, 2)`."""
    rows = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    columns = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    y, x = torch.meshgrid(rows, columns, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)


def _log_durations(durations: torch.Tensor) -> torch.Tensor:
    return durations.clamp(min=MIN_FIXATION_DURATION).log()


def _mlp(in_features: int, hidden_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))


def pool_patch_features(patch_features: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """The feature map `(batch, C, H, W)` average-pooled (adaptive) to a `grid` (a side, or rows and columns):
    `(batch, rows * columns, C)`, cells in row-major order."""
    return F.adaptive_avg_pool2d(patch_features, grid).flatten(2).transpose(1, 2)


@dataclass
class ScanpathPredictorOutput(ModelOutput):
    """
    Output of [`ScanpathPredictor`].

    Args:
        fixations (`torch.FloatTensor` of shape `(batch, K, 3)`):
            Decoded fixations `(x, y, duration)`: the most likely cell plus the predicted offset, and the predicted
            duration clamped to `[MIN_FIXATION_DURATION, MAX_FIXATION_DURATION]` seconds.
        fixation_mask (`torch.BoolTensor` of shape `(batch, K)`):
            Decoded scanpath length as a valid prefix; the first slot is always valid.
        location_logits (`torch.FloatTensor` of shape `(batch, K, H * W)`):
            Logits over the patch cells (row-major) for each fixation slot.
        offsets (`torch.FloatTensor` of shape `(batch, K, 2)`):
            Position `(x, y)` of the fixation inside its cell, in `[0, 1]`.
        log_durations (`torch.FloatTensor` of shape `(batch, K)`):
            Predicted log duration in log seconds.
        validity_logits (`torch.FloatTensor` of shape `(batch, K)`):
            Logit that slot `i` holds a fixation (the scanpath has not ended yet).
        grid_size (`tuple[int, int]`):
            `(H, W)` of the patch grid the locations refer to.
    """

    fixations: torch.FloatTensor | None = None
    fixation_mask: torch.BoolTensor | None = None
    location_logits: torch.FloatTensor | None = None
    offsets: torch.FloatTensor | None = None
    log_durations: torch.FloatTensor | None = None
    validity_logits: torch.FloatTensor | None = None
    grid_size: tuple[int, int] | None = None


@dataclass
class ScanpathLoss(ModelOutput):
    """
    Loss of [`ScanpathPredictor`] against a recorded scanpath, slot `i` matched to recorded fixation `i`.

    Args:
        loss (`torch.FloatTensor` of shape `()`): Sum of the four components.
        location_loss (`torch.FloatTensor` of shape `()`): Cross-entropy over cells, mean over real fixations.
        offset_loss (`torch.FloatTensor` of shape `()`): L1 of the in-cell offset, mean over real fixations and x, y.
        duration_loss (`torch.FloatTensor` of shape `()`): L1 on log seconds, mean over real fixations.
        validity_loss (`torch.FloatTensor` of shape `()`):
            Binary cross-entropy of the validity logits against the mask, mean over all slots of the samples that
            have at least one recorded fixation.
    """

    loss: torch.FloatTensor | None = None
    location_loss: torch.FloatTensor | None = None
    offset_loss: torch.FloatTensor | None = None
    duration_loss: torch.FloatTensor | None = None
    validity_loss: torch.FloatTensor | None = None


class ScanpathPredictor(nn.Module):
    """
    Predicts a radiologist's scanpath from patch features. `K = config.max_fixations` learned slot queries, which
    double as the order embedding (slot `i` always decodes fixation `i`), are decoded in parallel by a transformer
    decoder: self-attention among the slots and cross-attention to the patch features projected to
    `scanpath_hidden_size` plus an MLP of the normalised cell centres (so any `H x W` grid works). Each slot then gives
    logits over the cells (dot product of the slot state with per-cell keys), an in-cell offset, a log duration and a
    validity logit.
    """

    def __init__(self, config: Gaze2ReportConfig, feature_size: int):
        super().__init__()
        hidden_size = config.scanpath_hidden_size
        if hidden_size % config.scanpath_num_heads != 0:
            raise ValueError(
                f"scanpath_hidden_size ({hidden_size}) must be divisible by scanpath_num_heads "
                f"({config.scanpath_num_heads})"
            )
        self.feature_size = feature_size
        self.max_fixations = config.max_fixations
        self.feature_proj = nn.Linear(feature_size, hidden_size)
        self.cell_position = _mlp(2, hidden_size)
        self.slot_queries = nn.Embedding(config.max_fixations, hidden_size)
        decoder_layer = nn.TransformerDecoderLayer(
            hidden_size,
            config.scanpath_num_heads,
            dim_feedforward=4 * hidden_size,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, config.scanpath_num_layers, norm=nn.LayerNorm(hidden_size))
        self.location_query = nn.Linear(hidden_size, hidden_size)
        self.cell_key = nn.Linear(hidden_size, hidden_size)
        self.offset_head = nn.Linear(hidden_size, 2)
        self.duration_head = nn.Linear(hidden_size, 1)
        self.validity_head = nn.Linear(hidden_size, 1)

    def forward(self, patch_features: torch.Tensor) -> ScanpathPredictorOutput:
        """
        Args:
            patch_features (`torch.Tensor` of shape `(batch, feature_size, H, W)`): the vision tower's feature map.

        Decoding is deterministic: cell = argmax of the location logits, `x = (column + offset_x) / W`,
        `y = (row + offset_y) / H`, duration = `exp(log_duration)` clamped to
        `[MIN_FIXATION_DURATION, MAX_FIXATION_DURATION]`, and the mask is the cumulative product of
        `sigmoid(validity_logit) > 0.5` with the first slot forced valid, so a decoded scanpath is never empty.
        """
        _check_feature_map(patch_features, self.feature_size)
        batch_size, _, height, width = patch_features.shape
        cells = patch_features.flatten(2).transpose(1, 2)  # (batch, H * W, feature_size)
        centres = _cell_centres(height, width, patch_features.device, patch_features.dtype)  # (H * W, 2)
        memory = self.feature_proj(cells) + self.cell_position(centres)  # (batch, H * W, hidden)
        queries = self.slot_queries.weight.expand(batch_size, -1, -1)  # (batch, K, hidden)
        slots = self.decoder(queries, memory)  # (batch, K, hidden)

        location_logits = self.location_query(slots) @ self.cell_key(memory).transpose(1, 2)  # (batch, K, H * W)
        location_logits = location_logits / math.sqrt(slots.shape[-1])
        offsets = self.offset_head(slots).sigmoid()  # (batch, K, 2)
        log_durations = self.duration_head(slots).squeeze(-1)  # (batch, K)
        validity_logits = self.validity_head(slots).squeeze(-1)  # (batch, K)

        cell = location_logits.argmax(-1)  # (batch, K)
        x = (cell % width + offsets[..., 0]) / width
        y = (cell // width + offsets[..., 1]) / height
        durations = log_durations.exp().clamp(MIN_FIXATION_DURATION, MAX_FIXATION_DURATION)
        fixations = torch.stack([x, y, durations], dim=-1)  # (batch, K, 3)
        is_valid = validity_logits > 0
        is_valid = torch.cat([torch.ones_like(is_valid[:, :1]), is_valid[:, 1:]], dim=1)
        fixation_mask = is_valid.cumprod(dim=1).bool()  # (batch, K)

        return ScanpathPredictorOutput(
            fixations=fixations,
            fixation_mask=fixation_mask,
            location_logits=location_logits,
            offsets=offsets,
            log_durations=log_durations,
            validity_logits=validity_logits,
            grid_size=(height, width),
        )

    def loss(
        self, output: ScanpathPredictorOutput, target_fixations: torch.Tensor, target_mask: torch.Tensor
    ) -> ScanpathLoss:
        """
        Loss of `output` against recorded fixations `(batch, K, 3)` with mask `(batch, K)`; slot `i` is matched to
        recorded fixation `i`. Padded slots count only in the validity loss, and samples with no recorded fixation
        count nowhere: when no sample has one, every component is exactly 0 and still has a gradient.
        """
        batch_size, num_slots, _ = output.location_logits.shape
        height, width = output.grid_size
        if target_fixations.shape[:2] != (batch_size, num_slots):
            raise ValueError(
                f"target_fixations must have shape ({batch_size}, {num_slots}, 3) to match the prediction, got "
                f"{tuple(target_fixations.shape)}"
            )
        targets = _padded_fixations(target_fixations, target_mask, "target_fixations").float()
        real = target_mask.float()  # (batch, K)
        num_real = real.sum().clamp(min=1)

        column = (targets[..., 0] * width).floor().clamp(max=width - 1)
        row = (targets[..., 1] * height).floor().clamp(max=height - 1)
        target_cell = (row * width + column).long()  # (batch, K)
        target_offsets = torch.stack([targets[..., 0] * width - column, targets[..., 1] * height - row], dim=-1)

        location_loss = F.cross_entropy(
            output.location_logits.float().flatten(0, 1), target_cell.flatten(), reduction="none"
        ).view(batch_size, num_slots)
        location_loss = (location_loss * real).sum() / num_real
        offset_loss = ((output.offsets.float() - target_offsets).abs().mean(-1) * real).sum() / num_real
        duration_error = (output.log_durations.float() - _log_durations(targets[..., 2])).abs()
        duration_loss = (duration_error * real).sum() / num_real
        has_fixation = target_mask.any(dim=1, keepdim=True).float()  # (batch, 1)
        validity_loss = F.binary_cross_entropy_with_logits(output.validity_logits.float(), real, reduction="none")
        validity_loss = (validity_loss * has_fixation).sum() / (has_fixation.sum() * num_slots).clamp(min=1)

        return ScanpathLoss(
            loss=location_loss + offset_loss + duration_loss + validity_loss,
            location_loss=location_loss,
            offset_loss=offset_loss,
            duration_loss=duration_loss,
            validity_loss=validity_loss,
        )


class GazeGraph(NamedTuple):
    """
    A batch of gaze graphs in torch_geometric's flattened layout. Graph `b` holds nodes
    `b * num_nodes_per_graph ...`: first the `P * P` pooled patch nodes in row-major order, then the `K` fixation
    nodes in order.
    """

    edge_index: torch.Tensor  # (2, num_edges) long
    edge_type: torch.Tensor  # (num_edges,) long, see NUM_EDGE_TYPES
    edge_weight: torch.Tensor  # (num_edges,) float
    num_nodes_per_graph: int  # P * P + K


def build_gaze_graph(fixations: torch.Tensor, fixation_mask: torch.Tensor, pool_size: int, radius: float) -> GazeGraph:
    """
    Builds the gaze graphs of a batch of scanpaths over a `pool_size x pool_size` grid of patch nodes; the centre of
    patch node `(r, c)` is `((c + 0.5) / P, (r + 0.5) / P)`. Edges, by type:

    - 0: patch node -> its 4 grid neighbours, weight 1;
    - 1: fixation `i` -> fixation `i + 1` and 2: the reverse, weight 1, only when both are real;
    - 3: fixation -> every patch node whose centre lies within `radius` (distance `d <= radius`, in units of the image
      side), weight `exp(-0.5 * (d / (radius / 2)) ** 2) * duration` (seconds), and 4: the reverse, same weight.

    Padded fixations get no edges at all.
    """
    if not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(f"pool_size must be a positive integer, got {pool_size!r}")
    if not radius > 0:
        raise ValueError(f"radius must be a positive distance in units of the image side, got {radius!r}")
    fixations = _padded_fixations(fixations, fixation_mask, "fixations")
    batch_size, num_slots, _ = fixations.shape
    device = fixations.device
    num_patches = pool_size * pool_size
    num_nodes = num_patches + num_slots
    graph_offsets = torch.arange(batch_size, device=device) * num_nodes  # (batch,)

    patch_index = torch.arange(num_patches, device=device).view(pool_size, pool_size)
    right = torch.stack([patch_index[:, :-1].flatten(), patch_index[:, 1:].flatten()])
    down = torch.stack([patch_index[:-1].flatten(), patch_index[1:].flatten()])
    grid_edges = torch.cat([right, down, right.flip(0), down.flip(0)], dim=1)  # (2, edges per graph)
    grid_edges = (grid_edges[None] + graph_offsets[:, None, None]).transpose(0, 1).flatten(1)  # (2, batch * edges)

    sample, slot = (fixation_mask[:, :-1] & fixation_mask[:, 1:]).nonzero(as_tuple=True)
    current = sample * num_nodes + num_patches + slot
    forward_edges = torch.stack([current, current + 1])

    centres = _cell_centres(pool_size, pool_size, device, fixations.dtype)  # (P * P, 2)
    distances = torch.linalg.vector_norm(fixations[:, :, None, :2] - centres, dim=-1)  # (batch, K, P * P)
    near = fixation_mask[..., None] & (distances <= radius)
    sample, slot, patch = near.nonzero(as_tuple=True)
    near_weight = (-0.5 * (distances[sample, slot, patch] / (radius / 2)) ** 2).exp() * fixations[sample, slot, 2]
    fixation_to_patch = torch.stack([sample * num_nodes + num_patches + slot, sample * num_nodes + patch])

    edges_by_type = [grid_edges, forward_edges, forward_edges.flip(0), fixation_to_patch, fixation_to_patch.flip(0)]
    weights_by_type = [
        fixations.new_ones(grid_edges.shape[1]),
        fixations.new_ones(forward_edges.shape[1]),
        fixations.new_ones(forward_edges.shape[1]),
        near_weight,
        near_weight,
    ]
    edge_type = torch.cat(
        [torch.full((edges.shape[1],), index, device=device) for index, edges in enumerate(edges_by_type)]
    )
    return GazeGraph(
        edge_index=torch.cat(edges_by_type, dim=1),
        edge_type=edge_type,
        edge_weight=torch.cat(weights_by_type),
        num_nodes_per_graph=num_nodes,
    )


class GazeGraphLayer(nn.Module):
    """
    Pre-norm graph transformer block: edge-aware multi-head graph attention (which adds a linear map of the node
    itself, so a node without neighbours is still transformed) and an MLP, each with a residual connection.
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = TransformerConv(hidden_size, hidden_size // num_heads, num_heads, edge_dim=NUM_EDGE_TYPES + 1)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(), nn.Linear(4 * hidden_size, hidden_size)
        )

    def forward(self, node_states: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        node_states = node_states + self.attention(self.attention_norm(node_states), edge_index, edge_attr)
        return node_states + self.mlp(self.mlp_norm(node_states))


class GazeGraphEncoder(nn.Module):
    """
    Turns patch features and a scanpath into `P * P + K` visual-gaze node states with a graph network over the gaze
    graph of [`build_gaze_graph`].

    Patch nodes: a linear map of the feature map average-pooled to `P x P`, plus a learned position embedding.
    Fixation nodes: a linear map of the feature bilinearly sampled at the fixation, plus an MLP of `(x, y)`, an MLP of
    the log duration and an order embedding; padded slots get a learned padding embedding instead. Edges carry
    `[one-hot(edge type), edge weight]`.

    The ablation (`config.use_gaze` False) passes the fixed grid of [`GazeGraphEncoder.gaze_free_fixations`], so the
    node count is unchanged.
    """

    def __init__(self, config: Gaze2ReportConfig, feature_size: int):
        super().__init__()
        hidden_size = config.gnn_hidden_size
        if hidden_size % config.gnn_num_heads != 0:
            raise ValueError(
                f"gnn_hidden_size ({hidden_size}) must be divisible by gnn_num_heads ({config.gnn_num_heads})"
            )
        self.feature_size = feature_size
        self.pool_size = config.patch_pool_size
        self.max_fixations = config.max_fixations
        self.radius = config.fixation_patch_radius
        self.patch_proj = nn.Linear(feature_size, hidden_size)
        self.patch_position = nn.Embedding(self.pool_size**2, hidden_size)
        self.fixation_visual_proj = nn.Linear(feature_size, hidden_size)
        self.fixation_position = _mlp(2, hidden_size)
        self.fixation_duration = _mlp(1, hidden_size)
        self.fixation_order = nn.Embedding(self.max_fixations, hidden_size)
        self.padding_embedding = nn.Parameter(torch.zeros(hidden_size))  # set by the model's _init_weights
        self.layers = nn.ModuleList(
            GazeGraphLayer(hidden_size, config.gnn_num_heads) for _ in range(config.gnn_num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)

    def gaze_free_fixations(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The gaze-free scanpath of the ablation: the first `K` cell centres, row-major, of a `ceil(sqrt(K))` square grid
        over the image, each lasting `GAZE_FREE_FIXATION_DURATION` seconds, all real. Returns fixations
        `(batch_size, K, 3)` and mask `(batch_size, K)`.
        """
        side = math.ceil(math.sqrt(self.max_fixations))
        positions = _cell_centres(side, side, device, dtype)[: self.max_fixations]  # (K, 2)
        durations = positions.new_full((self.max_fixations, 1), GAZE_FREE_FIXATION_DURATION)
        fixations = torch.cat([positions, durations], dim=-1).expand(batch_size, -1, -1)  # (batch, K, 3)
        return fixations, torch.ones(batch_size, self.max_fixations, dtype=torch.bool, device=device)

    def forward(
        self,
        patch_features: torch.Tensor,
        fixations: torch.Tensor,
        fixation_mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            patch_features (`torch.Tensor` of shape `(batch, feature_size, H, W)`): the vision tower's feature map.
            fixations (`torch.Tensor` of shape `(batch, K, 3)`): recorded, predicted or gaze-free fixations.
            fixation_mask (`torch.BoolTensor` of shape `(batch, K)`): real fixations, a valid prefix.

        Returns:
            `torch.Tensor` of shape `(batch, P * P + K, gnn_hidden_size)`: patch node states then fixation node states.
        """
        _check_feature_map(patch_features, self.feature_size)
        batch_size = patch_features.shape[0]
        if fixations is None or fixation_mask is None:
            raise ValueError(
                "GazeGraphEncoder needs fixations and fixation_mask (gaze_free_fixations for the ablation)"
            )
        if fixations.shape[:2] != (batch_size, self.max_fixations):
            raise ValueError(
                f"fixations must have shape ({batch_size}, {self.max_fixations}, 3) (batch, max_fixations, 3), got "
                f"{tuple(fixations.shape)}"
            )
        fixations = _padded_fixations(fixations, fixation_mask, "fixations").to(patch_features.dtype)
        graph = build_gaze_graph(fixations, fixation_mask, self.pool_size, self.radius)

        pooled = pool_patch_features(patch_features, self.pool_size)  # (batch, P * P, C)
        patch_nodes = self.patch_proj(pooled) + self.patch_position.weight  # (batch, P * P, hidden)
        grid = (fixations[..., :2] * 2 - 1).unsqueeze(2)  # (batch, K, 1, 2)
        sampled = F.grid_sample(patch_features, grid, mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled.squeeze(-1).transpose(1, 2)  # (batch, K, C)
        fixation_nodes = (
            self.fixation_visual_proj(sampled)
            + self.fixation_position(fixations[..., :2])
            + self.fixation_duration(_log_durations(fixations[..., 2:]))
            + self.fixation_order.weight
        )  # (batch, K, hidden)
        fixation_nodes = torch.where(fixation_mask[..., None], fixation_nodes, self.padding_embedding)

        node_states = torch.cat([patch_nodes, fixation_nodes], dim=1).flatten(0, 1)  # (batch * num_nodes, hidden)
        edge_attr = torch.cat([F.one_hot(graph.edge_type, NUM_EDGE_TYPES), graph.edge_weight[:, None]], dim=-1)
        edge_attr = edge_attr.to(node_states.dtype)  # (num_edges, NUM_EDGE_TYPES + 1)
        for layer in self.layers:
            node_states = layer(node_states, graph.edge_index, edge_attr)
        return self.norm(node_states).view(batch_size, graph.num_nodes_per_graph, -1)


__all__ = [
    "GazeGraph",
    "GazeGraphEncoder",
    "ScanpathLoss",
    "ScanpathPredictor",
    "ScanpathPredictorOutput",
    "build_gaze_graph",
    "pool_patch_features",
]
