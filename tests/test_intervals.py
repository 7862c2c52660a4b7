"""Intervals over studies (evaluation/intervals.py) on inputs whose answer is known, and the per-study statistics
(evaluation/report_statistics.py) reproducing the metric modules' own values."""

import math
import shutil

import numpy as np
import pytest

from modeling_gaze2report.evaluation.intervals import (
    StudyStatistics,
    bootstrap_interval,
    bootstrap_weights,
    mean_statistics,
    paired_comparison,
    ratio_of_sums,
)

HAS_JAVA = shutil.which("java") is not None


def test_bootstrap_weights_draw_each_resample_from_all_studies():
    weights = bootstrap_weights(num_studies=7, num_resamples=500, seed=3)
    assert weights.shape == (500, 7)
    assert (weights.sum(axis=1) == 7).all()
    assert np.array_equal(weights, bootstrap_weights(7, 500, 3))  # seeded
    assert abs(weights.mean() - 1) < 0.05


def test_interval_of_a_mean_matches_the_normal_approximation():
    scores = np.random.default_rng(0).normal(size=2000)
    interval = bootstrap_interval(mean_statistics(scores), num_resamples=4000)
    half_width = 1.96 * scores.std(ddof=1) / math.sqrt(scores.size)
    assert interval["value"] == pytest.approx(scores.mean())
    assert interval["low"] == pytest.approx(scores.mean() - half_width, abs=0.15 * half_width)
    assert interval["high"] == pytest.approx(scores.mean() + half_width, abs=0.15 * half_width)
    assert interval["num_undefined_resamples"] == 0


def test_interval_of_a_constant_is_the_constant_and_a_ratio_is_recomputed_on_each_resample():
    constant = bootstrap_interval(mean_statistics([0.25] * 10))
    assert constant["value"] == constant["low"] == constant["high"] == 0.25
    # a ratio of sums, not a mean of ratios: study 0 counts 1 of 1, study 1 counts 0 of 3 -> 1/4 overall
    statistics = StudyStatistics(np.array([[1.0, 1.0], [0.0, 3.0]]), ratio_of_sums)
    assert statistics.value() == 0.25
    resampled = statistics.resampled(np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    assert resampled.tolist() == [1.0, 0.0, 0.25]


def test_an_undefined_metric_has_no_interval():
    undefined = StudyStatistics(np.zeros((4, 2)), ratio_of_sums)
    interval = bootstrap_interval(undefined, num_resamples=50)
    assert interval["value"] is None and interval["low"] is None and interval["num_undefined_resamples"] == 50


def test_permutation_p_value_matches_the_exact_distribution():
    # four studies where a beats b by 1 each: of the 16 equally likely swaps, only "none" and "all" reach |1|
    a, b = mean_statistics([1.0, 1.0, 1.0, 1.0]), mean_statistics([0.0, 0.0, 0.0, 0.0])
    comparison = paired_comparison(a, b, num_resamples=20000)
    assert comparison["difference"] == 1.0
    assert comparison["p_value"] == pytest.approx(2 / 16, abs=0.01)
    assert comparison["low"] == comparison["high"] == 1.0  # every resample of these studies differs by 1


def test_identical_systems_differ_by_nothing_and_the_comparison_is_antisymmetric():
    scores = np.random.default_rng(1).random(50)
    same = paired_comparison(mean_statistics(scores), mean_statistics(scores), num_resamples=200)
    assert same["difference"] == same["low"] == same["high"] == 0 and same["p_value"] == 1.0
    other = scores + np.random.default_rng(2).normal(0.1, 0.05, size=50)
    forward = paired_comparison(mean_statistics(other), mean_statistics(scores), num_resamples=500)
    backward = paired_comparison(mean_statistics(scores), mean_statistics(other), num_resamples=500)
    assert forward["difference"] == pytest.approx(-backward["difference"])
    assert forward["low"] == pytest.approx(-backward["high"]) and forward["p_value"] == backward["p_value"]
    assert forward["low"] > 0 and forward["p_value"] < 0.01


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_interval(mean_statistics([1.0]), num_resamples=0), "num_resamples"),
        (lambda: bootstrap_interval(mean_statistics([1.0]), confidence=1.5), "confidence"),
        (lambda: paired_comparison(mean_statistics([1.0]), mean_statistics([1.0, 2.0])), "same studies"),
        (lambda: mean_statistics([[1.0]]), "one score per study"),
        (lambda: StudyStatistics(np.zeros((0, 2)), ratio_of_sums), "num_studies >= 1"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


PREDICTIONS = [
    "Small left pleural effusion. No pneumothorax.",
    "The lungs are clear. Heart size is normal.",
    "Right lower lobe consolidation. Mild cardiomegaly.",
    "There is a 2.2 cm mass in the right lower lobe.",
    "",
    "Endotracheal tube 4 cm above the carina. Bilateral pleural effusions.",
    "Possible left basilar atelectasis. No pleural effusion.",
    "Heart size is normal.",
]
REFERENCES = [
    "Small left pleural effusion.",
    "Mild cardiomegaly. No pneumothorax.",
    "Right lower lobe consolidation. Heart size is normal.",
    "There is a 2.2 cm mass in the right lower lobe. No effusion.",
    "The lungs are clear.",
    "Endotracheal tube 4 cm above the carina. Small right pleural effusion.",
    "Left basilar atelectasis.",
    "Heart size is normal.",
]


@pytest.mark.skipif(not HAS_JAVA, reason="METEOR needs java")
def test_report_statistics_reproduce_the_metric_modules_on_all_studies():
    from modeling_gaze2report.evaluation.report_statistics import report_statistics
    from modeling_gaze2report.reporting import headline_metrics, score_records

    records = [
        {"id": str(index), "generated_report": prediction, "reference_report": reference}
        for index, (prediction, reference) in enumerate(zip(PREDICTIONS, REFERENCES))
    ]
    scores = score_records(records)
    expected = {**headline_metrics(scores), **{f"bleu_{n}": scores["report_nlg"][f"bleu_{n}"] for n in (1, 2, 3)}}
    statistics = report_statistics(PREDICTIONS, REFERENCES)
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor"):  # corpus scores from summed statistics: exact
        assert statistics[name].value() == expected[name], name
    for name in ("rouge_l", "cider", "chexpert_example_f1"):  # means: equal up to the order of summation
        assert statistics[name].value() == pytest.approx(expected[name], rel=1e-12), name
    for name in ("chexpert_micro_f1", "chexpert_macro_f1", "chexpert_exact_match", "laterality_accuracy"):
        assert statistics[name].value() == expected[name], name
    assert statistics["distinct_report_fraction"].value() == expected["distinct_report_fraction"]


@pytest.mark.skipif(not HAS_JAVA, reason="METEOR needs java")
def test_a_resample_is_scored_as_the_metric_modules_score_those_studies():
    from modeling_gaze2report.evaluation.report_statistics import report_statistics
    from modeling_gaze2report.reporting import headline_metrics, score_records

    chosen = [0, 0, 2, 3, 5, 5, 5, 6]  # a bootstrap draw: study 0 twice, study 5 three times
    weights = np.bincount(chosen, minlength=len(PREDICTIONS)).astype(float)[None]  # (1, num_studies)
    statistics = report_statistics(PREDICTIONS, REFERENCES)
    records = [
        {"id": str(index), "generated_report": PREDICTIONS[study], "reference_report": REFERENCES[study]}
        for index, study in enumerate(chosen)
    ]
    expected = headline_metrics(score_records(records))
    for name in ("bleu_4", "meteor", "chexpert_micro_f1", "chexpert_macro_f1", "chexpert_exact_match"):
        assert statistics[name].resampled(weights)[0] == pytest.approx(expected[name], rel=1e-12), name


def test_distinct_reports_are_a_mean_over_studies_that_resampling_does_not_bias():
    from modeling_gaze2report.evaluation.report_statistics import distinct_report_statistics

    reports = ["a", "a", "b", "c"]  # 3 distinct texts over 4 studies
    statistics = distinct_report_statistics(reports)
    assert statistics.value() == 0.75
    # all reports distinct: every resample, duplicates included, keeps the share at 1
    assert bootstrap_interval(distinct_report_statistics(["a", "b", "c", "d"]), num_resamples=200)["low"] == 1.0
    # drawing study 2 ("b") twice and study 3 never counts "b" as one study's full share each time
    assert statistics.resampled(np.array([[1.0, 1.0, 2.0, 0.0]]))[0] == pytest.approx((0.5 + 0.5 + 2) / 4)


def test_report_statistics_computes_only_the_metrics_asked_for():
    from modeling_gaze2report.evaluation.report_statistics import report_statistics

    chosen = report_statistics(PREDICTIONS, REFERENCES, metrics=["bleu_4", "chexpert_micro_f1"])
    assert list(chosen) == ["bleu_4", "chexpert_micro_f1"]
    with pytest.raises(ValueError, match="unknown metric 'bleu_5'"):
        report_statistics(PREDICTIONS, REFERENCES, metrics=["bleu_5"])
