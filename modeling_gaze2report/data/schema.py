"""The one dataset schema every Gaze2Report reader and the synthetic world produce, and the helpers they share.

See docs/data.md for the meaning of each field.
"""

import io
import math
import numbers
import os
import re
from pathlib import Path

import datasets
from PIL import Image

from ..image_loading_gaze2report import load_image
from ..observations import CHEXPERT_OBSERVATIONS, FINDING_OBSERVATIONS

VIEWS = ("PA", "AP", "LATERAL", "unknown")
SPLITS = ("train", "validation", "test")
LABEL_VALUES = (1, 0, -1, None)
REGION_LABELS = FINDING_OBSERVATIONS
REGION_CERTAINTIES = (1, 2, 3, 4, 5)  # REFLACX's scale, 1 Unlikely .. 5 Consistent with; the synthetic world says 5
PRESENT_FROM_CERTAINTY = 3  # 1 Unlikely, 2 Less likely: absent; 3 Possibly, 4 Suggestive of, 5 Consistent with: present
REGION_KEYS = ("label", "x0", "y0", "x1", "y1", "certainty")

GAZE2REPORT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "report": datasets.Value("string"),
        "findings": datasets.Value("string"),
        "impression": datasets.Value("string"),
        "fixations": datasets.List(
            {
                "x": datasets.Value("float32"),
                "y": datasets.Value("float32"),
                "duration": datasets.Value("float32"),
                "start": datasets.Value("float64"),
            }
        ),
        "transcript": datasets.List(
            {"text": datasets.Value("string"), "start": datasets.Value("float64"), "end": datasets.Value("float64")}
        ),
        "regions": datasets.List(
            {
                "label": datasets.Value("string"),
                "x0": datasets.Value("float32"),
                "y0": datasets.Value("float32"),
                "x1": datasets.Value("float32"),
                "y1": datasets.Value("float32"),
                "certainty": datasets.Value("int8"),
            }
        ),
        "labels": datasets.List(datasets.Value("int8"), length=len(CHEXPERT_OBSERVATIONS)),
        "view": datasets.Value("string"),
        "source": datasets.Value("string"),
        "split": datasets.Value("string"),
    }
)

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validate": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}

SECTION_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/()]*[A-Z)]):", re.MULTILINE)


def normalize_split(name: str) -> str:
    """Map a dataset's own split name ("validate", "val", "train"...) to train / validation / test."""
    split = SPLIT_ALIASES.get(str(name).strip().lower())
    if split is None:
        raise ValueError(f"Unknown split name {name!r}; expected one of {sorted(SPLIT_ALIASES)}")
    return split


def split_report(text: str) -> tuple[str, str]:
    """Return the (findings, impression) of a MIMIC-style report with "FINDINGS:" / "IMPRESSION:" section headers
    (each section runs to the next upper-case header at a line start, such as "RECOMMENDATION(S):"). Text without
    either header is all findings. Whitespace runs become single spaces."""
    if not isinstance(text, str):
        raise ValueError(f"Report text must be a string, got {type(text).__name__}")
    headers = list(SECTION_HEADER.finditer(text))
    sections = {}
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        sections.setdefault(header.group(1), text[header.end() : end])
    if "FINDINGS" not in sections and "IMPRESSION" not in sections:
        return _squeeze(text), ""
    return _squeeze(sections.get("FINDINGS", "")), _squeeze(sections.get("IMPRESSION", ""))


def report_fields(text: str) -> dict:
    """The report, findings and impression fields of an example from one report text; `report` is the findings
    followed by the impression (the whole text when it has no such sections)."""
    return report_from_sections(*split_report(text))


def report_from_sections(findings: str, impression: str) -> dict:
    """The report, findings and impression fields from the two sections: the report is findings then impression."""
    return {
        "report": " ".join(part for part in (findings, impression) if part),
        "findings": findings,
        "impression": impression,
    }


def image_field(path: str | os.PathLike):
    """The `image` value for an image file: the path itself for formats `datasets.Image` decodes, or PNG bytes made
    by `load_image` for DICOM files (so the feature always holds a decodable image; the path is left out, as
    `datasets.Image` would open it instead of the bytes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.suffix.lower() != ".dcm":
        return str(path)
    buffer = io.BytesIO()
    load_image(path).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def make_example(
    id: str,
    image,
    report: str,
    findings: str,
    impression: str = "",
    fixations: list[dict] | None = None,
    labels: list | None = None,
    view: str = "unknown",
    source: str = "",
    split: str = "train",
    transcript: list[dict] | None = None,
    regions: list[dict] | None = None,
) -> dict:
    """Validate and return one example of `GAZE2REPORT_FEATURES`. `image` is a path, a PIL image or a
    {"path", "bytes"} dict; `fixations` are {x, y, duration, start} dicts in original pixels and seconds, in viewing
    order (None or [] when no gaze was recorded): `start` is on the clock of the transcript, NaN (or left out) where
    the source has no time, and never earlier than the previous fixation's start; `transcript` holds the dictation's
    timed phrases {text, start, end} in spoken order; `regions` the labelled boxes {label, x0, y0, x1, y1, certainty}
    in original pixels, `label` one of REGION_LABELS and `certainty` one of REGION_CERTAINTIES (both None or [] where
    there are none); `labels` are 14 values in CHEXPERT_OBSERVATIONS order, each 1, 0, -1 or None (None: not
    mentioned; all None when not given)."""
    if not isinstance(id, str) or not id:
        raise ValueError(f"Example id must be a non-empty string, got {id!r}")
    for name, text in (("report", report), ("findings", findings), ("impression", impression)):
        if not isinstance(text, str):
            raise ValueError(f"Example {id}: field {name!r} must be a string, got {type(text).__name__}")
    if not report.strip():
        raise ValueError(f"Example {id}: field 'report' is empty")
    if not isinstance(image, (str, os.PathLike, Image.Image, dict)):
        raise ValueError(
            f"Example {id}: field 'image' must be a path, a PIL image or a dict, got {type(image).__name__}"
        )
    if view not in VIEWS:
        raise ValueError(f"Example {id}: field 'view' is {view!r}; expected one of {VIEWS}")
    if split not in SPLITS:
        raise ValueError(f"Example {id}: field 'split' is {split!r}; expected one of {SPLITS}")
    if not isinstance(source, str):
        raise ValueError(f"Example {id}: field 'source' must be a string, got {type(source).__name__}")
    labels = [None] * len(CHEXPERT_OBSERVATIONS) if labels is None else list(labels)
    if len(labels) != len(CHEXPERT_OBSERVATIONS) or any(value not in LABEL_VALUES for value in labels):
        raise ValueError(
            f"Example {id}: field 'labels' must hold {len(CHEXPERT_OBSERVATIONS)} values from {LABEL_VALUES}, "
            f"got {labels}"
        )
    fixations = [_check_fixation(fixation, id, index) for index, fixation in enumerate(fixations or [])]
    _check_fixation_starts(fixations, id)
    return {
        "id": id,
        "image": str(image) if isinstance(image, os.PathLike) else image,
        "report": report,
        "findings": findings,
        "impression": impression,
        "fixations": fixations,
        "transcript": _check_transcript(transcript or [], id),
        "regions": [
            check_region(region, f"Example {id}: region {index}") for index, region in enumerate(regions or [])
        ],
        "labels": labels,
        "view": view,
        "source": source,
        "split": split,
    }


def _check_fixation(fixation: dict, id: str, index: int) -> dict:
    if not isinstance(fixation, dict) or not {"x", "y", "duration"} <= set(fixation) <= {"x", "y", "duration", "start"}:
        raise ValueError(
            f"Example {id}: fixation {index} must be a dict with keys x, y, duration and optionally start, "
            f"got {fixation!r}"
        )
    where = f"Example {id}: fixation {index}"
    values = {key: _number(fixation[key], f"{where} {key}", minimum=0) for key in ("x", "y", "duration")}
    start = fixation.get("start", math.nan)
    values["start"] = math.nan if _is_nan(start) else _number(start, f"{where} start")
    return values


def _check_fixation_starts(fixations: list[dict], id: str) -> None:
    """All starts are NaN or none is, and they never go backwards."""
    timed = [not math.isnan(fixation["start"]) for fixation in fixations]
    if any(timed) and not all(timed):
        raise ValueError(f"Example {id}: fixation {timed.index(False)} has no start while others have one")
    for index in range(1, len(fixations) if all(timed) else 0):
        if fixations[index]["start"] < fixations[index - 1]["start"]:
            raise ValueError(
                f"Example {id}: fixation {index} start={fixations[index]['start']!r} goes back before fixation "
                f"{index - 1}'s start={fixations[index - 1]['start']!r}; fixations are in viewing order"
            )


def _check_transcript(transcript: list[dict], id: str) -> list[dict]:
    phrases = []
    for index, phrase in enumerate(transcript):
        where = f"Example {id}: transcript phrase {index}"
        if not isinstance(phrase, dict) or set(phrase) != {"text", "start", "end"}:
            raise ValueError(f"{where} must be a dict with keys text, start, end, got {phrase!r}")
        if not isinstance(phrase["text"], str) or not phrase["text"].strip():
            raise ValueError(f"{where} text={phrase['text']!r} must be a non-empty string")
        start, end = _number(phrase["start"], f"{where} start"), _number(phrase["end"], f"{where} end")
        if end < start:
            raise ValueError(f"{where} ends (end={end!r}) before it starts (start={start!r})")
        if phrases and start < phrases[-1]["start"]:
            raise ValueError(f"{where} start={start!r} is before phrase {index - 1}'s; phrases are in spoken order")
        phrases.append({"text": phrase["text"], "start": start, "end": end})
    return phrases


def check_region(region: dict, where: str) -> dict:
    """A labelled region {label, x0, y0, x1, y1, certainty} with float coordinates, refused with a ValueError that
    starts with `where` and names the field unless every key is there and valid (see `make_example`)."""
    if not isinstance(region, dict):
        raise ValueError(f"{where} must be a dict with keys {', '.join(REGION_KEYS)}, got {region!r}")
    missing = [key for key in REGION_KEYS if key not in region]
    unknown = [key for key in region if key not in REGION_KEYS]
    if missing or unknown:
        problem = f"has no field {', '.join(map(repr, missing))}" if missing else f"has unknown field(s) {unknown}"
        raise ValueError(f"{where} {problem}; a region has keys {', '.join(REGION_KEYS)}, got {region!r}")
    if region["label"] not in REGION_LABELS:
        raise ValueError(f"{where} label={region['label']!r} is not one of {REGION_LABELS}")
    if isinstance(region["certainty"], bool) or region["certainty"] not in REGION_CERTAINTIES:
        raise ValueError(f"{where} certainty={region['certainty']!r} is not one of {REGION_CERTAINTIES}")
    box = {key: _number(region[key], f"{where} {key}", minimum=0) for key in ("x0", "y0", "x1", "y1")}
    if box["x1"] < box["x0"] or box["y1"] < box["y0"]:
        raise ValueError(f"{where} (x0, y0, x1, y1)={tuple(box.values())} is not a box: x1 < x0 or y1 < y0")
    return {"label": region["label"], **box, "certainty": int(region["certainty"])}


def _number(value, name: str, minimum: float = -math.inf) -> float:
    """`value` as a float, refused unless a finite real number >= `minimum` (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < minimum:
        bound = "" if minimum == -math.inf else f" >= {minimum:g}"
        raise ValueError(f"{name}={value!r} must be a finite number{bound}")
    return float(value)


def _is_nan(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value)


def _squeeze(text: str) -> str:
    return " ".join(text.split())
