"""Intervals over studies for report metrics: a percentile bootstrap of one metric and a paired comparison of two
systems on the same studies (bootstrap interval of the difference and a paired permutation test).

Every metric is described by per-study additive statistics and the function that turns their sum over a set of
studies into the metric (`StudyStatistics`): a mean of per-study scores sums (score, 1); a micro-F1 sums true
positives, false positives and false negatives; corpus BLEU sums n-gram counts and lengths. A resample of the studies
is then a weighted sum of the rows, so corpus-level metrics are recomputed exactly on every resample, as on the full
set."""

import dataclasses
from collections.abc import Callable

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_METHOD = "percentile bootstrap over studies (studies drawn with replacement, the metric recomputed)"
PAIRED_METHOD = (
    "paired percentile bootstrap over studies (the same studies drawn for both); two-sided paired permutation test "
    "(each study's pair swapped with probability 1/2)"
)


@dataclasses.dataclass(frozen=True)
class StudyStatistics:
    """`values`: (num_studies, num_statistics) per-study statistics whose sum over any set of studies determines the
    metric on that set; `aggregate`: summed statistics (..., num_statistics) -> metric values (...), NaN where the
    metric is undefined on that set (e.g. a ratio with nothing to count)."""

    values: np.ndarray
    aggregate: Callable[[np.ndarray], np.ndarray]

    def __post_init__(self):
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"StudyStatistics.values must be (num_studies >= 1, num_statistics), got {values.shape}")
        object.__setattr__(self, "values", values)

    @property
    def num_studies(self) -> int:
        return self.values.shape[0]

    def value(self) -> float:
        """The metric on all the studies."""
        return float(self.aggregate(self.values.sum(axis=0)))

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """The metric on each weighted set of studies: `weights` (num_sets, num_studies) -> (num_sets,)."""
        return np.asarray(self.aggregate(weights @ self.values), dtype=np.float64)


def mean_statistics(scores) -> StudyStatistics:
    """A metric that is the mean of one score per study."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"mean_statistics takes one score per study (a 1-D sequence), got shape {scores.shape}")
    return StudyStatistics(np.stack([scores, np.ones_like(scores)], axis=1), ratio_of_sums)


def ratio_of_sums(sums: np.ndarray) -> np.ndarray:
    """sums[..., 0] / sums[..., 1], NaN where the denominator is 0."""
    numerator, denominator = sums[..., 0], sums[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _check_resampling(num_resamples, confidence):
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def bootstrap_weights(num_studies: int, num_resamples: int, seed: int) -> np.ndarray:
    """(num_resamples, num_studies) counts: each row draws num_studies studies with replacement."""
    generator = np.random.default_rng(seed)
    return generator.multinomial(num_studies, np.full(num_studies, 1.0 / num_studies), size=num_resamples).astype(
        np.float64
    )


def _percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    """(low, high) percentiles of the defined resampled values and the number of resamples where the metric was
    undefined (None, None when it was undefined in all)."""
    defined = resampled[~np.isnan(resampled)]
    if defined.size == 0:
        return None, None, resampled.size
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high), resampled.size - defined.size


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else value


def bootstrap_interval(
    statistics: StudyStatistics,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict:
    """The metric on all studies and its percentile bootstrap interval over studies: {"value", "low", "high",
    "confidence", "num_resamples", "num_undefined_resamples", "method"}; value/low/high are None where undefined."""
    _check_resampling(num_resamples, confidence)
    resampled = statistics.resampled(bootstrap_weights(statistics.num_studies, num_resamples, seed))
    low, high, undefined = _percentile_interval(resampled, confidence)
    return {
        "value": _defined(statistics.value()),
        "low": low,
        "high": high,
        "confidence": confidence,
        "num_resamples": num_resamples,
        "num_undefined_resamples": undefined,
        "method": BOOTSTRAP_METHOD,
    }


def paired_comparison(
    statistics_a: StudyStatistics,
    statistics_b: StudyStatistics,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict:
    """System a against system b on the same studies (row i of both is study i): the difference a - b of the metric,
    its percentile bootstrap interval (the same studies drawn for both) and the two-sided paired permutation p-value
    (each study's pair of statistics swapped between the systems with probability 1/2; p = (1 + number of permuted
    |differences| >= the observed one) / (1 + num_resamples)). None where the metric is undefined."""
    _check_resampling(num_resamples, confidence)
    if statistics_a.values.shape != statistics_b.values.shape:
        raise ValueError(
            "paired_comparison needs the same studies and statistics for both systems, got shapes "
            f"{statistics_a.values.shape} and {statistics_b.values.shape}"
        )
    num_studies = statistics_a.num_studies
    weights = bootstrap_weights(num_studies, num_resamples, seed)
    resampled = statistics_a.resampled(weights) - statistics_b.resampled(weights)
    low, high, undefined = _percentile_interval(resampled, confidence)
    observed = statistics_a.value() - statistics_b.value()
    swaps = np.random.default_rng(seed + 1).integers(0, 2, size=(num_resamples, num_studies)).astype(np.float64)
    moved = swaps @ (statistics_b.values - statistics_a.values)  # (num_resamples, num_statistics)
    total_a, total_b = statistics_a.values.sum(axis=0), statistics_b.values.sum(axis=0)
    permuted = statistics_a.aggregate(total_a + moved) - statistics_b.aggregate(total_b - moved)
    permuted = np.asarray(permuted, dtype=np.float64)  # (num_resamples,)
    permuted = permuted[~np.isnan(permuted)]
    p_value = None
    if not np.isnan(observed):
        # a tolerance so that permutations equal to the observed difference up to rounding count as at least as large
        extreme = np.abs(permuted) >= abs(observed) - 1e-12
        p_value = float((1 + extreme.sum()) / (1 + permuted.size))
    return {
        "difference": _defined(observed),
        "low": low,
        "high": high,
        "p_value": p_value,
        "confidence": confidence,
        "num_resamples": num_resamples,
        "num_undefined_resamples": undefined,
        "method": PAIRED_METHOD,
    }
