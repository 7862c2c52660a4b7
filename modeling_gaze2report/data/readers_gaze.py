"""Readers of the eye-tracking datasets on MIMIC-CXR images: EGD-CXR and REFLACX."""

import re
from collections import defaultdict
from pathlib import Path

import datasets

from ..observations import CHEXPERT_OBSERVATIONS
from .readers_common import (
    BadRowError,
    ReadReport,
    build_dataset_dict,
    check_directory,
    image_size,
    mimic_image,
    parse_chexpert_value,
    parse_float,
    read_column_by_key,
    read_csv_rows,
    read_json,
)
from .schema import make_example, normalize_split, report_fields


EGD_LABEL_COLUMNS = {name: name.lower().replace(" ", "_") + "__chx" for name in CHEXPERT_OBSERVATIONS}
EGD_FIXATION_COLUMNS = ("DICOM_ID", "FPOGS", "FPOGD", "FPOGV", "X_ORIGINAL", "Y_ORIGINAL")

REFLACX_COLUMNS = (
    "id", "split", "eye_tracking_data_discarded", "image", "dicom_id", "subject_id", "image_size_x", "image_size_y"
)  # fmt: skip
REFLACX_FIXATION_COLUMNS = ("timestamp_start_fixation", "timestamp_end_fixation", "x_position", "y_position")
REFLACX_PRESENT_FROM = 3  # REFLACX certainty 1 Unlikely .. 5 Consistent with; >= 3 counts as present
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


def load_egd_cxr(
    root, mimic_root, mimic_reports_root=None, strict=True, split_csv=None
) -> tuple[datasets.DatasetDict, ReadReport]:
    """Read EGD-CXR: one example per master_sheet.csv row, with its fixations from fixations.csv.

    Fixation rows of calibration screens (DICOM_ID not in master_sheet.csv), invalid ones (FPOGV != 1) and those off
    the image (X_ORIGINAL or Y_ORIGINAL = -1, or beyond the image's size) are skipped and counted; a value that is no
    finite number is a bad fixations.csv row (strict: an error naming the line; lenient: that fixation skipped); the
    rest are ordered by start time (FPOGS), with x/y = X_ORIGINAL/Y_ORIGINAL (original pixels) and duration = FPOGD (seconds). The image is `mimic_root /
    path` with `.dcm` -> `.jpg` (MIMIC-CXR-JPG; a DICOM at the `.dcm` path is converted instead). The report is the
    radiologist's dictation while reading (`audio_segmentation_transcripts/<dicom_id>/transcript.json` full_text), the
    text that goes with the gaze; with `mimic_reports_root` (the mimic-cxr-reports folder) it is the study's MIMIC-CXR
    report instead. Labels come from the `<observation>__chx` columns. Splits come from `split_csv`
    (mimic-cxr-2.0.0-split.csv) when given, else every example is "train" (EGD-CXR has no split).
    """
    report = ReadReport("egd-cxr", strict)
    root = check_directory(root, "root")
    mimic_root = check_directory(mimic_root, "mimic_root")
    if mimic_reports_root is not None:
        mimic_reports_root = check_directory(mimic_reports_root, "mimic_reports_root")
    master_path = root / "master_sheet.csv"
    master_rows = list(read_csv_rows(master_path, ("dicom_id", "path", *EGD_LABEL_COLUMNS.values()), report))
    split_by_dicom = read_column_by_key(split_csv, "dicom_id", "split", report) if split_csv else None
    dicom_ids = {row["dicom_id"] for _, row in master_rows}
    fixations_by_dicom = _read_egd_fixations(root / "fixations.csv", dicom_ids, report)

    examples = []
    for line, row in master_rows:
        dicom_id = row["dicom_id"]
        try:
            if mimic_reports_root is None:
                text = _read_transcript(root / "audio_segmentation_transcripts" / dicom_id / "transcript.json")
            else:
                text = _read_text(mimic_reports_root / Path(row["path"]).parent.with_suffix(".txt"))
            split = "train"
            if split_by_dicom is not None:
                if dicom_id not in split_by_dicom:
                    raise ValueError(f"dicom_id {dicom_id!r} not found in {split_csv}")
                split = normalize_split(split_by_dicom[dicom_id])
            image = mimic_image(mimic_root, row["path"])
            width, height = image_size(image)
            fixations = []
            for start, fixation_line, fixation in sorted(fixations_by_dicom.get(dicom_id, []), key=_start_time):
                if fixation["x"] > width or fixation["y"] > height:
                    report.exclude(root / "fixations.csv", f"line {fixation_line}",
                                   f"fixation beyond its {width}x{height} image")
                else:
                    fixations.append(fixation)
            example = make_example(
                id=dicom_id,
                image=image,
                **report_fields(text),
                fixations=fixations,
                labels=[parse_chexpert_value(row[EGD_LABEL_COLUMNS[name]]) for name in CHEXPERT_OBSERVATIONS],
                source="egd-cxr",
                split=split,
            )
        except (ValueError, FileNotFoundError) as error:
            report.bad_row(master_path, f"line {line}", str(error))
            continue
        if not fixations:
            report.notes["image kept without valid fixations"] += 1
        examples.append(example)
    return build_dataset_dict(examples, report, root), report


def _read_egd_fixations(path: Path, dicom_ids: set[str], report: ReadReport) -> dict[str, list]:
    """{dicom_id: [(start time, line, fixation)]} from EGD-CXR's fixations.csv."""
    fixations_by_dicom = defaultdict(list)
    for line, row in read_csv_rows(path, EGD_FIXATION_COLUMNS, report):
        location = f"line {line}"
        if row["DICOM_ID"] not in dicom_ids:
            report.exclude(path, location, "calibration screen (DICOM_ID not in master_sheet.csv)")
            continue
        try:
            start, duration, validity, x, y = (
                parse_float(row, column) for column in ("FPOGS", "FPOGD", "FPOGV", "X_ORIGINAL", "Y_ORIGINAL")
            )
        except ValueError as error:
            report.bad_row(path, location, str(error))
            continue
        if validity != 1:
            report.exclude(path, location, "invalid fixation (FPOGV != 1)")
        elif x == -1 or y == -1:
            report.exclude(path, location, "fixation off the image (X_ORIGINAL or Y_ORIGINAL = -1)")
        elif x < 0 or y < 0 or duration < 0:
            report.bad_row(path, location, f"negative X_ORIGINAL={x}, Y_ORIGINAL={y} or FPOGD={duration}")
        else:
            fixations_by_dicom[row["DICOM_ID"]].append((start, line, {"x": x, "y": y, "duration": duration}))
    return fixations_by_dicom


def load_reflacx(root, mimic_root, strict=True, phases=(1, 2, 3)) -> tuple[datasets.DatasetDict, ReadReport]:
    """Read REFLACX: one example per reading (row of `main_data/metadata_phase_<phase>.csv`).

    Rows with eye_tracking_data_discarded = True are skipped and counted. Fixations come from
    `main_data/<id>/fixations.csv` ordered by start time: x/y = x_position/y_position (original pixels), duration =
    end - start (seconds); fixations outside the image are skipped and counted. `image_size_x` / `image_size_y` must be
    positive and equal the image's size (else the metadata row is bad). The report is
    `main_data/<id>/transcription.txt`; the image is the `image` column's `files/p…/<dicom_id>.dcm` under `mimic_root`
    as `.jpg` (MIMIC-CXR-JPG; a DICOM there is converted instead). Labels: see `REFLACX_TO_CHEXPERT` and docs/data.md.
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
                report.bad_row(metadata_path, location, str(error))
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
        raise ValueError(f"image_size_x={row['image_size_x']!r}, image_size_y={row['image_size_y']!r} is not an "
                         "image size")
    image = mimic_image(mimic_root, image_path.group(0))
    actual_width, actual_height = image_size(image)
    if (actual_width, actual_height) != (width, height):
        raise ValueError(f"image_size_x/y {width:g}x{height:g} disagrees with the image's "
                         f"{actual_width}x{actual_height}")
    reading = main_data / row["id"]
    return make_example(
        id=row["id"],
        image=image,
        **report_fields(_read_text(reading / "transcription.txt")),
        fixations=_read_reflacx_fixations(reading / "fixations.csv", width, height, report),
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
        if end < start:
            report.bad_row(path, location, f"timestamp_end_fixation={end} is before timestamp_start_fixation={start}")
        elif not (0 <= x < width and 0 <= y < height):
            report.exclude(path, location, "fixation outside the image")
        else:
            timed_fixations.append((start, line, {"x": x, "y": y, "duration": end - start}))
    return [fixation for _, _, fixation in sorted(timed_fixations, key=_start_time)]


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
    return certainty >= REFLACX_PRESENT_FROM


def _parse_boolean(row: dict[str, str], column: str) -> bool:
    if row[column] not in ("True", "False"):
        raise ValueError(f"{column}={row[column]!r} is not True or False")
    return row[column] == "True"


def _read_transcript(path: Path) -> str:
    transcript = read_json(path)
    if not isinstance(transcript, dict) or not isinstance(transcript.get("full_text"), str):
        raise ValueError(f"{path}: no full_text string")
    return transcript["full_text"]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"report not found: {path}")
    return path.read_text(encoding="utf-8")


def _start_time(timed_fixation: tuple) -> float:
    return timed_fixation[0]
