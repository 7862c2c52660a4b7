import math

import pytest

from modeling_gaze2report.data import DEFAULT_EYE_VOICE_LAG, align_fixations_to_transcript, fixation_finding_targets

TRANSCRIPT = [
    {"text": "Small left pleural effusion.", "start": 2.0, "end": 4.0},
    {"text": "No pneumothorax.", "start": 5.0, "end": 6.0},
    {"text": "Mild cardiomegaly and pulmonary edema.", "start": 6.0, "end": 8.5},
]


def fixations_at(*starts):
    return [{"x": 1.0, "y": 1.0, "duration": 0.2, "start": start} for start in starts]


def test_each_fixation_belongs_to_the_phrase_spoken_lag_seconds_after_it_starts():
    # start + 1.5: 1.5 (before the first phrase), 2.0 (its first instant), 4.0 (its last), 4.5 (the pause),
    # 6.0 (the end of phrase 1 and the start of phrase 2: the first wins), 7.0, 9.0 (after the last phrase)
    fixations = fixations_at(0.0, 0.5, 2.5, 3.0, 4.5, 5.5, 7.5)
    assert align_fixations_to_transcript(fixations, TRANSCRIPT, lag=1.5) == [-1, 0, 0, -1, 1, 2, -1]


def test_the_lag_shifts_which_phrase_a_fixation_belongs_to():
    fixations = fixations_at(3.0, 4.5)
    assert align_fixations_to_transcript(fixations, TRANSCRIPT, lag=0.0) == [0, -1]
    assert align_fixations_to_transcript(fixations, TRANSCRIPT, lag=2.5) == [1, 2]
    assert align_fixations_to_transcript(fixations, TRANSCRIPT) == align_fixations_to_transcript(
        fixations, TRANSCRIPT, lag=DEFAULT_EYE_VOICE_LAG
    )


def test_fixations_without_time_or_transcript_belong_to_no_phrase():
    assert align_fixations_to_transcript(fixations_at(math.nan, math.nan), TRANSCRIPT) == [-1, -1]
    assert align_fixations_to_transcript(fixations_at(1.0), []) == [-1]
    assert align_fixations_to_transcript([], TRANSCRIPT) == []


def test_finding_targets_are_the_labelers_positive_observations_of_the_aligned_phrase():
    targets = fixation_finding_targets(fixations_at(0.0, 1.0, 4.0, 5.0), TRANSCRIPT, lag=1.5)
    assert targets == [None, ("Pleural Effusion",), (), ("Cardiomegaly", "Edema")]  # "No pneumothorax." names none


@pytest.mark.parametrize(
    "fixations, transcript, lag, message",
    [
        (fixations_at(1.0), TRANSCRIPT, float("nan"), "lag=nan must be a finite number"),
        (fixations_at(1.0), TRANSCRIPT, True, "lag=True must be a finite number"),
        ([{"x": 1.0, "y": 1.0}], TRANSCRIPT, 1.0, r"fixations\[0\] must be a dict with a 'start' time"),
        (fixations_at(math.inf), TRANSCRIPT, 1.0, r"fixations\[0\]\['start'\]=inf must be a finite number"),
        (fixations_at(1.0), [{"text": "x", "start": 3.0, "end": 2.0}], 1.0, r"transcript\[0\] ends"),
        (fixations_at(1.0), [{"text": "x", "start": "3"}], 1.0, r"transcript\[0\] must be a dict with keys"),
        (fixations_at(1.0), "No effusion.", 1.0, "transcript must be a list, got str"),
    ],
)
def test_bad_input_is_refused_with_what_is_wrong(fixations, transcript, lag, message):
    with pytest.raises(ValueError, match=message):
        align_fixations_to_transcript(fixations, transcript, lag=lag)
