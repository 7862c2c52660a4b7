"""What every real-data reader shares: the `ReadReport`, the one path rule, the one CSV-reading helper, text and JSON
reading, MIMIC image paths, label parsing and the assembly of a `datasets.DatasetDict`."""

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import datasets
from PIL import Image

from .schema import GAZE2REPORT_FEATURES, SPLITS, image_field


class BadRowError(ValueError):
    """A malformed row met by a strict reader."""


class BadFileError(ValueError):
    """A file that cannot be read as its format; names the file and where in it ("line 3")."""

    def __init__(self, file, location: str, problem: str):
        super().__init__(f"{file}, {location}: {problem}")
        self.file, self.location, self.problem = str(file), location, problem


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

    def bad_row_because(self, file, location: str, error: Exception) -> None:
        """`bad_row` for the row at `file`, `location` that failed with `error`; a `BadFileError`, met in a file the
        row points to, names that file and where in it instead."""
        if isinstance(error, BadFileError):
            self.bad_row(error.file, error.location, error.problem)
        else:
            self.bad_row(file, location, str(error))

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


def path_inside(root, relative_path, field: str) -> Path:
    """`root / relative_path` for a path read from a dataset's own files (`field` names where it was read). Refused
    with a ValueError naming `field` and the value unless it is a non-empty relative path that stays inside `root`:
    absolute paths, drive letters and `..` parts are refused (backslashes count as separators)."""
    if not isinstance(relative_path, str) or not relative_path.strip() or "\0" in relative_path:
        raise ValueError(f"{field}={relative_path!r} is not a path")
    parts = PurePosixPath(relative_path.replace("\\", "/")).parts
    if PurePosixPath(relative_path).is_absolute() or PureWindowsPath(relative_path).drive or ".." in parts:
        raise ValueError(
            f"{field}={relative_path!r} leaves {root}: paths read from the dataset's files must be relative and stay "
            "inside it"
        )
    if not parts:
        raise ValueError(f"{field}={relative_path!r} names no file under {root}")
    return Path(root).joinpath(*parts)


def read_csv_rows(path, required_columns, report: ReadReport) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) for each row of the CSV file at `path`. A missing file raises
    FileNotFoundError; a missing column or an unreadable file a `BadFileError`; a row with the wrong number of fields
    goes to `report.bad_row`."""
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
                raise BadFileError(path, "line 1", f"missing column(s) {missing}; the header has {header}")
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
        raise BadFileError(path, f"line {line}", f"unreadable CSV: {error}") from error


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of the file at `path` (`what` it is, for the messages). A missing file raises
    FileNotFoundError; a byte that is not UTF-8 a `BadFileError` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    content = path.read_bytes()
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise BadFileError(path, f"line {line}", f"byte {content[error.start]:#04x} is not UTF-8 text") from None


def read_json(path):
    """The JSON value in the file at `path`; a missing file raises FileNotFoundError, a bad byte or invalid JSON a
    `BadFileError` naming the file and the line."""
    text = read_text(path, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadFileError(path, f"line {error.lineno}", f"invalid JSON: {error.msg}") from None


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


def mimic_image(mimic_root, relative_path: str, field: str):
    """The `image` value for a MIMIC-CXR image given its path relative to the dataset root (`files/p…/<id>.dcm` or
    `.jpg`, read from the files' `field`, under `path_inside`'s rule): the MIMIC-CXR-JPG file when present, else the
    DICOM file converted by `load_image`."""
    path = path_inside(mimic_root, relative_path, field)
    jpg_path = path.with_suffix(".jpg")
    if jpg_path.is_file():
        return str(jpg_path)
    dicom_path = path.with_suffix(".dcm")
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
