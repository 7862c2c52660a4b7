"""Reading any model's reports for `gaze2report evaluate`: a JSONL or CSV of id and generated report, with the
reference in the same rows or joined by id from a references file (a JSONL or CSV of id and reference, an R2Gen-style
annotation.json, or a dataset saved with `datasets`' `save_to_disk`)."""

import csv
import json
from pathlib import Path

REPORT_FIELDS = ("id", "generated_report")
REFERENCE_FIELDS = ("id", "reference_report")


def read_rows(path) -> list[dict]:
    """The rows of a JSONL (one object per line) or CSV (a header line) file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such file (a JSONL or CSV file)")
    if file.suffix.lower() == ".csv":
        with open(file, newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    elif file.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {number} is not JSON ({error.msg})") from None
    else:
        raise ValueError(f"{path}: expected a .jsonl or .csv file")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _check_rows(path, rows, fields) -> dict[str, dict]:
    """The rows by id; an error names the first row lacking a string field of `fields` and any repeated id."""
    by_id = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {number} is not an object with {', '.join(fields)}")
        missing = [field for field in fields if not isinstance(row.get(field), str)]
        if missing:
            raise ValueError(f"{path}: row {number} has no string {', '.join(missing)}")
        if row["id"] in by_id:
            raise ValueError(f"{path}: row {number} repeats id {row['id']!r}; each study must appear once")
        by_id[row["id"]] = row
    return by_id


def read_references(path, split: str = "test") -> dict[str, str]:
    """{id: reference report} from a JSONL or CSV of id and reference_report, an R2Gen-style annotation.json
    ({split: [{"id", "report", ...}]}, the entries of `split`), or a `datasets` folder (`save_to_disk`) whose `split`
    (for a DatasetDict) has columns id and report."""
    file = Path(path)
    if file.is_dir():
        import datasets

        dataset = datasets.load_from_disk(str(file))
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{path}: no split {split!r}; it has {', '.join(dataset)} (choose with --split)")
            dataset = dataset[split]
        missing = [column for column in ("id", "report") if column not in dataset.column_names]
        if missing:
            raise ValueError(f"{path}: the dataset has no column {', '.join(missing)}")
        pairs = zip(dataset["id"], dataset["report"])
        rows = [{"id": str(study), "reference_report": report} for study, report in pairs]
    elif file.suffix.lower() == ".json":
        if not file.is_file():
            raise FileNotFoundError(f"{path}: no such file (an R2Gen-style annotation.json)")
        try:
            annotation = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error.msg})") from None
        if not isinstance(annotation, dict) or not isinstance(annotation.get(split), list):
            splits = ", ".join(annotation) if isinstance(annotation, dict) else "none"
            raise ValueError(f"{path}: no list of entries under split {split!r} (splits: {splits}; see --split)")
        rows = [
            {"id": entry.get("id"), "reference_report": entry.get("report")} if isinstance(entry, dict) else entry
            for entry in annotation[split]
        ]
    else:
        rows = read_rows(path)
    return {study: row["reference_report"] for study, row in _check_rows(path, rows, REFERENCE_FIELDS).items()}


def read_report_pairs(path, references_path=None, split: str = "test") -> dict:
    """{"ids", "generated", "references", "references_without_report"} of the reports file `path` (id,
    generated_report, and reference_report unless `references_path` gives the references, joined by id). A report
    whose id has no reference is an error naming it; references without a report are counted, not scored."""
    fields = REPORT_FIELDS if references_path is not None else (*REPORT_FIELDS, "reference_report")
    rows = _check_rows(path, read_rows(path), fields)
    if references_path is None:
        references = {study: row["reference_report"] for study, row in rows.items()}
    else:
        references = read_references(references_path, split)
        unmatched = [study for study in rows if study not in references]
        if unmatched:
            raise ValueError(
                f"{path}: {len(unmatched)} report ids have no reference in {references_path} "
                f"(first: {', '.join(map(repr, unmatched[:3]))})"
            )
    for study, reference in references.items():
        if study in rows and not reference.strip():
            raise ValueError(f"the reference of id {study!r} is empty")
    return {
        "ids": list(rows),
        "generated": [row["generated_report"] for row in rows.values()],
        "references": [references[study] for study in rows],
        "references_without_report": sum(study not in rows for study in references),
    }


def paired_report_files(path_a, path_b, references_path=None, split: str = "test") -> dict:
    """Two models' reports on the same studies, in the order of `path_a`: {"ids", "generated_a", "generated_b",
    "references", "references_without_report"}. The files must hold the same ids; where both carry references they
    must agree."""
    a = read_report_pairs(path_a, references_path, split)
    b = read_report_pairs(path_b, references_path, split)
    only_a, only_b = set(a["ids"]) - set(b["ids"]), set(b["ids"]) - set(a["ids"])
    if only_a or only_b:
        raise ValueError(
            f"--compare needs the same studies in both files: {len(only_a)} ids only in {path_a}, {len(only_b)} only "
            f"in {path_b} (first: {', '.join(map(repr, sorted(only_a | only_b)[:3]))})"
        )
    b_by_id = dict(zip(b["ids"], zip(b["generated"], b["references"])))
    for study, reference in zip(a["ids"], a["references"]):
        if b_by_id[study][1] != reference:
            raise ValueError(f"--compare: the reference of id {study!r} differs between {path_a} and {path_b}")
    return {
        "ids": a["ids"],
        "generated_a": a["generated"],
        "generated_b": [b_by_id[study][0] for study in a["ids"]],
        "references": a["references"],
        "references_without_report": a["references_without_report"],
    }
