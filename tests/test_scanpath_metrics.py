"""Scanpath metrics on small hand-computed cases, through the plain functions and the `evaluate` script."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pytest

from modeling_gaze2report.evaluation import load_metric
from modeling_gaze2report.evaluation.scanpath_metrics import (
    auc_judd,
    compare_scanpaths,
    dtw_mean_distance,
    edit_similarity,
    levenshtein_distance,
    nss,
    scanmatch_similarity,
)

IMAGE_SIZE = (1000, 800)
PATH = [(100, 100, 0.30), (600, 150, 0.20), (850, 650, 0.45), (300, 700, 0.25), (500, 400, 0.15)]


@pytest.fixture(scope="module")
def scanpath_metric():
    return load_metric("scanpath")


def test_identical_paths_score_perfectly(scanpath_metric):
    as_dicts = [{"x": x, "y": y, "duration": duration} for x, y, duration in PATH]
    result = scanpath_metric.compute(predictions=[as_dicts], references=[as_dicts], image_size=[IMAGE_SIZE])
    for key in ("vector", "direction", "length", "position", "duration"):
        assert result[f"multimatch_{key}"] == pytest.approx(1.0)
    assert result["edit_similarity"] == 1.0
    assert result["scanmatch"] == 1.0
    assert result["dtw_pixels"] == 0.0 and result["dtw_normalized"] == 0.0
    assert result["cc"] == pytest.approx(1.0)
    assert result["kld"] == pytest.approx(0.0, abs=1e-9)
    assert result["auc_judd"] > 0.9 and result["nss"] > 1
    assert result["num_pairs"] == 1 and set(result["skipped_pairs"].values()) == {0}
    assert "pixels" in result["units"]["dtw_pixels"]


def test_shift_by_dx_dy_gives_dtw_equal_to_the_shift_length(scanpath_metric):
    shifted = [(x + 6, y - 8, duration) for x, y, duration in PATH]
    result = scanpath_metric.compute(predictions=[shifted], references=[PATH], image_size=[IMAGE_SIZE])
    assert result["dtw_pixels"] == 10.0
    assert result["dtw_normalized"] == 10.0 / math.hypot(*IMAGE_SIZE)
    assert result["multimatch_vector"] == pytest.approx(1.0)  # same saccades, only displaced


def test_dtw_averages_over_the_warping_path():
    # the single predicted fixation is matched with both recorded ones: distances 3 and 5
    predicted = np.array([[0.0, 0.0, 0.1]])
    recorded = np.array([[3.0, 0.0, 0.1], [0.0, 5.0, 0.1]])
    assert dtw_mean_distance(predicted, recorded) == 4.0


def test_two_fixation_edit_distance_by_hand():
    # 5 x 5 grid of 100 px cells on 500 x 500: predicted cells [0, 4], recorded cells [0, 20] -> 1 substitution
    predicted = np.array([[50.0, 50.0, 0.2], [450.0, 50.0, 0.2]])
    recorded = np.array([[50.0, 50.0, 0.2], [50.0, 450.0, 0.2]])
    assert edit_similarity(predicted, recorded, (500, 500)) == 0.5
    assert levenshtein_distance([0, 1, 2, 3], [2, 3, 4]) == 3
    assert levenshtein_distance([7, 7], [7, 7, 7]) == 1


def test_scanmatch_on_adjacent_cells_by_hand():
    # one 50 ms bin each, adjacent cells (distance 1): substitution 2 - 1 = 1, normalised by 2 * 1
    predicted = np.array([[50.0, 50.0, 0.05]])
    recorded = np.array([[150.0, 50.0, 0.05]])
    assert scanmatch_similarity(predicted, recorded, (500, 500), threshold=2.0) == 0.5


def test_nss_on_a_tiny_map_by_hand():
    saliency = np.array([[0.0, 1.0], [2.0, 3.0]])  # mean 1.5, std sqrt(1.25)
    rows, columns = np.array([0, 1]), np.array([1, 1])  # values 1 and 3
    assert nss(saliency, rows, columns) == pytest.approx(0.5 / math.sqrt(1.25))


@pytest.mark.parametrize(
    "rows,columns,expected",
    [
        ([1], [1], 1.0),  # the top pixel: no false positive before every fixation is found
        ([0], [1], 2 / 3),  # value 1: 3 pixels >= 1, FPR 2/3 at TPR 1 -> 0.5 * 2/3 + 1/3
        ([1, 0], [0, 0], 0.5),  # values 2 and 0: points (0.5, 0.5), (1, 1) -> the diagonal
    ],
)
def test_auc_judd_by_hand(rows, columns, expected):
    saliency = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert auc_judd(saliency, np.array(rows), np.array(columns)) == pytest.approx(expected)


def test_short_paths_skip_multimatch_and_are_counted(scanpath_metric):
    result = scanpath_metric.compute(
        predictions=[PATH, PATH[:2]], references=[PATH, PATH[:2]], image_size=[IMAGE_SIZE, IMAGE_SIZE]
    )
    assert result["skipped_pairs"]["multimatch_vector"] == 1
    assert result["multimatch_vector"] == pytest.approx(1.0)
    assert result["edit_similarity"] == 1.0 and result["skipped_pairs"]["edit_similarity"] == 0


def test_image_size_is_required_and_checked(scanpath_metric):
    with pytest.raises(ValueError, match="image_size is required"):
        scanpath_metric.compute(predictions=[PATH], references=[PATH])
    with pytest.raises(ValueError, match="2 image sizes"):
        scanpath_metric.compute(predictions=[PATH], references=[PATH], image_size=[IMAGE_SIZE, IMAGE_SIZE])
    with pytest.raises(ValueError, match="pair 0: predicted scanpath: fixation 1"):
        compare_bad = [(10, 10, 0.1), (1200, 10, 0.1)]
        scanpath_metric.compute(predictions=[compare_bad], references=[PATH], image_size=[IMAGE_SIZE])
    with pytest.raises(ValueError, match="width, height"):
        compare_scanpaths(PATH, PATH, (1000, 0))
