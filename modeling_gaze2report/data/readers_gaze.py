"""Readers of the eye-tracking datasets on MIMIC-CXR images: EGD-CXR and REFLACX."""

import math
import numbers
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

import datasets

from ..observations import CHEXPERT_OBSERVATIONS
from .readers_common import (
    BadFileError,
    BadRowError,
    ReadReport,
    build_dataset_dict,
    check_directory,
    image_size,
    mimic_image,
    parse_chexpert_value,
    parse_float,
    path_inside,
    read_column_by_key,
    read_csv_rows,
    read_json,
    read_text,
)
from .schema import PRESENT_FROM_CERTAINTY, REGION_CERTAINTIES, make_example, normalize_split, report_fields

EGD_LABEL_COLUMNS = {name: name.lower().replace(" ", "_") + "__chx" for name in CHEXPERT_OBSERVATIONS}
EGD_FIXATION_COLUMNS = ("DICOM_ID", "FPOGS", "FPOGD", "FPOGV", "X_ORIGINAL", "Y_ORIGINAL")
EGD_PHRASE_KEYS = ("phrase", "begin_time", "end_time")

REFLACX_COLUMNS = (
    "id", "split", "eye_tracking_data_discarded", "image", "dicom_id", "subject_id", "image_size_x", "image_size_y"
)  # fmt: skip
REFLACX_FIXATION_COLUMNS = ("timestamp_start_fixation", "timestamp_end_fixation", "x_position", "y_position")
REFLACX_WORD_COLUMNS = ("word", "timestamp_start_word", "timestamp_end_word")
REFLACX_ELLIPSE_COLUMNS = ("xmin", "ymin", "xmax", "ymax", "certainty")
# REFLACX label (lower case, phases 1-3) -> CheXpert observation; only the unambiguous ones.
REFLACX_TO_CHEXPERT = {
    "wide mediastinum": "Enlarged Cardiomediastinum",
    "abnormal mediastinal contour": "Enlarged Cardiomediastinum",
    "enlarged cardiac silhouette": "Cardiomegaly",
    "mass": "Lung Lesion",
    "nodule": "Lung Lesion",
    "lung nodule or mass": "Lung Lesion",
    "groundglass opacity": "Lung Opacity",
    "pulmonary edema": "Edema",
    "consolidation": "Consolidation",
    "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "pleural effusion": "Pleural Effusion",
    "pleural thickening": "Pleural Other",
    "fracture": "Fracture",
    "acute fracture": "Fracture",
    "support devices": "Support Devices",
}
REFLACX_NOT_FINDINGS = ("support devices", "quality issue")
MIMIC_RELATIVE_PATH = re.compile(r"files/p\d+/p\d+/s\d+/[^/]+\.dcm$")
SENTENCE_END = (".", "?", "!")  # the punctuation that closes a dictated phrase
WORD_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")
FIXATION_TIME_TOLERANCE = 0.001  # seconds: the sources' timestamps are rounded to the millisecond or finer


def load_egd_cxr(
    root, mimic_root, mimic_reports_root=None, strict=True, split_csv=None, first_fixation_time=0.0
) -> tuple[datasets.DatasetDict, ReadReport]:
    """Read EGD-CXR: one example per master_sheet.csv row, with its fixations from fixations.csv and its dictation
    from `audio_segmentation_transcripts/<dicom_id>/transcript.json`.

    Fixation rows of calibration screens (DICOM_ID not in master_sheet.csv), invalid ones (FPOGV != 1) and those off
    the image (X_ORIGINAL or Y_ORIGINAL = -1, or beyond the image's size) are skipped and counted; a value that is no
    finite number is a bad fixations.csv row (strict: an error naming the line; lenient: that fixation skipped); the
    rest are ordered by start time (FPOGS), with x/y = X_ORIGINAL/Y_ORIGINAL (original pixels) and duration = FPOGD
    (seconds). A fixation that starts before the previous one ends goes back in time: a bad row too.

    Clocks: FPOGS counts from the tracker's start, the transcript from the start of the image's audio, and the files
    give no offset between them. Assumed (docs/data.md): the audio starts with the image's first fixation, at
    `first_fixation_time` seconds on the audio's clock, so `start` = FPOGS - the image's first FPOGS (any of its
    rows) + first_fixation_time. The transcript holds `time_stamped_text`'s entries grouped into phrases: a phrase
    runs to the first entry ending in sentence punctuation (. ? !) and spans its first entry's begin_time to its last
    entry's end_time; a malformed entry is a bad row of transcript.json (strict: an error naming the entry;
    lenient: the image kept without a transcript); a time before the audio starts (negative) is malformed. A
    transcript.json that is no UTF-8 JSON is a bad row of that file. EGD-CXR has no labelled regions (its bounding
    boxes are anatomy).

    The image is `mimic_root / path` with `.dcm` -> `.jpg` (MIMIC-CXR-JPG; a DICOM at the `.dcm` path is converted
    instead); `dicom_id` and `path` must stay inside their folders (`path_inside`), else the master_sheet.csv row is
    bad. The report is the radiologist's dictation while reading (transcript.json full_text), the text that goes with
    the gaze; with `mimic_reports_root` (the mimic-cxr-reports folder) it is the study's MIMIC-CXR report instead
    (`path`'s study folder + `.txt`). Labels come from the `<observation>__chx` columns. Splits come from `split_csv`
    (mimic-cxr-2.0.0-split.csv) when given, else every example is "train" (EGD-CXR has no split).
    """
    first_fixation_time = _finite_seconds(first_fixation_time, "first_fixation_time")
    report = ReadReport("egd-cxr", strict)
    root = check_directory(root, "root")
    mimic_root = check_directory(mimic_root, "mimic_root")
    if mimic_reports_root is not None:
        mimic_reports_root = check_directory(mimic_reports_root, "mimic_reports_root")
    master_path = root / "master_sheet.csv"
    fixations_path = root / "fixations.csv"
    master_rows = list(read_csv_rows(master_path, ("dicom_id", "path", *EGD_LABEL_COLUMNS.values()), report))
    split_by_dicom = read_column_by_key(split_csv, "dicom_id", "split", report) if split_csv else None
    dicom_ids = {row["dicom_id"] for _, row in master_rows}
    fixations_by_dicom = _read_egd_fixations(fixations_path, dicom_ids, first_fixation_time, report)

    examples = []
    for line, row in master_rows:
        dicom_id = row["dicom_id"]
        try:
            image = mimic_image(mimic_root, row["path"], "path")
            transcript_folder = path_inside(root / "audio_segmentation_transcripts", dicom_id, "dicom_id")
            full_text, transcript = _read_egd_transcript(transcript_folder / "transcript.json", report)
            if mimic_reports_root is None:
                text = full_text
            else:
                study = PurePosixPath(row["path"].replace("\\", "/")).parent
                if not study.name:
                    raise ValueError(f"path={row['path']!r} has no study folder (files/p…/p…/s…/<dicom_id>.dcm)")
                text = read_text(path_inside(mimic_reports_root, f"{study}.txt", "path"), "report")
            split = "train"
            if split_by_dicom is not None:
                if dicom_id not in split_by_dicom:
                    raise ValueError(f"dicom_id {dicom_id!r} not found in {split_csv}")
                split = normalize_split(split_by_dicom[dicom_id])
            width, height = image_size(image)
            on_image = []
            for start, fixation_line, fixation in fixations_by_dicom.get(dicom_id, []):
                if fixation["x"] > width or fixation["y"] > height:
                    report.exclude(
                        fixations_path, f"line {fixation_line}", f"fixation beyond its {width}x{height} image"
                    )
                else:
                    on_image.append((start, fixation_line, fixation))
            fixations = _in_time_order(on_image, fixations_path, report)
            example = make_example(
                id=dicom_id,
                image=image,
                **report_fields(text),
                fixations=fixations,
                transcript=transcript,
                labels=[parse_chexpert_value(row[EGD_LABEL_COLUMNS[name]]) for name in CHEXPERT_OBSERVATIONS],
                source="egd-cxr",
                split=split,
            )
        except BadRowError:
            raise
        except (ValueError, FileNotFoundError) as error:
            report.bad_row_because(master_path, f"line {line}", error)
            continue
        if not fixations:
            report.notes["image kept without valid fixations"] += 1
        examples.append(example)
    return build_dataset_dict(examples, report, root), report


def _read_egd_fixations(path: Path, dicom_ids: set[str], first_fixation_time: float, report: ReadReport) -> dict:
    """{dicom_id: [(start, line, fixation)]} from EGD-CXR's fixations.csv, starts on the clock of the image's audio
    (see `load_egd_cxr`)."""
    fixations_by_dicom = defaultdict(list)
    first_start_by_dicom = {}
    for line, row in read_csv_rows(path, EGD_FIXATION_COLUMNS, report):
        location = f"line {line}"
        dicom_id = row["DICOM_ID"]
        if dicom_id not in dicom_ids:
            report.exclude(path, location, "calibration screen (DICOM_ID not in master_sheet.csv)")
            continue
        try:
            start, duration, validity, x, y = (
                parse_float(row, column) for column in ("FPOGS", "FPOGD", "FPOGV", "X_ORIGINAL", "Y_ORIGINAL")
            )
        except ValueError as error:
            report.bad_row(path, location, str(error))
            continue
        first_start_by_dicom[dicom_id] = min(start, first_start_by_dicom.get(dicom_id, start))
        if validity != 1:
            report.exclude(path, location, "invalid fixation (FPOGV != 1)")
        elif x == -1 or y == -1:
            report.exclude(path, location, "fixation off the image (X_ORIGINAL or Y_ORIGINAL = -1)")
        elif x < 0 or y < 0 or duration < 0:
            report.bad_row(path, location, f"negative X_ORIGINAL={x}, Y_ORIGINAL={y} or FPOGD={duration}")
        else:
            fixations_by_dicom[dicom_id].append((start, line, {"x": x, "y": y, "duration": duration}))
    return {
        dicom_id: [
            (start - first_start_by_dicom[dicom_id] + first_fixation_time, line, fixation)
            for start, line, fixation in timed_fixations
        ]
        for dicom_id, timed_fixations in fixations_by_dicom.items()
    }


def _read_egd_transcript(path: Path, report: ReadReport) -> tuple[str, list[dict]]:
    """(full_text, phrases) of an EGD-CXR transcript.json; see `load_egd_cxr` for the phrases."""
    transcript = read_json(path)
    if not isinstance(transcript, dict) or not isinstance(transcript.get("full_text"), str):
        raise BadFileError(path, "full_text", "no full_text string")
    entries = transcript.get("time_stamped_text")
    if not isinstance(entries, list):
        report.bad_row(path, "time_stamped_text", f"expected a list of {EGD_PHRASE_KEYS} entries, got {entries!r}")
        return transcript["full_text"], []
    timed_tokens = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict) or not set(EGD_PHRASE_KEYS) <= set(entry):
                raise ValueError(f"expected an object with keys {EGD_PHRASE_KEYS}, got {entry!r}")
            if not isinstance(entry["phrase"], str) or not entry["phrase"].strip():
                raise ValueError(f"phrase={entry['phrase']!r} is not a non-empty string")
            timed_tokens.append(_timed_token(entry["phrase"], entry["begin_time"], entry["end_time"], timed_tokens))
        except ValueError as error:
            report.bad_row(path, f"time_stamped_text[{index}]", str(error))
            return transcript["full_text"], []
    return transcript["full_text"], _phrases(timed_tokens)


def _timed_token(text: str, start, end, previous_tokens: list) -> tuple[str, float, float]:
    """A spoken token (text, start, end) in seconds; refused unless its times are finite, not negative (before the
    recording starts), in order and after the previous token's start."""
    start, end = _finite_seconds(start, f"{text!r}: start time"), _finite_seconds(end, f"{text!r}: end time")
    if start < 0:
        raise ValueError(f"{text!r} starts at {start:g} s, before the recording starts (a negative time)")
    if end < start:
        raise ValueError(f"{text!r} ends at {end:g} s, before it starts at {start:g} s")
    if previous_tokens and start < previous_tokens[-1][1]:
        raise ValueError(f"{text!r} starts at {start:g} s, before the previous word ({previous_tokens[-1][1]:g} s)")
    return " ".join(text.split()), start, end


def _finite_seconds(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not a finite number of seconds")
    return float(value)


def _phrases(timed_tokens: list[tuple[str, float, float]]) -> list[dict]:
    """Timed tokens grouped into phrases {text, start, end}: a phrase runs to the first token that ends in sentence
    punctuation, its text the tokens joined by spaces, from its first token's start to its last token's end."""
    phrases, tokens = [], []
    for token in timed_tokens:
        tokens.append(token)
        if token is timed_tokens[-1] or token[0].endswith(SENTENCE_END):
            text = " ".join(token_text for token_text, _, _ in tokens)
            phrases.append({"text": text, "start": tokens[0][1], "end": tokens[-1][2]})
            tokens = []
    return phrases


def _in_time_order(timed_fixations: list[tuple], path: Path, report: ReadReport) -> list[dict]:
    """The fixations of [(start, line, fixation)] ordered by start, each given its `start`; one that starts before
    the previous kept one ends (beyond FIXATION_TIME_TOLERANCE) goes back in time: a bad row."""
    fixations = []
    for start, line, fixation in sorted(timed_fixations, key=_start_time):
        if fixations and start < fixations[-1]["start"] + fixations[-1]["duration"] - FIXATION_TIME_TOLERANCE:
            previous_end = fixations[-1]["start"] + fixations[-1]["duration"]
            report.bad_row(
                path,
                f"line {line}",
                f"fixation time goes backwards: it starts at {start:g} s, before "
                f"the previous fixation ends ({previous_end:g} s)",
            )
            continue
        fixations.append({**fixation, "start": start})
    return fixations


def load_reflacx(root, mimic_root, strict=True, phases=(1, 2, 3)) -> tuple[datasets.DatasetDict, ReadReport]:
    """Read REFLACX: one example per reading (row of `main_data/metadata_phase_<phase>.csv`).

    Rows with eye_tracking_data_discarded = True are skipped and counted. The reading's folder `main_data/<id>` must
    stay inside main_data (`path_inside`; else the metadata row is bad). Fixations come from
    `main_data/<id>/fixations.csv` ordered by start time: x/y = x_position/y_position (original pixels), start =
    timestamp_start_fixation, duration = end - start (seconds); fixations outside the image are skipped and counted,
    one that starts before the recording (a negative time) or before the previous one ends is a bad row. A file of the
    reading that cannot be read (a byte that is not UTF-8, a missing column) is a bad row of that file.
    `image_size_x` / `image_size_y` must be positive and equal the image's size (else the metadata row is bad). The
    report is `main_data/<id>/transcription.txt`; the transcript groups `timestamps_transcription.csv`'s words into
    the sentences of transcription.txt (see `_read_reflacx_transcript`); the regions are
    `anomaly_location_ellipses.csv`'s ellipses, each with its certainty (see `_read_reflacx_regions`). The image is
    the `image` column's `files/p…/<dicom_id>.dcm` under `mimic_root` as `.jpg` (MIMIC-CXR-JPG; a DICOM there is
    converted instead). Labels: see `REFLACX_TO_CHEXPERT` and docs/data.md.
    """
    if not phases or not set(phases) <= {1, 2, 3}:
        raise ValueError(f"phases must be a non-empty subset of (1, 2, 3), got {phases!r}")
    report = ReadReport("reflacx", strict)
    main_data = check_directory(root, "root") / "main_data"
    mimic_root = check_directory(mimic_root, "mimic_root")
    examples = []
    for phase in sorted(set(phases)):
        metadata_path = main_data / f"metadata_phase_{phase}.csv"
        for line, row in read_csv_rows(metadata_path, REFLACX_COLUMNS, report):
            location = f"line {line}"
            try:
                discarded = _parse_boolean(row, "eye_tracking_data_discarded")
                if discarded:
                    report.exclude(metadata_path, location, "eye-tracking data discarded")
                    continue
                example = _reflacx_example(row, main_data, mimic_root, report)
            except BadRowError:
                raise
            except (ValueError, FileNotFoundError) as error:
                report.bad_row_because(metadata_path, location, error)
                continue
            if not example["fixations"]:
                report.notes["reading kept without valid fixations"] += 1
            examples.append(example)
    return build_dataset_dict(examples, report, root), report


def _reflacx_example(row: dict[str, str], main_data: Path, mimic_root: Path, report: ReadReport) -> dict:
    image_path = MIMIC_RELATIVE_PATH.search(row["image"])
    if image_path is None:
        raise ValueError(f"image={row['image']!r} has no files/p…/s…/<dicom_id>.dcm part")
    width, height = parse_float(row, "image_size_x"), parse_float(row, "image_size_y")
    if width <= 0 or height <= 0:
        raise ValueError(
            f"image_size_x={row['image_size_x']!r}, image_size_y={row['image_size_y']!r} is not an image size"
        )
    image = mimic_image(mimic_root, image_path.group(0), "image")
    actual_width, actual_height = image_size(image)
    if (actual_width, actual_height) != (width, height):
        raise ValueError(
            f"image_size_x/y {width:g}x{height:g} disagrees with the image's {actual_width}x{actual_height}"
        )
    reading = path_inside(main_data, row["id"], "id")
    text = read_text(reading / "transcription.txt", "report")
    return make_example(
        id=row["id"],
        image=image,
        **report_fields(text),
        fixations=_read_reflacx_fixations(reading / "fixations.csv", width, height, report),
        transcript=_read_reflacx_transcript(reading / "timestamps_transcription.csv", text, report),
        regions=_read_reflacx_regions(reading / "anomaly_location_ellipses.csv", width, height, report),
        labels=_reflacx_labels(row),
        source="reflacx",
        split=normalize_split(row["split"]),
    )


def _read_reflacx_fixations(path: Path, width: float, height: float, report: ReadReport) -> list[dict]:
    timed_fixations = []
    for line, row in read_csv_rows(path, REFLACX_FIXATION_COLUMNS, report):
        location = f"line {line}"
        try:
            start, end, x, y = (parse_float(row, column) for column in REFLACX_FIXATION_COLUMNS)
        except ValueError as error:
            report.bad_row(path, location, str(error))
            continue
        if start < 0:
            report.bad_row(path, location, f"timestamp_start_fixation={start} is before the recording starts")
        elif end < start:
            report.bad_row(path, location, f"timestamp_end_fixation={end} is before timestamp_start_fixation={start}")
        elif not (0 <= x < width and 0 <= y < height):
            report.exclude(path, location, "fixation outside the image")
        else:
            timed_fixations.append((start, line, {"x": x, "y": y, "duration": end - start}))
    return _in_time_order(timed_fixations, path, report)


def _read_reflacx_transcript(path: Path, text: str, report: ReadReport) -> list[dict]:
    """The phrases of a reading: the words of `timestamps_transcription.csv`, in order, matched one to one with the
    whitespace-separated tokens of `text` (transcription.txt), compared without case and edge punctuation (rows that
    are punctuation only, such as ".", are passed over; so are such tokens, which join the token before). Phrases
    are `_phrases` of the timed tokens: transcription.txt's sentences. A word that does not match, a missing or extra
    word, a time that is no finite number, is negative, ends before it starts or goes back before the previous word is
    a bad row (strict: an error naming the line; lenient: the reading kept without a transcript)."""
    tokens = []
    for token in text.split():
        if tokens and not _spoken_word(token):
            tokens[-1] += " " + token
        else:
            tokens.append(token)
    timed_tokens, line = [], 1
    for line, row in read_csv_rows(path, REFLACX_WORD_COLUMNS, report):
        word = _spoken_word(row["word"])
        if not word:
            continue
        try:
            if len(timed_tokens) == len(tokens):
                raise ValueError(f"word {row['word']!r} is beyond the end of transcription.txt")
            expected = tokens[len(timed_tokens)]
            if word != _spoken_word(expected):
                raise ValueError(
                    f"word {row['word']!r} does not match {expected!r}, word {len(timed_tokens) + 1} of "
                    "transcription.txt"
                )
            start, end = (parse_float(row, column) for column in REFLACX_WORD_COLUMNS[1:])
            timed_tokens.append(_timed_token(expected, start, end, timed_tokens))
        except ValueError as error:
            report.bad_row(path, f"line {line}", str(error))
            return []
    if len(timed_tokens) < len(tokens):
        report.bad_row(
            path,
            f"line {line + 1}",
            f"transcription.txt goes on with {tokens[len(timed_tokens)]!r}, which has no timed word",
        )
        return []
    return _phrases(timed_tokens)


def _spoken_word(token: str) -> str:
    return WORD_EDGE_PUNCTUATION.sub("", token).lower()


def _read_reflacx_regions(path: Path, width: float, height: float, report: ReadReport) -> list[dict]:
    """One region per true label column of each ellipse of `anomaly_location_ellipses.csv`: the ellipse's bounding
    box (xmin, ymin, xmax, ymax) clipped to the image, the label mapped by `REFLACX_TO_CHEXPERT`, the ellipse's
    certainty (1-5). A label without a CheXpert observation is skipped and counted; an ellipse with a value that is
    no number, no box (xmax < xmin or ymax < ymin), no overlap with the image, a certainty outside 1-5 or a label
    value other than True/False is a bad row."""
    regions = []
    for line, row in read_csv_rows(path, REFLACX_ELLIPSE_COLUMNS, report):
        location = f"line {line}"
        try:
            x0, y0, x1, y1, certainty = (parse_float(row, column) for column in REFLACX_ELLIPSE_COLUMNS)
            labels = [column for column in row if column not in REFLACX_ELLIPSE_COLUMNS and _parse_boolean(row, column)]
        except ValueError as error:
            report.bad_row(path, location, str(error))
            continue
        if certainty not in REGION_CERTAINTIES:
            report.bad_row(path, location, f"certainty={row['certainty']!r} is not one of {REGION_CERTAINTIES}")
        elif x1 < x0 or y1 < y0:
            report.bad_row(path, location, f"xmin..xmax={x0:g}..{x1:g}, ymin..ymax={y0:g}..{y1:g} is not a box")
        elif x1 < 0 or y1 < 0 or x0 >= width or y0 >= height:
            report.bad_row(
                path, location, f"ellipse ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {width:g}x{height:g} image"
            )
        else:
            box = {"x0": max(x0, 0.0), "y0": max(y0, 0.0), "x1": min(x1, width), "y1": min(y1, height)}
            for label in labels:
                observation = REFLACX_TO_CHEXPERT.get(label.lower())
                if observation is None:
                    report.exclude(path, location, f"ellipse label {label!r} has no CheXpert observation")
                else:
                    regions.append({"label": observation, **box, "certainty": int(certainty)})
    return regions


def _reflacx_labels(row: dict[str, str]) -> list:
    """CheXpert labels from a REFLACX metadata row: 1 where a mapped REFLACX label is present (certainty >= 3 or
    True), 0 where all its mapped labels are absent, None for observations no REFLACX label maps to; No Finding is 1
    when no label other than support devices and quality issue is present."""
    label_columns = [column for column in row if column not in REFLACX_COLUMNS]
    present = {column.lower(): _reflacx_present(row, column) for column in label_columns}
    labels = dict.fromkeys(CHEXPERT_OBSERVATIONS)
    for name, is_present in present.items():
        observation = REFLACX_TO_CHEXPERT.get(name)
        if observation is not None:
            labels[observation] = max(labels[observation] or 0, int(is_present))
    findings_present = [is_present for name, is_present in present.items() if name not in REFLACX_NOT_FINDINGS]
    labels["No Finding"] = int(not any(findings_present))
    return [labels[name] for name in CHEXPERT_OBSERVATIONS]


def _reflacx_present(row: dict[str, str], column: str) -> bool:
    if row[column] in ("True", "False"):
        return _parse_boolean(row, column)
    certainty = parse_float(row, column)
    if certainty not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"label {column}={row[column]!r} is not a certainty 0-5 or True/False")
    return certainty >= PRESENT_FROM_CERTAINTY


def _parse_boolean(row: dict[str, str], column: str) -> bool:
    if row[column] not in ("True", "False"):
        raise ValueError(f"{column}={row[column]!r} is not True or False")
    return row[column] == "True"


def _start_time(timed_fixation: tuple) -> float:
    return timed_fixation[0]
