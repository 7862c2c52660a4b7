"""Clinical efficacy: CheXpert-style labels of generated and reference reports compared, as an `evaluate` metric.

Both sides are labelled with `modeling_gaze2report.evaluation.label_reports` (14 observations, "No Finding"
included). Blank (not mentioned) becomes 0 and uncertain (-1) becomes `uncertain_as` (0, the R2Gen-family default,
or 1). On the resulting binary labels:
- micro: true/false positives and false negatives pooled over all reports and the 14 observations;
- macro_14 / macro_5: precision, recall and F1 of each observation (F1 from that observation's precision and recall),
  averaged over the 14, or over the 5 CheXpert competition observations;
- example-based (PromptMRG): precision, recall and F1 of each report over its 14 labels, averaged over reports;
- per_observation: precision, recall, F1 and support (reference positives) of each observation.
A ratio whose denominator is 0 counts as 0 (scikit-learn's `zero_division=0`).
`laterality_accuracy`: over (report, observation) pairs positive (1) in both prediction and reference whose
reference side is "left", "right" or "bilateral", the fraction where the predicted side is the same; None when there
are no such pairs (`laterality_support` gives their number).
"""

import datasets
import evaluate
import numpy as np

from modeling_gaze2report.labeler_gaze2report import LABELER_VERSION, extract_laterality, label_reports
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS

COMPETITION_OBSERVATIONS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

_CITATION = """\
@inproceedings{irvin2019chexpert, title={CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and
  Expert Comparison}, author={Irvin, Jeremy and others}, booktitle={AAAI}, year={2019}}
@inproceedings{jin2024promptmrg, title={PromptMRG: Diagnosis-Driven Prompts for Medical Report Generation},
  author={Jin, Haibo and others}, booktitle={AAAI}, year={2024}}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): generated reports.
    references (`list[str]`): reference reports.
    uncertain_as (`int`): 0 (default) or 1, the binary value of an uncertain (-1) label.
Returns:
    micro_{precision,recall,f1}, macro_14_{...}, macro_5_{...}, example_{...}, per_observation, laterality_accuracy,
    laterality_support, num_reports, protocol.
"""


def _ratio(numerator, denominator):
    """Elementwise numerator / denominator with 0 where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def precision_recall_f1(true_positives, false_positives, false_negatives):
    precision = _ratio(true_positives, true_positives + false_positives)
    recall = _ratio(true_positives, true_positives + false_negatives)
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def binary_labels(reports, uncertain_as):
    """`(num_reports, 14)` 0/1 array: blank -> 0, uncertain -> `uncertain_as`."""
    mapping = {None: 0, 0: 0, 1: 1, -1: uncertain_as}
    labels = label_reports(reports)
    return np.array([[mapping[report_labels[name]] for name in CHEXPERT_OBSERVATIONS] for report_labels in labels])


def laterality_matches(predictions, references):
    """(num_reports, 2) array: per report, the findings positive in both with a reference side whose predicted side
    is the same, and the number of such findings."""
    predicted_labels, reference_labels = label_reports(predictions), label_reports(references)
    counts = []
    for prediction, reference, predicted, referenced in zip(
        predictions, references, predicted_labels, reference_labels
    ):
        predicted_sides, reference_sides = extract_laterality(prediction), extract_laterality(reference)
        compared = [
            name
            for name in CHEXPERT_OBSERVATIONS
            if predicted[name] == 1 and referenced[name] == 1 and reference_sides[name] is not None
        ]
        counts.append([sum(predicted_sides[name] == reference_sides[name] for name in compared), len(compared)])
    return np.array(counts, dtype=np.int64).reshape(len(counts), 2)


def confusion_counts(predicted, referenced):
    """(num_reports, num_observations, 3): true positives, false positives and false negatives of each report's
    binary labels `predicted` against `referenced` (both (num_reports, num_observations))."""
    predicted, referenced = np.asarray(predicted), np.asarray(referenced)
    return np.stack([predicted * referenced, predicted * (1 - referenced), (1 - predicted) * referenced], axis=-1)


def clinical_efficacy(predictions, references, uncertain_as=0):
    if uncertain_as not in (0, 1) or isinstance(uncertain_as, bool):
        raise ValueError(f"clinical_efficacy: uncertain_as={uncertain_as!r}; expected the integer 0 or 1")
    if len(predictions) != len(references):
        raise ValueError(f"clinical_efficacy: {len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("clinical_efficacy: no reports to score")
    predicted = binary_labels(predictions, uncertain_as)  # (num_reports, 14)
    referenced = binary_labels(references, uncertain_as)  # (num_reports, 14)
    true_positives, false_positives, false_negatives = np.moveaxis(confusion_counts(predicted, referenced), -1, 0)

    results = {}
    micro = precision_recall_f1(true_positives.sum(), false_positives.sum(), false_negatives.sum())
    per_observation = precision_recall_f1(true_positives.sum(0), false_positives.sum(0), false_negatives.sum(0))
    per_report = precision_recall_f1(true_positives.sum(1), false_positives.sum(1), false_negatives.sum(1))
    competition = [CHEXPERT_OBSERVATIONS.index(name) for name in COMPETITION_OBSERVATIONS]
    for name, (precision, recall, f1) in (
        ("micro", micro),
        ("macro_14", [values.mean() for values in per_observation]),
        ("macro_5", [values[competition].mean() for values in per_observation]),
        ("example", [values.mean() for values in per_report]),
    ):
        results.update(
            {f"{name}_precision": float(precision), f"{name}_recall": float(recall), f"{name}_f1": float(f1)}
        )
    results["exact_match"] = float((predicted == referenced).all(axis=1).mean())
    support = referenced.sum(0)
    results["per_observation"] = {
        name: {
            "precision": float(per_observation[0][index]),
            "recall": float(per_observation[1][index]),
            "f1": float(per_observation[2][index]),
            "support": int(support[index]),
        }
        for index, name in enumerate(CHEXPERT_OBSERVATIONS)
    }
    matched, compared = laterality_matches(predictions, references).sum(axis=0)
    results["laterality_accuracy"] = float(matched / compared) if compared else None
    results["laterality_support"] = int(compared)
    results["num_reports"] = len(predictions)
    results["protocol"] = {
        "labeler": LABELER_VERSION,
        "observations": list(CHEXPERT_OBSERVATIONS),
        "competition_observations": list(COMPETITION_OBSERVATIONS),
        "uncertain_as": uncertain_as,
        "blank_as": 0,
        "zero_division": 0,
        "example_based": "per-report precision/recall/F1 over the 14 labels, averaged over reports (PromptMRG)",
        "exact_match": "fraction of reports whose 14 labels all equal the reference's",
    }
    return results


class ClinicalEfficacy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, uncertain_as=0):
        return clinical_efficacy(predictions, references, uncertain_as)
