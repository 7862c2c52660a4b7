"""Evaluation of Gaze2Report: report metrics (NLG, clinical efficacy), an offline CheXpert-style labeler and scanpath
metrics. The metrics are `evaluate` scripts shipped inside the package and loaded by local path, never from the Hub.
The literature's model-based metrics (CheXbert F1, BERTScore, RadGraph F1) come from their maintained packages through
`clinical_metrics` (the `clinical-metrics` extra)."""

from pathlib import Path

import evaluate

from modeling_gaze2report.evaluation.clinical_metrics import (
    CLINICAL_METRIC_NAMES,
    MissingWeightsError,
    score_clinical_metrics,
)
from modeling_gaze2report.labeler_gaze2report import LABELER_VERSION, extract_laterality, label_reports

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES = ("report_nlg", "clinical_efficacy", "scanpath")


def load_metric(name):
    """The package's own `evaluate.EvaluationModule` called `name` ("report_nlg", "clinical_efficacy", "scanpath"),
    loaded from its local script (no network access)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"load_metric: unknown metric {name!r}; known metrics are {', '.join(METRIC_NAMES)}")
    return evaluate.load(str(METRICS_DIR / name / f"{name}.py"))


__all__ = [
    "CLINICAL_METRIC_NAMES",
    "LABELER_VERSION",
    "METRIC_NAMES",
    "MissingWeightsError",
    "extract_laterality",
    "label_reports",
    "load_metric",
    "score_clinical_metrics",
]
