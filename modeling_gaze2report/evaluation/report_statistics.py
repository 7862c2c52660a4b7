"""Per-study statistics of the report metrics (`intervals.StudyStatistics`), so that each metric can be recomputed on
any resample of the studies exactly as on all of them: the NLG metrics from pycocoevalcap's own per-pair quantities,
the offline labeler's CheXpert scores from each report's confusion counts, and the model-based metrics from the
per-study outputs their packages give (`clinical_metrics`). The metric modules compute the values themselves; these
statistics reproduce them (tested) and resample them."""

import collections

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from modeling_gaze2report.evaluation.intervals import StudyStatistics, mean_statistics, ratio_of_sums
from modeling_gaze2report.evaluation.meteor import meteor_from_statistics, meteor_statistics
from modeling_gaze2report.evaluation.metrics.clinical_efficacy.clinical_efficacy import (
    binary_labels,
    confusion_counts,
    laterality_matches,
    precision_recall_f1,
)
from modeling_gaze2report.evaluation.metrics.report_nlg.report_nlg import check_inputs, java_available, normalize
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS

BLEU_ORDER = 4
_SMALL, _TINY = 1e-9, 1e-15  # pycocoevalcap's BleuScorer constants


def bleu_statistics(res: dict, gts: dict) -> np.ndarray:
    """(num_pairs, 2 + 2 * BLEU_ORDER): per pair, its length, the closest reference length, the candidate n-grams
    (n = 1..4) and the matched ones, as pycocoevalcap's BleuScorer counts them."""
    scorer = BleuScorer(n=BLEU_ORDER)
    for index in res:
        scorer += (res[index][0], gts[index])
    rows = []
    for comps in scorer.ctest:
        reference_length = scorer._single_reflen(comps["reflen"], "closest", comps["testlen"])
        rows.append([comps["testlen"], reference_length, *comps["guess"], *comps["correct"]])
    return np.array(rows, dtype=np.float64)


def corpus_bleu(sums: np.ndarray, order: int) -> np.ndarray:
    """Corpus BLEU-`order` of summed `bleu_statistics` (..., 2 + 2 * BLEU_ORDER), computed as BleuScorer does."""
    test_length, reference_length = sums[..., 0], sums[..., 1]
    guess, correct = sums[..., 2 : 2 + BLEU_ORDER], sums[..., 2 + BLEU_ORDER :]
    bleu = np.ones_like(test_length)
    for k in range(order):
        bleu = bleu * ((correct[..., k] + _TINY) / (guess[..., k] + _SMALL))
    bleu = bleu ** (1.0 / order)
    ratio = (test_length + _TINY) / (reference_length + _SMALL)
    return np.where(ratio < 1, bleu * np.exp(1 - 1 / np.minimum(ratio, 1)), bleu)


def nlg_statistics(
    predictions, references, normalization: str = "r2gen", with_meteor: bool = True
) -> dict[str, StudyStatistics]:
    """StudyStatistics of bleu_1..bleu_4, meteor (when `with_meteor` and Java is available), rouge_l and cider, on the
    text normalised as `report_nlg` normalises it. CIDEr-D keeps the document frequencies of all the evaluated
    references on every resample (its per-pair scores are averaged)."""
    references = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    check_inputs(predictions, references, normalization)
    res, gts = normalize(predictions, references, normalization)
    bleu = bleu_statistics(res, gts)
    statistics = {
        f"bleu_{order}": StudyStatistics(bleu, lambda sums, order=order: corpus_bleu(sums, order))
        for order in range(1, BLEU_ORDER + 1)
    }
    if with_meteor and java_available():
        statistics["meteor"] = StudyStatistics(meteor_statistics(res, gts), meteor_from_statistics)
    statistics["rouge_l"] = mean_statistics(Rouge().compute_score(gts, res)[1])
    statistics["cider"] = mean_statistics(Cider().compute_score(gts, res)[1])
    return statistics


def _observation_counts(sums: np.ndarray, observations: list[int]) -> np.ndarray:
    """(..., observations, 3) true positives, false positives and false negatives of the chosen observations, from
    summed flattened confusion counts (..., num_observations * 3)."""
    return sums.reshape(*sums.shape[:-1], -1, 3)[..., observations, :]


def _micro_f1(sums: np.ndarray, observations: list[int]) -> np.ndarray:
    counts = _observation_counts(sums, observations).sum(axis=-2)  # (..., 3)
    return precision_recall_f1(counts[..., 0], counts[..., 1], counts[..., 2])[2]


def _macro_f1(sums: np.ndarray, observations: list[int]) -> np.ndarray:
    counts = _observation_counts(sums, observations)  # (..., observations, 3)
    return precision_recall_f1(counts[..., 0], counts[..., 1], counts[..., 2])[2].mean(axis=-1)


def label_statistics(predicted, referenced, subsets: dict[str, list[int]]) -> dict[str, StudyStatistics]:
    """StudyStatistics of micro- and macro-F1 over each subset of observations (name -> column indices of the
    (num_reports, num_observations) binary labels), with a ratio of 0 where its denominator is 0."""
    counts = confusion_counts(predicted, referenced)  # (num_reports, num_observations, 3)
    flat = counts.reshape(len(counts), -1)
    statistics = {}
    for name, observations in subsets.items():
        for average, aggregate in (("micro", _micro_f1), ("macro", _macro_f1)):
            statistics[f"{name}_{average}_f1"] = StudyStatistics(
                flat, lambda sums, aggregate=aggregate, observations=observations: aggregate(sums, observations)
            )
    return statistics


def offline_labeler_statistics(predictions, references, uncertain_as: int = 0) -> dict[str, StudyStatistics]:
    """StudyStatistics of the `clinical_efficacy` headline values: chexpert_micro_f1, chexpert_macro_f1 (14
    observations), chexpert_example_f1, chexpert_exact_match and laterality_accuracy."""
    predicted = binary_labels(predictions, uncertain_as)  # (num_reports, 14)
    referenced = binary_labels(references, uncertain_as)  # (num_reports, 14)
    scores = label_statistics(predicted, referenced, {"chexpert": list(range(len(CHEXPERT_OBSERVATIONS)))})
    per_report = confusion_counts(predicted, referenced).sum(axis=1)  # (num_reports, 3)
    scores["chexpert_example_f1"] = mean_statistics(precision_recall_f1(*per_report.T)[2])
    scores["chexpert_exact_match"] = mean_statistics((predicted == referenced).all(axis=1))
    scores["laterality_accuracy"] = StudyStatistics(laterality_matches(predictions, references), ratio_of_sums)
    return scores


def distinct_report_statistics(predictions) -> StudyStatistics:
    """The share of distinct reports as a mean over studies: each study counts 1 / (the number of studies whose report
    is the same text), so the studies of one text add up to 1. A resample keeps each study's share from all studies
    (drawing a study twice does not make its text look repeated)."""
    counts = collections.Counter(predictions)
    return mean_statistics([1.0 / counts[text] for text in predictions])


NLG_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
LABELER_METRICS = (
    "chexpert_micro_f1",
    "chexpert_macro_f1",
    "chexpert_example_f1",
    "chexpert_exact_match",
    "laterality_accuracy",
)
REPORT_METRICS = (*NLG_METRICS, *LABELER_METRICS, "distinct_report_fraction")


def report_statistics(
    predictions, references, normalization: str = "r2gen", uncertain_as: int = 0, metrics=REPORT_METRICS
) -> dict[str, StudyStatistics]:
    """StudyStatistics of each of `metrics` (names of REPORT_METRICS, `reporting.headline_metrics`' names): NLG, the
    offline labeler's CheXpert scores and the share of distinct reports; only the families asked for are computed
    (METEOR, the slowest, only when asked for and Java is available)."""
    unknown = [name for name in metrics if name not in REPORT_METRICS]
    if unknown:
        raise ValueError(f"report_statistics: unknown metric {unknown[0]!r}; known metrics are {REPORT_METRICS}")
    statistics = {}
    if any(name in NLG_METRICS for name in metrics):
        statistics.update(nlg_statistics(predictions, references, normalization, with_meteor="meteor" in metrics))
    if any(name in LABELER_METRICS for name in metrics):
        statistics.update(offline_labeler_statistics(predictions, references, uncertain_as))
    statistics["distinct_report_fraction"] = distinct_report_statistics(predictions)
    return {name: statistics[name] for name in metrics if name in statistics}


def chexbert_statistics(per_study: dict, observations_14: list[str], observations_5: list[str]) -> dict:
    """StudyStatistics of chexbert_{14,5}_{micro,macro}_f1 from CheXbert's per-report binary labels."""
    subsets = {
        "chexbert_14": list(range(len(observations_14))),
        "chexbert_5": [observations_14.index(name) for name in observations_5],
    }
    return label_statistics(per_study["generated_labels"], per_study["reference_labels"], subsets)
