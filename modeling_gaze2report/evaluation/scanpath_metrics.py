"""Scanpath similarity between a predicted and a recorded scanpath, in original image pixels and seconds.

Every function takes fixations as an `(n, 3)` array-like of `(x, y, duration)` rows, or a list of
`{"x", "y", "duration"}` dicts, with `x` in `[0, width]`, `y` in `[0, height]` and `duration >= 0` seconds.

- MultiMatch (Jarodzka et al. 2010; Dewhurst et al. 2012) through the `multimatch-gaze` package, screen size = the
  image size, no simplification (`grouping=False`): vector, direction, length, position, duration similarities in
  [0, 1]. It needs at least 3 fixations in both paths; shorter pairs get NaN and are counted as skipped.
- Edit similarity: both paths become strings of cells of a `grid` (columns, rows; default 5 x 5) over the image;
  similarity = 1 - Levenshtein(pred, ref) / max(len(pred), len(ref)).
- ScanMatch (Cristino et al. 2010): each fixation's cell is repeated `round(duration / temporal_bin)` times
  (temporal binning, default bin 0.05 s, rounding half up; a fixation shorter than half a bin disappears as in the
  ScanMatch toolbox); Needleman-Wunsch with substitution score `threshold - distance(cell_a, cell_b)` (cell distance
  in grid units, the toolbox's `abs(d - max d) - (max d - threshold)`; default threshold 2.0 cells) and gap score 0;
  the score is divided by `threshold * max(len_a, len_b)`, so identical paths score 1.
- DTW: dynamic time warping over the Euclidean distances between fixations (in pixels); the optimal path minimises
  the summed distance; reported as the mean distance along that path, in pixels and divided by the image diagonal.
- Saliency: the predicted fixations become a map of duration-weighted isotropic Gaussian blobs (sigma =
  `sigma_fraction` x image width, default 0.05) sampled on a `map_width`-pixel-wide grid (default 64, height keeping
  the aspect ratio). Against the recorded fixations: NSS (mean of the standardised map at the recorded fixation
  cells) and AUC-Judd (MIT saliency benchmark, without its random jitter); against the recorded map made the same way:
  CC (Pearson) and KLD (KL(recorded || predicted), both normalised to sum 1, epsilon 2.2e-16 as in the benchmark).
"""

import math

import numpy as np
from multimatch_gaze import docomparison

MULTIMATCH_KEYS = ("vector", "direction", "length", "position", "duration")
EPSILON = 2.220446049250313e-16


def as_fixation_array(fixations, image_size, name="fixations"):
    """Validated `(n, 3)` float64 array of `(x, y, duration)`; `name` goes into error messages."""
    if len(fixations) == 0:
        raise ValueError(f"{name}: a scanpath needs at least one fixation, got an empty list")
    if isinstance(fixations[0], dict):
        missing = [index for index, fixation in enumerate(fixations) if not {"x", "y", "duration"} <= set(fixation)]
        if missing:
            raise ValueError(f"{name}: fixation {missing[0]} lacks one of the keys 'x', 'y', 'duration'")
        fixations = [(fixation["x"], fixation["y"], fixation["duration"]) for fixation in fixations]
    array = np.asarray(fixations, dtype=np.float64)  # (num_fixations, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name}: expected (x, y, duration) triples, got an array of shape {array.shape}")
    width, height = image_size
    bad = ~np.isfinite(array).all(axis=1)
    bad |= (array[:, 0] < 0) | (array[:, 0] > width) | (array[:, 1] < 0) | (array[:, 1] > height) | (array[:, 2] < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: fixation {index} = {tuple(array[index])} is not finite, lies outside the image "
            f"{width} x {height} pixels, or has a negative duration"
        )
    return array


def check_image_size(image_size, name="image_size"):
    if len(image_size) != 2 or not all(isinstance(side, (int, float)) and side > 0 for side in image_size):
        raise ValueError(f"{name}: expected (width, height) in pixels, both > 0, got {image_size!r}")
    return float(image_size[0]), float(image_size[1])


def multimatch_similarity(predicted, recorded, image_size):
    """The 5 MultiMatch similarities (dict), NaN when either path has fewer than 3 fixations."""
    records = [
        np.rec.fromarrays([path[:, 0], path[:, 1], path[:, 2]], names="start_x,start_y,duration")
        for path in (predicted, recorded)
    ]
    values = docomparison(records[0], records[1], screensize=list(image_size))
    return dict(zip(MULTIMATCH_KEYS, (float(value) for value in values)))


def grid_cells(fixations, image_size, grid=(5, 5)):
    """Row-major cell index of each fixation on a `grid` = (columns, rows) over the image."""
    columns, rows = grid
    width, height = image_size
    column = np.minimum((fixations[:, 0] / width * columns).astype(np.int64), columns - 1)
    row = np.minimum((fixations[:, 1] / height * rows).astype(np.int64), rows - 1)
    return row * columns + column  # (num_fixations,)


def levenshtein_distance(sequence_a, sequence_b):
    """Edit distance between two integer sequences (row-by-row dynamic programme, each row vectorised)."""
    sequence_a, sequence_b = np.asarray(sequence_a), np.asarray(sequence_b)
    positions = np.arange(len(sequence_b) + 1)
    previous = positions.astype(np.float64)
    for index, symbol in enumerate(sequence_a, start=1):
        candidates = np.empty_like(previous)
        candidates[0] = index
        candidates[1:] = np.minimum(previous[:-1] + (sequence_b != symbol), previous[1:] + 1)
        # insertions along the row: current[j] = min_k<=j candidates[k] + (j - k)
        previous = positions + np.minimum.accumulate(candidates - positions)
    return int(previous[-1])


def edit_similarity(predicted, recorded, image_size, grid=(5, 5)):
    cells_predicted, cells_recorded = grid_cells(predicted, image_size, grid), grid_cells(recorded, image_size, grid)
    distance = levenshtein_distance(cells_predicted, cells_recorded)
    return 1.0 - distance / max(len(cells_predicted), len(cells_recorded))


def scanmatch_similarity(predicted, recorded, image_size, grid=(5, 5), temporal_bin=0.05, threshold=2.0):
    """Normalised ScanMatch score, NaN when temporal binning leaves either sequence empty."""
    columns, _ = grid
    sequences = []
    for path in (predicted, recorded):
        repeats = np.floor(path[:, 2] / temporal_bin + 0.5).astype(np.int64)
        sequences.append(np.repeat(grid_cells(path, image_size, grid), repeats))
    sequence_a, sequence_b = sequences
    if len(sequence_a) == 0 or len(sequence_b) == 0:
        return math.nan
    row_a, column_a = np.divmod(sequence_a, columns)
    row_b, column_b = np.divmod(sequence_b, columns)
    distance = np.hypot(row_a[:, None] - row_b[None, :], column_a[:, None] - column_b[None, :])  # (len_a, len_b)
    substitution = threshold - distance
    previous = np.zeros(len(sequence_b) + 1)
    for index in range(len(sequence_a)):
        candidates = np.empty_like(previous)
        candidates[0] = 0.0
        candidates[1:] = np.maximum(previous[:-1] + substitution[index], previous[1:])
        previous = np.maximum.accumulate(candidates)  # gap score 0: horizontal moves keep the running best
    return float(previous[-1] / (threshold * max(len(sequence_a), len(sequence_b))))


def dtw_mean_distance(predicted, recorded):
    """Mean Euclidean distance (pixels) between the fixations matched along the optimal DTW path."""
    cost = np.hypot(
        predicted[:, None, 0] - recorded[None, :, 0], predicted[:, None, 1] - recorded[None, :, 1]
    )  # (num_predicted, num_recorded)
    num_predicted, num_recorded = cost.shape
    accumulated = np.full((num_predicted + 1, num_recorded + 1), np.inf)
    accumulated[0, 0] = 0.0
    for index in range(1, num_predicted + 1):
        from_above = np.minimum(accumulated[index - 1, :-1], accumulated[index - 1, 1:])  # diagonal or vertical
        row_cost = cost[index - 1]
        cumulative = np.cumsum(row_cost)
        # horizontal moves: accumulated[j] = min_k<=j from_above[k] + sum(row_cost[k..j])
        accumulated[index, 1:] = cumulative + np.minimum.accumulate(from_above - (cumulative - row_cost))
    path_length, row, column = 1, num_predicted, num_recorded
    while (row, column) != (1, 1):
        steps = ((row - 1, column - 1), (row - 1, column), (row, column - 1))
        row, column = min(steps, key=lambda step: accumulated[step])
        path_length += 1
    return float(accumulated[-1, -1] / path_length)


def saliency_map(fixations, image_size, map_width=64, sigma_fraction=0.05):
    """Duration-weighted Gaussian blobs on a `map_width`-wide grid; fixations with zero total duration weigh 1 each."""
    width, height = image_size
    map_height = max(1, round(height * map_width / width))
    scale = map_width / width
    sigma = sigma_fraction * width * scale
    centers_x = (np.arange(map_width) + 0.5)[None, :]  # (1, map_width) pixel centres on the map grid
    centers_y = (np.arange(map_height) + 0.5)[None, :]  # (1, map_height)
    blobs_x = np.exp(-((centers_x - fixations[:, 0:1] * scale) ** 2) / (2 * sigma**2))  # (num_fixations, map_width)
    blobs_y = np.exp(-((centers_y - fixations[:, 1:2] * scale) ** 2) / (2 * sigma**2))  # (num_fixations, map_height)
    weights = fixations[:, 2] if fixations[:, 2].sum() > 0 else np.ones(len(fixations))
    return (blobs_y * weights[:, None]).T @ blobs_x  # (map_height, map_width)


def fixation_cells(fixations, image_size, map_shape):
    """(row, column) of each fixation on a map of `map_shape` covering the image."""
    width, height = image_size
    map_height, map_width = map_shape
    rows = np.minimum((fixations[:, 1] / height * map_height).astype(np.int64), map_height - 1)
    columns = np.minimum((fixations[:, 0] / width * map_width).astype(np.int64), map_width - 1)
    return rows, columns


def nss(saliency, rows, columns):
    """Normalised scanpath saliency: mean of the standardised map at the fixated cells."""
    standardised = (saliency - saliency.mean()) / saliency.std()
    return float(standardised[rows, columns].mean())


def auc_judd(saliency, rows, columns):
    """AUC-Judd (MIT saliency benchmark): thresholds at the fixated values, TPR over fixations, FPR over the other
    pixels."""
    flat = saliency.ravel()
    fixated = np.sort(saliency[rows, columns])[::-1]  # (num_fixations,) descending thresholds
    num_fixations, num_pixels = len(fixated), flat.size
    above_threshold = num_pixels - np.searchsorted(np.sort(flat), fixated, side="left")
    true_positive = np.arange(1, num_fixations + 1) / num_fixations
    false_positive = (above_threshold - np.arange(1, num_fixations + 1)) / (num_pixels - num_fixations)
    true_positive = np.concatenate([[0.0], true_positive, [1.0]])
    false_positive = np.concatenate([[0.0], false_positive, [1.0]])
    return float(np.trapezoid(true_positive, false_positive))


def correlation_coefficient(map_a, map_b):
    return float(np.corrcoef(map_a.ravel(), map_b.ravel())[0, 1])


def kl_divergence(predicted_map, recorded_map):
    """KL(recorded || predicted) of the maps normalised to sum 1 (nats)."""
    predicted = predicted_map / predicted_map.sum()
    recorded = recorded_map / recorded_map.sum()
    return float(np.sum(recorded * np.log(EPSILON + recorded / (predicted + EPSILON))))


def compare_scanpaths(
    predicted,
    recorded,
    image_size,
    grid=(5, 5),
    temporal_bin=0.05,
    scanmatch_threshold=2.0,
    map_width=64,
    sigma_fraction=0.05,
):
    """All metrics for one pair of scanpaths (validated here); NaN marks a metric undefined for this pair."""
    image_size = check_image_size(image_size)
    predicted = as_fixation_array(predicted, image_size, "predicted scanpath")
    recorded = as_fixation_array(recorded, image_size, "recorded scanpath")
    dtw_pixels = dtw_mean_distance(predicted, recorded)
    predicted_map = saliency_map(predicted, image_size, map_width, sigma_fraction)
    recorded_map = saliency_map(recorded, image_size, map_width, sigma_fraction)
    rows, columns = fixation_cells(recorded, image_size, predicted_map.shape)
    scores = {
        f"multimatch_{key}": value for key, value in multimatch_similarity(predicted, recorded, image_size).items()
    }
    scores.update(
        edit_similarity=edit_similarity(predicted, recorded, image_size, grid),
        scanmatch=scanmatch_similarity(predicted, recorded, image_size, grid, temporal_bin, scanmatch_threshold),
        dtw_pixels=dtw_pixels,
        dtw_normalized=dtw_pixels / math.hypot(*image_size),
        nss=nss(predicted_map, rows, columns),
        auc_judd=auc_judd(predicted_map, rows, columns),
        cc=correlation_coefficient(predicted_map, recorded_map),
        kld=kl_divergence(predicted_map, recorded_map),
    )
    return scores


METRIC_UNITS = {
    **{f"multimatch_{key}": "similarity in [0, 1], 1 = identical" for key in MULTIMATCH_KEYS},
    "edit_similarity": "similarity in [0, 1], 1 = identical cell strings",
    "scanmatch": "normalised alignment score, 1 = identical",
    "dtw_pixels": "original image pixels, 0 = identical",
    "dtw_normalized": "fraction of the image diagonal, 0 = identical",
    "nss": "standard deviations of the predicted map at recorded fixations",
    "auc_judd": "area under ROC in [0, 1], 0.5 = chance",
    "cc": "Pearson correlation in [-1, 1], 1 = identical maps",
    "kld": "nats, 0 = identical maps",
}


def scanpath_scores(predictions, references, image_sizes, **parameters):
    """Per-pair `compare_scanpaths` averaged over the pairs where each metric is defined.

    Returns the means, `num_pairs`, `skipped_pairs` (per metric, pairs where it was NaN: MultiMatch needs 3 fixations,
    ScanMatch a non-empty binned sequence, NSS/CC a non-constant map) and `units`.
    """
    if image_sizes is None:
        raise ValueError("scanpath: image_size is required, one (width, height) in pixels per pair")
    if not len(predictions) == len(references) == len(image_sizes):
        raise ValueError(
            f"scanpath: {len(predictions)} predictions, {len(references)} references and {len(image_sizes)} "
            "image sizes; expected one of each per pair"
        )
    if len(predictions) == 0:
        raise ValueError("scanpath: no pairs to compare")
    per_pair = []
    for index, (predicted, recorded, image_size) in enumerate(zip(predictions, references, image_sizes)):
        try:
            per_pair.append(compare_scanpaths(predicted, recorded, image_size, **parameters))
        except ValueError as error:
            raise ValueError(f"scanpath pair {index}: {error}") from error
    results = {"num_pairs": len(per_pair), "skipped_pairs": {}}
    for key in METRIC_UNITS:
        values = np.array([scores[key] for scores in per_pair])
        defined = np.isfinite(values)
        results[key] = float(values[defined].mean()) if defined.any() else None
        results["skipped_pairs"][key] = int((~defined).sum())
    results["units"] = dict(METRIC_UNITS)
    return results
