"""Recorded scanpaths as the processor takes them: validated (x, y, duration) rows and the findings seen at each
fixation, and the one rule that shortens a scanpath to the model's fixation slots."""

import math

import numpy as np

from .observations import FINDING_OBSERVATIONS

MAX_FIXATION_SECONDS = 60.0  # a longer "fixation" is a unit error (milliseconds given as seconds) or a lost track


SCANPATH_FORMS = (
    'a list of (x, y, duration) triples or {"x", "y", "duration"} dicts, a dict of equal-length "x", "y" and '
    '"duration" lists, or None'
)


def fixations_to_array(sequence, name: str) -> np.ndarray:
    """Validates one scanpath and returns it as a float64 (num_fixations, 3) array of x, y, duration. It is given as
    (x, y, duration) triples, as {"x", "y", "duration"} dicts (other keys, such as "start", are ignored), as one dict
    of equal-length "x", "y" and "duration" lists (the form a `datasets` Sequence-of-struct column comes back in),
    or as None (no fixations). `name` says which input it is in error messages."""
    if sequence is None:
        return np.zeros((0, 3))
    if isinstance(sequence, dict):
        sequence = columns_to_fixations(sequence, name)
    if isinstance(sequence, (str, bytes)) or not (hasattr(sequence, "__len__") and hasattr(sequence, "__iter__")):
        raise ValueError(f"{name} = {sequence!r:.80} is not a scanpath; give {SCANPATH_FORMS}")
    rows = []
    for i, fixation in enumerate(sequence):
        if isinstance(fixation, dict):
            missing = {"x", "y", "duration"} - fixation.keys()
            if missing:
                raise ValueError(f"{name}[{i}] lacks the key(s) {sorted(missing)}; expected x, y, duration")
            fixation = (fixation["x"], fixation["y"], fixation["duration"])
        if isinstance(fixation, (str, bytes)) or any(isinstance(v, (bool, np.bool_)) for v in fixation):
            raise ValueError(f"{name}[{i}] = {fixation!r} is not an (x, y, duration) triple of numbers")
        try:
            row = [float(v) for v in fixation]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}[{i}] = {fixation!r} is not an (x, y, duration) triple of numbers") from error
        if len(row) != 3:
            raise ValueError(f"{name}[{i}] = {fixation!r} has {len(row)} values; expected x, y, duration")
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"{name}[{i}] = {fixation!r} holds NaN or infinity")
        if row[2] < 0:
            raise ValueError(f"{name}[{i}] has a negative duration ({row[2]:g} s)")
        if row[2] > MAX_FIXATION_SECONDS:
            raise ValueError(
                f"{name}[{i}] lasts {row[2]:g} s, longer than any fixation ({MAX_FIXATION_SECONDS:g} s at "
                "most): durations are in seconds"
            )
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def columns_to_fixations(columns: dict, name: str) -> list[dict]:
    """A scanpath given as a dict of "x", "y" and "duration" lists as a list of {"x", "y", "duration"} dicts."""
    missing = {"x", "y", "duration"} - columns.keys()
    if missing:
        raise ValueError(f"{name} is a dict without the key(s) {sorted(missing)}; give {SCANPATH_FORMS}")
    for key in ("x", "y", "duration"):
        if isinstance(columns[key], (str, bytes)) or not hasattr(columns[key], "__len__"):
            raise ValueError(
                f"{name}[{key!r}] = {columns[key]!r:.80} is not a list: a dict scanpath holds one list per coordinate "
                '(a single fixation is [{"x": ..., "y": ..., "duration": ...}])'
            )
    lengths = {key: len(columns[key]) for key in ("x", "y", "duration")}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name}'s x, y and duration lists differ in length: {lengths}")
    rows = zip(columns["x"], columns["y"], columns["duration"])
    return [{"x": x, "y": y, "duration": duration} for x, y, duration in rows]


def fixation_finding_rows(findings, num_fixations: int, image_index: int) -> np.ndarray:
    """One image's per-fixation findings as a (num_fixations, 13) array of 0 and 1, a row of NaN where unknown; an
    image whose findings are None is unknown throughout."""
    rows = np.full((num_fixations, len(FINDING_OBSERVATIONS)), np.nan)
    if findings is None:
        return rows
    if not isinstance(findings, (list, tuple)):
        raise ValueError(
            f"fixation_findings[{image_index}] = {findings!r:.80} must be a list with one entry per fixation: the "
            "names of the findings seen there, [] where none was, or None where it is not known"
        )
    if len(findings) != num_fixations:
        raise ValueError(
            f"fixation_findings[{image_index}] has {len(findings)} entries for {num_fixations} fixations; give one "
            "per fixation (None where unknown)."
        )
    for i, names in enumerate(findings):
        if names is None:
            continue
        if not isinstance(names, (list, tuple, set, frozenset)) or not all(isinstance(name, str) for name in names):
            raise ValueError(
                f"fixation_findings[{image_index}][{i}] = {names!r:.80} must be a list of finding names (e.g. "
                "['Edema']), [] where none was seen, or None where it is not known"
            )
        unknown = [name for name in names if name not in FINDING_OBSERVATIONS]
        if unknown:
            raise ValueError(
                f"fixation_findings[{image_index}][{i}] names {unknown}, which are not findings; choose from "
                f"{', '.join(FINDING_OBSERVATIONS)}"
            )
        rows[i] = [float(name in names) for name in FINDING_OBSERVATIONS]
    return rows


def merged_finding_rows(finding_rows: np.ndarray, members: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The findings of reduced fixations from their members' rows (`fixation_finding_rows`, NaN where unknown): a
    merged fixation saw what any of its known members saw, and is unknown only when all of them are. Returns the
    (num_reduced, 13) labels (0 where unknown) and the (num_reduced,) bool mask of the known ones."""
    labels = np.zeros((len(members), finding_rows.shape[1]))
    known = np.zeros(len(members), dtype=bool)
    for slot, member_indices in enumerate(members):
        member_rows = finding_rows[member_indices]  # (members, 13)
        known_rows = member_rows[~np.isnan(member_rows).any(axis=1)]
        if len(known_rows):
            labels[slot], known[slot] = known_rows.max(axis=0), True
    return labels, known


def reduce_scanpath(fixations: np.ndarray, max_fixations: int, merge_radius: float) -> np.ndarray:
    """Shortens a scanpath to at most `max_fixations` while keeping its order and its total dwell time.

    The rule, applied only when the scanpath is longer than `max_fixations`:
    1. consecutive fixations closer than `merge_radius` to the running cluster's centre merge into one;
    2. while it is still too long, the two consecutive fixations closest to each other merge.
    A merged fixation sits at the dwell-weighted mean of its members and lasts the sum of their durations.

    Args:
        fixations: (num_fixations, 3) array of x, y (any unit shared with `merge_radius`) and duration (seconds).
    """
    return reduce_scanpath_with_members(fixations, max_fixations, merge_radius)[0]


def reduce_scanpath_with_members(
    fixations: np.ndarray, max_fixations: int, merge_radius: float
) -> tuple[np.ndarray, list[list[int]]]:
    """[`reduce_scanpath`] and, per reduced fixation, the indices of the fixations merged into it (in order), so that
    what is known per fixation (e.g. the findings dictated while looking) can follow the merges."""
    if len(fixations) <= max_fixations:
        return fixations, [[index] for index in range(len(fixations))]
    # each cluster: x, y, duration, number of fixations (which weighs the centre when no member has any dwell)
    clusters, members = [np.array([*fixations[0], 1.0])], [[0]]
    for index, fixation in enumerate(fixations[1:], start=1):
        if math.hypot(*(fixation[:2] - clusters[-1][:2])) < merge_radius:
            clusters[-1] = merge_fixations(clusters[-1], np.array([*fixation, 1.0]))
            members[-1].append(index)
        else:
            clusters.append(np.array([*fixation, 1.0]))
            members.append([index])
    merged = np.stack(clusters)  # (num_clusters, 4)
    while len(merged) > max_fixations:
        gaps = np.hypot(*(merged[1:, :2] - merged[:-1, :2]).T)  # (num_clusters - 1,)
        i = int(np.argmin(gaps))
        merged = np.concatenate([merged[:i], merge_fixations(merged[i], merged[i + 1])[None], merged[i + 2 :]])
        members[i : i + 2] = [members[i] + members[i + 1]]
    return merged[:, :3], members


def merge_fixations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two clusters (x, y, duration, count) as one: at their dwell-weighted mean (their count-weighted mean when
    neither has any dwell), lasting the sum of their durations."""
    weights = (first[2], second[2]) if first[2] + second[2] > 0 else (first[3], second[3])
    centre = (weights[0] * first[:2] + weights[1] * second[:2]) / (weights[0] + weights[1])
    return np.array([*centre, first[2] + second[2], first[3] + second[3]])


__all__ = [
    "MAX_FIXATION_SECONDS",
    "columns_to_fixations",
    "fixation_finding_rows",
    "fixations_to_array",
    "merge_fixations",
    "merged_finding_rows",
    "reduce_scanpath",
    "reduce_scanpath_with_members",
]
