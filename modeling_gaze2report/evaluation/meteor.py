"""METEOR 1.5 through pycocoevalcap's `Meteor` (meteor-1.5.jar, `-l en -norm`), one jar process per Python process:
the corpus score, each pair's statistics, and the score of summed statistics, which is how the jar scores a corpus
(its aggregate is the score of the segments' statistics added up), so a resample of pairs is scored exactly."""

import functools

import numpy as np
from pycocoevalcap.meteor.meteor import Meteor


@functools.cache
def meteor_scorer() -> Meteor:
    """One pycocoevalcap `Meteor` per process, started on first use and kept: each start of meteor-1.5.jar loads its
    paraphrase tables again."""
    return Meteor()


def meteor_statistics(res: dict, gts: dict) -> np.ndarray:
    """(num_pairs, 23): the jar's statistics of each pair (pycocoevalcap's format: `res` {index: [text]},
    `gts` {index: [reference, ...]}), in the order of `res`."""
    scorer = meteor_scorer()
    with scorer.lock:
        lines = [scorer._stat(res[index][0], gts[index]) for index in res]
    statistics = np.array([[float(value) for value in line.split()] for line in lines])  # (num_pairs, 23)
    # The jar scores a pair whose every word matches as having no fragmentation and sets its one chunk to none before
    # adding it to the aggregate; do the same, so that summed statistics give the jar's corpus score.
    # per matcher module: test content, reference content, test function and reference function word matches
    matches = statistics[:, 4:20].reshape(-1, 4, 4)
    test_matches, reference_matches = matches[..., [0, 2]].sum(axis=(1, 2)), matches[..., [1, 3]].sum(axis=(1, 2))
    perfect = (test_matches == statistics[:, 0]) & (reference_matches == statistics[:, 1]) & (statistics[:, 20] == 1)
    statistics[perfect, 20] = 0
    return statistics


def meteor_from_statistics(sums: np.ndarray) -> np.ndarray:
    """The METEOR score of each row of summed pair statistics (..., num_statistics) -> (...), computed by the jar."""
    sums = np.asarray(sums, dtype=np.float64)
    rows = sums.reshape(-1, sums.shape[-1])
    scorer = meteor_scorer()
    scores = []
    with scorer.lock:
        for row in rows:
            line = "EVAL ||| " + " ".join(repr(float(value)) for value in row)
            scorer.meteor_p.stdin.write(f"{line}\n".encode())
            scorer.meteor_p.stdin.flush()
            scorer.meteor_p.stdout.readline()  # the one segment's score
            scores.append(float(scorer.meteor_p.stdout.readline().strip()))  # the aggregate: the same for one segment
    return np.array(scores).reshape(sums.shape[:-1])
