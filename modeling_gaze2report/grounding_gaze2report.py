"""Grounding: which predicted fixations support each sentence of a generated report.

The rule: a sentence is labelled with the project's CheXpert-style labeler; for each finding it names as present
(label 1; negated and uncertain mentions ground nothing), its supporting fixations are those whose fixation-node
head (config `use_fixation_findings`) gives that finding a probability of at least `GROUNDING_THRESHOLD`, or, when
none does, the one fixation that gives it the highest probability. A sentence's fixations are the union over its
findings, in scanpath order; a sentence that names no present finding ("The heart is normal in size.") has none.
"""

import torch

from .labeler_gaze2report import label_reports, report_sentences
from .observations import FINDING_OBSERVATIONS

GROUNDING_THRESHOLD = 0.5


def ground_report(report: str, fixation_probabilities: torch.Tensor) -> list[dict]:
    """One entry per sentence of `report`: `{"sentence": str, "fixations": [indices into the scanpath]}`.

    Args:
        report: the generated report.
        fixation_probabilities (`torch.Tensor` of shape `(num_fixations, 13)`): the fixation-node head's probability
            of each finding (`FINDING_OBSERVATIONS`) at each valid fixation of the predicted scanpath, in order.
    """
    if not isinstance(report, str):
        raise ValueError(f"ground_report: report must be a string, got {type(report).__name__}")
    check_fixation_probabilities(fixation_probabilities)
    sentences = report_sentences(report)
    grounding = []
    for sentence, labels in zip(sentences, label_reports(sentences)):
        supporting = set()
        for index, name in enumerate(FINDING_OBSERVATIONS):
            if labels[name] != 1 or len(fixation_probabilities) == 0:
                continue
            probabilities = fixation_probabilities[:, index]  # (num_fixations,)
            above = (probabilities >= GROUNDING_THRESHOLD).nonzero().flatten().tolist()
            supporting.update(above or [int(probabilities.argmax())])
        grounding.append({"sentence": sentence, "fixations": sorted(supporting)})
    return grounding


def check_fixation_probabilities(fixation_probabilities) -> None:
    """Refuses what is no (num_fixations, 13) floating-point tensor of probabilities: another shape (a count of
    findings other than `FINDING_OBSERVATIONS`'), NaN or infinite values, or values outside [0, 1] (logits, which the
    sigmoid turns into probabilities)."""
    if not isinstance(fixation_probabilities, torch.Tensor) or not fixation_probabilities.is_floating_point():
        raise ValueError(
            "ground_report: fixation_probabilities must be a floating-point torch.Tensor, got "
            f"{getattr(fixation_probabilities, 'dtype', type(fixation_probabilities).__name__)}"
        )
    if fixation_probabilities.dim() != 2 or fixation_probabilities.shape[1] != len(FINDING_OBSERVATIONS):
        raise ValueError(
            f"ground_report: fixation_probabilities must have shape (num_fixations, {len(FINDING_OBSERVATIONS)}), "
            f"got {tuple(fixation_probabilities.shape)}"
        )
    if not torch.isfinite(fixation_probabilities).all():
        raise ValueError("ground_report: fixation_probabilities hold NaN or infinite values")
    if fixation_probabilities.numel() and not (0 <= fixation_probabilities.min() <= fixation_probabilities.max() <= 1):
        raise ValueError(
            "ground_report: fixation_probabilities must lie in [0, 1], got values from "
            f"{float(fixation_probabilities.min()):g} to {float(fixation_probabilities.max()):g}; for logits, pass "
            "their sigmoid"
        )


__all__ = ["GROUNDING_THRESHOLD", "check_fixation_probabilities", "ground_report"]
