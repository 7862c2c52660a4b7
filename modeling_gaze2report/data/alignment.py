"""Which dictated phrase each fixation belongs to, and the findings that phrase names.

The rule: a fixation belongs to the phrase being spoken `lag` seconds after the fixation starts, i.e. the first
phrase with `start <= fixation start + lag <= end`; a fixation that lands in a pause, before the first or after the
last phrase, or that has no start time (NaN), belongs to none (-1).

The lag is the eye-voice span: speakers fixate what they are about to name for about a second before they say it
(Griffin & Bock 2000, "What the eyes say about speaking", Psychological Science 11(4)); in radiology dictation the
span is longer and varies between readers (Ganapathi et al. 2016, arXiv:1607.06878), and REFLACX's authors pair
each sentence with the gaze of up to 5 s before it (Bigolin Lanfredi et al. 2022, Scientific Data 9:350).
`DEFAULT_EYE_VOICE_LAG` takes the middle of the one-to-two seconds usually quoted for dictation.
"""

import math
import numbers

from ..labeler_gaze2report import label_reports
from ..observations import FINDING_OBSERVATIONS
from .schema import PRESENT_FROM_CERTAINTY, check_region

DEFAULT_EYE_VOICE_LAG = 1.5  # seconds from the start of a look to the speech about it


def align_fixations_to_transcript(fixations, transcript, lag: float = DEFAULT_EYE_VOICE_LAG) -> list[int]:
    """Per fixation, the index of the transcript phrase it belongs to, or -1 (see the module's rule).

    Args:
        fixations: a list of {"start", ...} dicts (an example's `fixations`); a NaN start belongs to no phrase.
        transcript: a list of {"text", "start", "end"} dicts in spoken order (an example's `transcript`).
        lag: the eye-voice lag in seconds, any finite number.
    """
    if isinstance(lag, bool) or not isinstance(lag, numbers.Real) or not math.isfinite(lag):
        raise ValueError(f"lag={lag!r} must be a finite number of seconds")
    spans = [_phrase_span(phrase, index) for index, phrase in enumerate(_as_list(transcript, "transcript"))]
    phrase_indices = []
    for index, fixation in enumerate(_as_list(fixations, "fixations")):
        if not isinstance(fixation, dict) or "start" not in fixation:
            raise ValueError(f"fixations[{index}] must be a dict with a 'start' time, got {fixation!r}")
        start = _seconds(fixation["start"], f"fixations[{index}]['start']", allow_nan=True)
        spoken_at = start + lag
        phrase_indices.append(next((j for j, (begin, end) in enumerate(spans) if begin <= spoken_at <= end), -1))
    return phrase_indices


def fixation_finding_targets(fixations, transcript, lag: float = DEFAULT_EYE_VOICE_LAG) -> list:
    """Per fixation, the CheXpert observations (not "No Finding") that the project's labeler finds positive in the
    phrase the fixation belongs to, as a tuple in CHEXPERT_OBSERVATIONS order (empty when the phrase names none), or
    None for a fixation that belongs to no phrase (a target to mask out, not a negative)."""
    phrase_indices = align_fixations_to_transcript(fixations, transcript, lag)
    phrase_labels = label_reports([phrase["text"] for phrase in transcript]) if transcript else []
    positives = [tuple(name for name in FINDING_OBSERVATIONS if labels[name] == 1) for labels in phrase_labels]
    return [None if index == -1 else positives[index] for index in phrase_indices]


def fixation_finding_names(example: dict, lag: float = DEFAULT_EYE_VOICE_LAG) -> list:
    """What an example's radiologist saw at each recorded fixation, the fixation-node head's target: the findings
    named by the phrase the fixation belongs to (`fixation_finding_targets`) together with the labels of the regions
    the fixation lies in whose certainty says present (>= PRESENT_FROM_CERTAINTY; an "Unlikely" or "Less likely"
    region counts as no region). A fixation that belongs to no phrase and lies in no such region is None (unknown,
    masked out): a region says what is there, but the absence of one says nothing, so only the dictation gives
    negatives. Regions and fixation coordinates are checked first (a ValueError names the field)."""
    if not isinstance(example, dict):
        raise ValueError(f"example must be a dict, got {type(example).__name__}")
    where = f"Example {example['id']}: " if "id" in example else ""
    fixations = _as_list(example.get("fixations") or [], f"{where}fixations")
    transcript = _as_list(example.get("transcript") or [], f"{where}transcript")
    regions = [
        check_region(region, f"{where}regions[{index}]")
        for index, region in enumerate(_as_list(example.get("regions") or [], f"{where}regions"))
    ]
    present = [region for region in regions if region["certainty"] >= PRESENT_FROM_CERTAINTY]
    points = [_point(fixation, f"{where}fixations[{index}]") for index, fixation in enumerate(fixations)]
    spoken = fixation_finding_targets(fixations, transcript, lag) if transcript else [None] * len(fixations)
    names = []
    for point, phrase_findings in zip(points, spoken):
        seen = {region["label"] for region in present if _inside(point, region)}
        if phrase_findings is None and not seen:
            names.append(None)
            continue
        seen |= set(phrase_findings or ())
        names.append([name for name in FINDING_OBSERVATIONS if name in seen])
    return names


def fixation_in_region(fixation: dict, region: dict) -> bool:
    """Whether a fixation {"x", "y", ...} lies in a region {"label", "x0", "y0", "x1", "y1", "certainty"} (same
    pixels, edges included), whatever the region's certainty; a missing or bad field is a ValueError naming it."""
    return _inside(_point(fixation, "fixation"), check_region(region, "region"))


def _inside(point: tuple[float, float], region: dict) -> bool:
    x, y = point
    return region["x0"] <= x <= region["x1"] and region["y0"] <= y <= region["y1"]


def _point(fixation, name: str) -> tuple[float, float]:
    """A fixation's (x, y), refused unless both are there and finite numbers."""
    if not isinstance(fixation, dict):
        raise ValueError(f"{name} must be a dict with keys x, y, got {fixation!r}")
    for key in ("x", "y"):
        if key not in fixation:
            raise ValueError(f"{name} has no field {key!r}, got {fixation!r}")
        value = fixation[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name}[{key!r}]={value!r} must be a finite number of pixels")
    return float(fixation["x"]), float(fixation["y"])


def _phrase_span(phrase, index: int) -> tuple[float, float]:
    if not isinstance(phrase, dict) or not {"text", "start", "end"} <= set(phrase):
        raise ValueError(f"transcript[{index}] must be a dict with keys text, start, end, got {phrase!r}")
    if not isinstance(phrase["text"], str):
        raise ValueError(f"transcript[{index}]['text']={phrase['text']!r} must be a string")
    start = _seconds(phrase["start"], f"transcript[{index}]['start']")
    end = _seconds(phrase["end"], f"transcript[{index}]['end']")
    if end < start:
        raise ValueError(f"transcript[{index}] ends (end={end!r}) before it starts (start={start!r})")
    return start, end


def _seconds(value, name: str, allow_nan: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} must be a number of seconds")
    if math.isinf(value) or (math.isnan(value) and not allow_nan):
        raise ValueError(f"{name}={value!r} must be a finite number of seconds")
    return float(value)


def _as_list(sequence, name: str) -> list:
    if not isinstance(sequence, (list, tuple)):
        raise ValueError(f"{name} must be a list, got {type(sequence).__name__}")
    return list(sequence)
