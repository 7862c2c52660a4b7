"""What every real-data reader shares: the `ReadReport`, the one CSV-reading helper, JSON reading, MIMIC image paths,
label parsing and the assembly of a `datasets.DatasetDict`."""

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image

from .schema import GAZE2REPORT_FEATURES, SPLITS, image_field


class BadRowError(ValueError):
    """A malformed row met by a strict reader."""


@dataclass(frozen=True)
class Skip:
    """One row left out of a dataset: the file, where in it ("line 12", "train[3]") and why."""

    file: str
    location: str
    reason: str


@dataclass
class ReadReport:
    """What a reader read and what it left out. `skipped` holds every row left out: rows the dataset's own rules
    exclude (calibration screens, invalid fixations...), always, and malformed rows, which raise a `ValueError`
    instead when `strict` is set. `notes` counts kept examples with a caveat (e.g. no valid fixations)."""

    source: str
    strict: bool = True
    rows_read: Counter = field(default_factory=Counter)
    examples_kept: Counter = field(default_factory=Counter)
    skipped: list[Skip] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)

    def exclude(self, file, location: str, reason: str) -> None:
        """Record a row the dataset's rules leave out (never an error)."""
        self.skipped.append(Skip(str(file), location, reason))

    def bad_row(self, file, location: str, problem: str) -> None:
        """Raise on a malformed row when strict, else record it as skipped."""
        if self.strict:
            raise BadRowError(f"{file}, {location}: {problem} (pass strict=False to skip and count such rows)")
        self.skipped.append(Skip(str(file), location, problem))

    def skip_counts(self) -> Counter:
        return Counter(skip.reason for skip in self.skipped)

    def summary(self) -> str:
        lines = [
            f"{self.source}: read {sum(self.rows_read.values())} rows from {len(self.rows_read)} files, "
            f"kept {sum(self.examples_kept.values())} examples ({dict(self.examples_kept)}), "
            f"skipped {len(self.skipped)} rows"
        ]
        lines += [f"  skipped {count}: {reason}" for reason, count in self.skip_counts().most_common()]
        lines += [f"  note {count}: {note}" for note, count in self.notes.most_common()]
        return "\n".join(lines)


def read_csv_rows(path, required_columns, report: ReadReport) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) for each row of the CSV file at `path`. A missing file raises
    FileNotFoundError, a missing column ValueError; a row with the wrong number of fields goes to `report.bad_row`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    line = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file, skipinitialspace=True)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in required_columns if name not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}; the header has {header}")
            line = reader.line_num + 1
            for fields in reader:
                row_line, line = line, reader.line_num + 1
                if not fields:
                    continue
                report.rows_read[str(path)] += 1
                if len(fields) != len(header):
                    report.bad_row(path, f"line {row_line}", f"expected {len(header)} fields, found {len(fields)}")
                    continue
                yield row_line, dict(zip(header, (value.strip() for value in fields)))
    except (csv.Error, UnicodeDecodeError) as error:
        raise ValueError(f"{path}, line {line}: unreadable CSV: {error}") from error


def read_json(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: invalid JSON: {error.msg}") from error


def read_column_by_key(path, key_column: str, value_column: str, report: ReadReport) -> dict[str, str]:
    """{row[key_column]: row[value_column]} over a CSV file; a repeated key with another value is a bad row."""
    values = {}
    for line, row in read_csv_rows(path, (key_column, value_column), report):
        key, value = row[key_column], row[value_column]
        if values.get(key, value) != value:
            report.bad_row(path, f"line {line}", f"{key_column} {key!r} repeated with {value_column} {value!r}")
            continue
        values[key] = value
    return values


def parse_chexpert_value(text: str) -> int | None:
    """A CheXpert label cell ("1.0", "0.0", "-1.0", "1", blank) -> 1, 0, -1 or None (not mentioned)."""
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in (1.0, 0.0, -1.0):
        raise ValueError(f"label value {text!r} is not 1, 0, -1 or blank")
    return int(value)


def parse_float(row: dict[str, str], column: str) -> float:
    """The column's value as a finite float; NaN, infinity and text are refused, naming the column and value."""
    try:
        value = float(row[column])
    except ValueError:
        raise ValueError(f"{column}={row[column]!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{column}={row[column]!r} is not a finite number")
    return value


def image_size(image) -> tuple[int, int]:
    """(width, height) of an `image` value (a path, or PNG bytes as `image_field` makes for DICOM), from its header."""
    source = io.BytesIO(image["bytes"]) if isinstance(image, dict) else image
    with Image.open(source) as opened:
        return opened.size


def mimic_image(mimic_root, relative_path: str):
    """The `image` value for a MIMIC-CXR image given its path relative to the dataset root (`files/p…/<id>.dcm` or
    `.jpg`): the MIMIC-CXR-JPG file when present, else the DICOM file converted by `load_image`."""
    relative_path = Path(relative_path)
    jpg_path = Path(mimic_root) / relative_path.with_suffix(".jpg")
    if jpg_path.is_file():
        return str(jpg_path)
    dicom_path = Path(mimic_root) / relative_path.with_suffix(".dcm")
    if dicom_path.is_file():
        return image_field(dicom_path)
    raise FileNotFoundError(f"image not found: {jpg_path} (nor {dicom_path.name})")


def build_dataset_dict(examples: list[dict], report: ReadReport, description) -> datasets.DatasetDict:
    """One `datasets.Dataset` per split present, in train / validation / test order."""
    if not examples:
        raise ValueError(f"No examples could be read from {description}.\n{report.summary()}")
    by_split = {split: [example for example in examples if example["split"] == split] for split in SPLITS}
    report.examples_kept.update({split: len(rows) for split, rows in by_split.items() if rows})
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(rows, features=GAZE2REPORT_FEATURES)
            for split, rows in by_split.items()
            if rows
        }
    )


def check_directory(path, argument: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{argument} must be a path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{argument} is not a directory: {path}")
    return path
