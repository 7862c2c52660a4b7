"""A radiologist-like reading for the synthetic world: a scanpath and the dictation that goes with it.

A reading has two phases, in canonical coordinates (see synthetic_anatomy). The search is a silent systematic survey
of the frontal radiograph: start near the centre, the patient's right lung (image left) apex to base, the patient's
left lung apex to base, the heart, both costophrenic angles, the mediastinum. Each survey stop gets one or two
fixations with saccade noise; transits between distant stops get an intermediate fixation; a finding the survey
passes is noticed with a glance (one fixation inside its box), and findings it misses are glanced at after it.
Then the reader dictates the report, sentence by sentence in report order, each after a look at what it is about:
a dwell inside the finding's box for a finding sentence (extra fixations with longer durations, more of them for
subtle findings), a look at the device's tip for a device sentence, a look at the places a negation clears ("No
pleural effusion." after both costophrenic angles), one fixation on the finding for its impression phrase. Each
sentence is spoken from the reader's eye-voice lag after its look starts, at the reader's speaking rate (both drawn
per study); when the previous sentence is still being spoken, the eyes wait off the image (no fixation is
recorded) so that the lag holds. Fixations are separated by saccades, so their times never overlap. Durations are
log-normal, clipped to [MIN_DURATION, MAX_DURATION] seconds; the count is clipped to [MIN_FIXATIONS, MAX_FIXATIONS]
(the reading stops at MAX_FIXATIONS, and a short reading adds survey fixations at its end).
"""

import numpy as np

from .synthetic_anatomy import HILA
from .synthetic_phantom import Device, Finding, device_paths

MIN_FIXATIONS, MAX_FIXATIONS = 20, 60
MIN_DURATION, MAX_DURATION = 0.1, 1.5  # seconds
SURVEY_MEDIAN_DURATION = 0.24  # seconds
FINDING_MEDIAN_DURATION = 0.45
DURATION_SIGMA = 0.45  # of the log-duration
SACCADE_NOISE = 0.018  # canonical units, the spread of a fixation around its target
FINDING_FIXATIONS = {False: (3, 6), True: (6, 10)}  # subtle -> range of extra fixations on a finding
SACCADE_SECONDS = (0.03, 0.07)  # between two fixations
EYE_VOICE_LAG = (1.0, 2.0)  # seconds from the start of a look to the speech about it, drawn per study
WORDS_PER_SECOND = (2.0, 3.0)  # dictation speaking rate, drawn per study
SENTENCE_PAUSE = (0.2, 0.6)  # seconds between two spoken sentences


def survey_stops(anatomy):
    """Canonical (u, v) stops of the systematic survey, in reading order."""
    stops = [(0.5, 0.45)]
    for side, sign in (("right", -1), ("left", 1)):
        u = 0.5 + sign * anatomy.lung_half_width * 0.5
        top, base = anatomy.apex_v + 0.05, anatomy.diaphragm_v[side] - 0.03
        stops += [(u, top + fraction * (base - top)) for fraction in (0.0, 0.33, 0.66, 1.0)]
    stops += [(0.54, anatomy.diaphragm_v["left"] - 0.08)]
    stops += [
        (0.5 + sign * anatomy.lung_half_width * 0.85, anatomy.costophrenic_v[side] - 0.03)
        for side, sign in (("right", -1), ("left", 1))
    ]
    stops += [(0.5, 0.3)]
    return np.array(stops)


def _finding_target(finding):
    u0, v0, u1, v1 = finding.box
    return np.array([0.5 * (u0 + u1), 0.5 * (v0 + v1)])


def clearance_targets(anatomy, stops):
    """Canonical points a reader looks at before saying an observation is absent (its name -> (n, 2) points), and
    before "The lungs are clear." ("lungs") and a normal impression ("chest")."""
    mid_lungs = stops[[2, 6]]
    return {
        "Pneumothorax": stops[[1, 5]],
        "Pleural Effusion": stops[[10, 11]],
        "Consolidation": mid_lungs,
        "Lung Lesion": mid_lungs,
        "Edema": np.array([HILA["right"], HILA["left"]]),
        "Cardiomegaly": stops[[9]],
        "Fracture": np.array([(0.5 + sign * 0.9 * anatomy.lung_half_width, anatomy.apex_v + 0.3) for sign in (-1, 1)]),
        "lungs": mid_lungs,
        "chest": stops[[0]],
    }


class _Reading:
    """The fixations of a reading as they are made: canonical points, durations and start times."""

    def __init__(self, rng):
        self.rng = rng
        self.points, self.durations, self.starts = [], [], []
        self.clock = 0.0  # when the next fixation can start (seconds)

    def fixate(self, point, median):
        duration = float(np.clip(median * np.exp(self.rng.normal(0, DURATION_SIGMA)), MIN_DURATION, MAX_DURATION))
        self.points.append(np.asarray(point, dtype=np.float64))
        self.durations.append(duration)
        self.starts.append(self.clock)
        self.clock += duration + self.rng.uniform(*SACCADE_SECONDS)

    def around(self, target, spread, median, count):
        for _ in range(count):
            self.fixate(np.asarray(target) + self.rng.normal(0, spread, 2), median)

    def inside(self, finding, count):
        u0, v0, u1, v1 = finding.box
        for _ in range(count):
            self.fixate((self.rng.uniform(u0, u1), self.rng.uniform(v0, v1)), FINDING_MEDIAN_DURATION)


def simulate_reading(anatomy, findings, findings_sentences, impression_sentences, image_size, rng):
    """One reading of a study whose report is `findings_sentences` then `impression_sentences`
    (`synthetic_reports.Sentence`s in report order).

    Returns (fixations, transcript): a (num_fixations, 4) float64 array of x, y (pixels of the image_size image,
    inside it), duration and start (seconds), in time order; and one (text, start, end) per sentence, in order, its
    times in seconds on the fixations' clock."""
    stops = survey_stops(anatomy)
    clearances = clearance_targets(anatomy, stops)
    reading = _Reading(rng)
    lag, words_per_second = rng.uniform(*EYE_VOICE_LAG), rng.uniform(*WORDS_PER_SECOND)

    pending = list(findings)
    previous = stops[0]
    for stop in stops:
        if np.linalg.norm(stop - previous) > 0.2:
            reading.around(0.5 * (stop + previous), 2 * SACCADE_NOISE, SURVEY_MEDIAN_DURATION, 1)
        reading.around(stop, SACCADE_NOISE, SURVEY_MEDIAN_DURATION, int(rng.integers(1, 3)))
        for finding in [finding for finding in pending if np.linalg.norm(_finding_target(finding) - stop) < 0.2]:
            reading.inside(finding, 1)
            pending.remove(finding)
        previous = stop
    for finding in pending:
        reading.inside(finding, 1)

    transcript, speech_end = [], -np.inf
    impression = {id(sentence) for sentence in impression_sentences}
    for sentence in findings_sentences + impression_sentences:
        reading.clock = max(reading.clock, speech_end + rng.uniform(*SENTENCE_PAUSE) - lag)
        look_start = reading.clock
        about = sentence.about
        if isinstance(about, Finding) and id(sentence) in impression:
            reading.around(_finding_target(about), SACCADE_NOISE, FINDING_MEDIAN_DURATION, 1)
        elif isinstance(about, Finding):
            low, high = FINDING_FIXATIONS[about.subtle]
            reading.inside(about, int(rng.integers(low, high + 1)))
        elif isinstance(about, Device):  # its tip: the end of its (first) path
            reading.around(device_paths(about, anatomy)[0][-1], SACCADE_NOISE, FINDING_MEDIAN_DURATION, 1)
        else:
            for target in clearances[about]:
                reading.around(target, SACCADE_NOISE, SURVEY_MEDIAN_DURATION, 1)
        speech_start = look_start + lag
        speech_end = speech_start + len(sentence.text.split()) / words_per_second
        transcript.append((sentence.text, float(speech_start), float(speech_end)))
    while len(reading.points) < MIN_FIXATIONS:
        reading.around(stops[rng.integers(len(stops))], 2 * SACCADE_NOISE, SURVEY_MEDIAN_DURATION, 1)

    canonical = np.array(reading.points[:MAX_FIXATIONS])  # (num_fixations, 2)
    pixels = np.clip(anatomy.pose.to_pixels(canonical, image_size), 0, image_size - 1)
    timing = np.array([reading.durations[:MAX_FIXATIONS], reading.starts[:MAX_FIXATIONS]]).T  # (num_fixations, 2)
    return np.concatenate([pixels, timing], axis=1), transcript  # (num_fixations, 4)
