"""A radiologist-like scanpath simulator for the synthetic world.

A reading is a systematic survey of a frontal chest radiograph in canonical coordinates (see synthetic_phantom):
start near the centre, the patient's right lung (image left) apex to base, the patient's left lung apex to base, the
heart, both costophrenic angles, the mediastinum. Each survey stop gets one or two fixations with saccade noise;
transits between distant stops get an intermediate fixation. When the survey passes a finding, the reader dwells
on it: extra fixations inside the finding's box with longer durations, more of them for subtle findings; every
finding is revisited before the reading ends, and some readers make a short second pass over the lungs. Durations
are log-normal, clipped to [MIN_DURATION, MAX_DURATION] seconds; the count is clipped to
[MIN_FIXATIONS, MAX_FIXATIONS] (the reading stops at MAX_FIXATIONS, and a short reading adds survey fixations).
"""

import numpy as np

MIN_FIXATIONS, MAX_FIXATIONS = 20, 60
MIN_DURATION, MAX_DURATION = 0.1, 1.5  # seconds
SURVEY_MEDIAN_DURATION = 0.24  # seconds
FINDING_MEDIAN_DURATION = 0.45
DURATION_SIGMA = 0.45  # of the log-duration
SACCADE_NOISE = 0.018  # canonical units, the spread of a fixation around its target
FINDING_FIXATIONS = {False: (3, 6), True: (6, 10)}  # subtle -> range of extra fixations on a finding


def survey_stops(anatomy):
    """Canonical (u, v) stops of the systematic survey, in reading order."""
    stops = [(0.5, 0.45)]
    for side, sign in (("right", -1), ("left", 1)):
        u = 0.5 + sign * anatomy.lung_half_width * 0.5
        top, base = anatomy.apex_v + 0.05, anatomy.diaphragm_v[side] - 0.03
        stops += [(u, top + fraction * (base - top)) for fraction in (0.0, 0.33, 0.66, 1.0)]
    stops += [(0.54, anatomy.diaphragm_v["left"] - 0.08)]
    stops += [(0.5 + sign * anatomy.lung_half_width * 0.85, anatomy.costophrenic_v[side] - 0.03) for side, sign in (("right", -1), ("left", 1))]
    stops += [(0.5, 0.3)]
    return np.array(stops)


def _finding_target(finding):
    u0, v0, u1, v1 = finding.box
    return np.array([0.5 * (u0 + u1), 0.5 * (v0 + v1)])


def simulate_scanpath(anatomy, findings, image_size, rng):
    """Fixations of one reading: a (num_fixations, 3) float32 array of x, y (pixels of the image_size image, inside
    it) and duration (seconds), in time order."""
    stops = survey_stops(anatomy)
    pending = list(findings)
    points, durations = [], []

    def fixate(target, spread, median, count):
        for _ in range(count):
            points.append(np.asarray(target) + rng.normal(0, spread, 2))
            durations.append(median * np.exp(rng.normal(0, DURATION_SIGMA)))

    def dwell(finding):
        u0, v0, u1, v1 = finding.box
        low, high = FINDING_FIXATIONS[finding.subtle]
        for _ in range(int(rng.integers(low, high + 1))):
            points.append(np.array([rng.uniform(u0, u1), rng.uniform(v0, v1)]))
            durations.append(FINDING_MEDIAN_DURATION * np.exp(rng.normal(0, DURATION_SIGMA)))

    previous = stops[0]
    for stop in stops:
        if np.linalg.norm(stop - previous) > 0.2:
            fixate(0.5 * (stop + previous), 2 * SACCADE_NOISE, SURVEY_MEDIAN_DURATION, 1)
        fixate(stop, SACCADE_NOISE, SURVEY_MEDIAN_DURATION, int(rng.integers(1, 3)))
        noticed = [finding for finding in pending if np.linalg.norm(_finding_target(finding) - stop) < 0.2]
        for finding in noticed:
            dwell(finding)
            pending.remove(finding)
        previous = stop
    for finding in pending:
        dwell(finding)
    if rng.random() < 0.5:
        second_pass = stops[1:9][rng.permutation(8)[: int(rng.integers(3, 7))]]
        for stop in second_pass:
            fixate(stop, 2 * SACCADE_NOISE, SURVEY_MEDIAN_DURATION, 1)
    for finding in findings:
        fixate(_finding_target(finding), SACCADE_NOISE, FINDING_MEDIAN_DURATION, 1)
    while len(points) < MIN_FIXATIONS:
        fixate(stops[rng.integers(len(stops))], 2 * SACCADE_NOISE, SURVEY_MEDIAN_DURATION, 1)

    canonical = np.array(points[:MAX_FIXATIONS])  # (num_fixations, 2)
    pixels = np.clip(anatomy.pose.to_pixels(canonical, image_size), 0, image_size - 1)
    seconds = np.clip(np.array(durations[:MAX_FIXATIONS]), MIN_DURATION, MAX_DURATION)
    return np.concatenate([pixels, seconds[:, None]], axis=1).astype(np.float32)  # (num_fixations, 3)
