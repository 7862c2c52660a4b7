"""Evaluation of Gaze2Report: report metrics (NLG, clinical efficacy), an offline CheXpert-style labeler and scanpath
metrics, the metrics shipped as local `evaluate` scripts."""

from modeling_gaze2report.evaluation.labeler import LABELER_VERSION, extract_laterality, label_reports
