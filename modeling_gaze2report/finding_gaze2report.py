"""What is seen where: the fixation-node head of Gaze2Report (config `use_fixation_findings`), which says what is seen
at each fixation of the gaze graph, the CheXpert classifier that stage 1 trains a vision tower with, and their loss."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from .configuration_gaze2report import Gaze2ReportConfig
from .observations import CHEXPERT_OBSERVATIONS, FINDING_OBSERVATIONS


class FindingClassifier(nn.Module):
    """CheXpert logits of an image from its patch feature map: a linear layer scores every patch for each of the 14
    observations and log-sum-exp pooling over the patches gives the image's logits, so that a finding anywhere makes
    the image positive and the evidence stays in the patch features."""

    def __init__(self, feature_size: int):
        super().__init__()
        self.patch_scores = nn.Linear(feature_size, len(CHEXPERT_OBSERVATIONS))

    def forward(self, patch_features: torch.Tensor) -> torch.Tensor:
        patch_scores = self.patch_scores(patch_features.flatten(2).transpose(1, 2))  # (batch, patches, 14)
        return torch.logsumexp(patch_scores, dim=1) - math.log(patch_scores.shape[1])  # (batch, 14)


def finding_loss(finding_logits: torch.Tensor, finding_labels: torch.Tensor, finding_label_mask: torch.Tensor):
    """Binary cross-entropy of finding logits (batch, 14), or (batch, fixations, 13) at the fixation nodes, against
    the collator's targets of that shape, averaged over the targets `finding_label_mask` keeps (a mask of the same
    shape, or (batch, fixations) to keep or drop a fixation's targets together)."""
    if finding_label_mask.dim() < finding_logits.dim():
        finding_label_mask = finding_label_mask[..., None].expand_as(finding_logits)
    per_label = F.binary_cross_entropy_with_logits(
        finding_logits, finding_labels.to(finding_logits.dtype), reduction="none"
    )
    return (per_label * finding_label_mask).sum() / finding_label_mask.sum().clamp(min=1)


def study_finding_targets(
    finding_labels: torch.Tensor, finding_label_mask: torch.Tensor, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixation-node head's targets in a model without gaze: the study's labels of the 13 findings
    (`FINDING_OBSERVATIONS`, taken from `finding_labels` (batch, 14) in `CHEXPERT_OBSERVATIONS` order) at each of
    `num_nodes` gaze-free nodes; returns the targets and their mask (`finding_label_mask`'s), (batch, num_nodes, 13)
    each."""
    columns = [CHEXPERT_OBSERVATIONS.index(name) for name in FINDING_OBSERVATIONS]
    targets = finding_labels[:, None, columns].expand(-1, num_nodes, -1)  # (batch, num_nodes, 13)
    known = finding_label_mask[:, None, columns].expand(-1, num_nodes, -1)  # (batch, num_nodes, 13)
    return targets, known


class FixationFindingHead(nn.Module):
    """What is seen at each fixation of the gaze graph, written into the fixation's visual-gaze token: `scores` gives
    the logits of the 13 findings (`FINDING_OBSERVATIONS`) from the graph network's fixation node states, and
    `finding_embedding` maps their probabilities to a vector added to the fixation's token (its columns start as the
    findings' names, `embed_finding_names`), so a fixation that sees an effusion carries " pleural effusion" to the
    language model, in scanpath order. In a model without gaze the same head sits on the gaze-free nodes and says
    what the study shows (`study_finding_targets`)."""

    def __init__(self, config: Gaze2ReportConfig):
        super().__init__()
        self.num_patch_nodes = config.patch_pool_size**2  # the graph's nodes and tokens: patches, then fixations
        self.scores = nn.Linear(config.gnn_hidden_size, len(FINDING_OBSERVATIONS))
        self.finding_embedding = nn.Linear(len(FINDING_OBSERVATIONS), config.text_config.hidden_size, bias=False)

    def forward(self, node_states: torch.Tensor) -> torch.Tensor:
        """The graph network's node states (batch, patch nodes + fixations, gnn_hidden_size) -> the fixation nodes'
        logits (batch, fixations, 13)."""
        return self.scores(node_states[:, self.num_patch_nodes :])

    def write_findings(
        self, gaze_tokens: torch.Tensor, logits: torch.Tensor, fixation_mask: torch.Tensor
    ) -> torch.Tensor:
        """`gaze_tokens` (batch, patch nodes + fixations, text_hidden_size) with the embedding of each real fixation's
        finding probabilities (`logits` (batch, fixations, 13)) added to its token; patch tokens and padded slots
        (`fixation_mask` False) get nothing."""
        probabilities = torch.sigmoid(logits) * fixation_mask[..., None].to(logits.dtype)  # (batch, fixations, 13)
        written = self.finding_embedding(probabilities.to(self.finding_embedding.weight.dtype))
        patch_tokens, fixation_tokens = gaze_tokens[:, : self.num_patch_nodes], gaze_tokens[:, self.num_patch_nodes :]
        return torch.cat([patch_tokens, fixation_tokens + written], dim=1)

    @torch.no_grad()
    def embed_finding_names(self, input_embeddings: nn.Embedding, tokenizer) -> None:
        """Sets each column of `finding_embedding` to the finding's name under `tokenizer` (`name_embeddings`)."""
        self.finding_embedding.weight.copy_(name_embeddings(FINDING_OBSERVATIONS, input_embeddings, tokenizer))


@torch.no_grad()
def name_embeddings(names, input_embeddings: nn.Embedding, tokenizer) -> torch.Tensor:
    """(hidden_size, len(names)): per column, a name in lower case (" pleural effusion"): the mean input embedding of
    its tokens under `tokenizer`."""
    columns = []
    for name in names:
        token_ids = tokenizer(" " + name.lower(), add_special_tokens=False)["input_ids"]
        columns.append(input_embeddings.weight[token_ids].float().mean(dim=0))
    return torch.stack(columns, dim=1)


__all__ = ["FindingClassifier", "FixationFindingHead", "finding_loss", "name_embeddings", "study_finding_targets"]
