"""Readers of the report-only datasets: MIMIC-CXR (R2Gen annotation.json + the MIMIC-CXR-JPG CSVs) and IU X-Ray (R2Gen
annotation.json and/or the NLMCXR report XMLs)."""

import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import datasets

from ..observations import CHEXPERT_OBSERVATIONS
from .readers_common import (
    ReadReport,
    build_dataset_dict,
    check_directory,
    parse_chexpert_value,
    path_inside,
    read_column_by_key,
    read_csv_rows,
    read_json,
)
from .schema import image_field, make_example, normalize_split, report_fields, report_from_sections

MIMIC_VIEWS = {"PA": "PA", "AP": "AP", "LATERAL": "LATERAL", "LL": "LATERAL", "XTABLE LATERAL": "LATERAL"}


def load_mimic_cxr(
    annotation_path, image_root, split_csv=None, metadata_csv=None, chexpert_csv=None, strict=True
) -> tuple[datasets.DatasetDict, ReadReport]:
    """Read MIMIC-CXR from an R2Gen-style `annotation.json` (image = `image_root / image_path[0]`, which must stay
    inside image_root: `path_inside`).

    `split_csv` (mimic-cxr-2.0.0-split.csv) overrides the annotation's splits by dicom_id; `metadata_csv`
    (mimic-cxr-2.0.0-metadata.csv) gives the view from ViewPosition (PA, AP, LATERAL/LL -> LATERAL, others "unknown");
    `chexpert_csv` (mimic-cxr-2.0.0-chexpert.csv or -negbio.csv) gives the labels by study_id (all None without it,
    and for studies it lacks, counted in the report's notes). The report text is split into findings/impression when
    it has those section headers, else it is all findings.
    """
    report = ReadReport("mimic-cxr", strict)
    image_root = check_directory(image_root, "image_root")
    annotation = _read_annotation(annotation_path)
    split_by_dicom = read_column_by_key(split_csv, "dicom_id", "split", report) if split_csv else None
    view_by_dicom = read_column_by_key(metadata_csv, "dicom_id", "ViewPosition", report) if metadata_csv else None
    labels_by_study = _read_chexpert_labels(chexpert_csv, report) if chexpert_csv else None

    examples = []
    for split_name, entries in annotation.items():
        for index, entry in enumerate(entries):
            report.rows_read[str(annotation_path)] += 1
            try:
                image_path = _entry_image_paths(entry)[0]
                dicom_id = Path(image_path).stem
                split = normalize_split(split_name)
                if split_by_dicom is not None:
                    split = normalize_split(_lookup(split_by_dicom, dicom_id, "dicom_id", split_csv))
                view = "unknown"
                if view_by_dicom is not None:
                    view = MIMIC_VIEWS.get(_lookup(view_by_dicom, dicom_id, "dicom_id", metadata_csv), "unknown")
                labels = None
                if labels_by_study is not None:
                    labels = labels_by_study.get(str(entry.get("study_id")))
                    if labels is None:
                        report.notes[f"study not in {chexpert_csv}: labels all None"] += 1
                examples.append(
                    make_example(
                        id=str(entry["id"]),
                        image=image_field(path_inside(image_root, image_path, "image_path")),
                        **report_fields(entry["report"]),
                        labels=labels,
                        view=view,
                        source="mimic-cxr",
                        split=split,
                    )
                )
            except (ValueError, KeyError, FileNotFoundError) as error:
                report.bad_row(annotation_path, f"{split_name}[{index}]", _describe(error))
    return build_dataset_dict(examples, report, annotation_path), report


def load_iu_xray(
    annotation_path=None, image_root=None, reports_xml_dir_or_tgz=None, strict=True
) -> tuple[datasets.DatasetDict, ReadReport]:
    """Read IU X-Ray: one example per image (IU studies have two views, and the report belongs to both).

    Paths read from the files must stay inside image_root (`path_inside`), else the entry or report is a bad row.
    With `annotation_path` (R2Gen's annotation.json): image = `image_root / image_path[i]`, id =
    "<study id>/<image name without suffix>" (e.g. "CXR2384_IM-0942/0"), the annotation's report and split; given
    `reports_xml_dir_or_tgz` too, findings and impression come from the matching NLMCXR XML.
    With only `reports_xml_dir_or_tgz` (a folder of NLMCXR XMLs or the NLMCXR_reports.tgz): image =
    `image_root / "<parentImage id>.png"`, id = the parentImage id, report = findings then impression, split "train"
    (NLMCXR has no official split). Reports without images or without findings and impression are skipped and
    counted. IU has no view information: view is "unknown".
    """
    if annotation_path is None and reports_xml_dir_or_tgz is None:
        raise ValueError("load_iu_xray needs annotation_path, reports_xml_dir_or_tgz or both")
    report = ReadReport("iu-xray", strict)
    image_root = check_directory(image_root, "image_root")
    nlmcxr_reports = _read_nlmcxr_reports(reports_xml_dir_or_tgz, report) if reports_xml_dir_or_tgz else None
    if annotation_path is None:
        examples = [
            make_example(id=image_id, image=image_field(image_path), **fields, source="iu-xray", split="train")
            for image_id, image_path, fields in _nlmcxr_examples(nlmcxr_reports, image_root, report)
        ]
        return build_dataset_dict(examples, report, reports_xml_dir_or_tgz), report

    examples = []
    sections_by_study = None
    if nlmcxr_reports is not None:
        sections_by_study = {
            image_id.rsplit("-", 1)[0]: fields
            for fields, image_ids, _ in nlmcxr_reports
            for image_id in image_ids
            if image_id  # an id-less parentImage names no study; the annotation gives the images
        }
    for split_name, entries in _read_annotation(annotation_path).items():
        for index, entry in enumerate(entries):
            report.rows_read[str(annotation_path)] += 1
            try:
                fields = report_fields(entry["report"])
                if sections_by_study is not None:
                    sections = _lookup(sections_by_study, str(entry["id"]), "study id", reports_xml_dir_or_tgz)
                    fields.update(findings=sections["findings"], impression=sections["impression"])
                examples += [
                    make_example(
                        id=Path(image_path).with_suffix("").as_posix(),
                        image=image_field(path_inside(image_root, image_path, "image_path")),
                        **fields,
                        source="iu-xray",
                        split=normalize_split(split_name),
                    )
                    for image_path in _entry_image_paths(entry)
                ]
            except (ValueError, KeyError, FileNotFoundError) as error:
                report.bad_row(annotation_path, f"{split_name}[{index}]", _describe(error))
    return build_dataset_dict(examples, report, annotation_path), report


def _read_annotation(path) -> dict[str, list]:
    annotation = read_json(path)
    if not isinstance(annotation, dict) or not all(isinstance(entries, list) for entries in annotation.values()):
        raise ValueError(f"{path}: expected an object mapping split names to lists of entries")
    for split_name in annotation:
        normalize_split(split_name)
    return annotation


def _entry_image_paths(entry) -> list[str]:
    if not isinstance(entry, dict):
        raise ValueError(f"entry must be an object, got {type(entry).__name__}")
    image_paths = entry["image_path"]
    if not isinstance(image_paths, list) or not image_paths or not all(isinstance(p, str) for p in image_paths):
        raise ValueError(f"image_path must be a non-empty list of paths, got {image_paths!r}")
    return image_paths


def _read_chexpert_labels(path, report: ReadReport) -> dict[str, list]:
    columns = ("study_id",) + CHEXPERT_OBSERVATIONS
    labels_by_study = {}
    for line, row in read_csv_rows(path, columns, report):
        try:
            labels_by_study[row["study_id"]] = [parse_chexpert_value(row[name]) for name in CHEXPERT_OBSERVATIONS]
        except ValueError as error:
            report.bad_row(path, f"line {line}", str(error))
    return labels_by_study


def _read_nlmcxr_reports(source, report: ReadReport) -> list[tuple[dict, list[str], str]]:
    """[(report fields, parentImage ids, file name)] of every NLMCXR XML in a folder or a .tgz archive."""
    source = Path(source)
    if source.is_dir():
        named_xmls = [(str(path), path.read_bytes()) for path in sorted(source.rglob("*.xml"))]
    elif source.is_file():
        try:
            with tarfile.open(source, "r:*") as archive:
                named_xmls = [
                    (f"{source}:{member.name}", archive.extractfile(member).read())
                    for member in sorted(archive.getmembers(), key=lambda member: member.name)
                    if member.isfile() and member.name.endswith(".xml")
                ]
        except tarfile.TarError as error:
            raise ValueError(f"Cannot read {source} as a .tgz archive: {error}") from error
    else:
        raise FileNotFoundError(f"NLMCXR reports not found: {source}")
    if not named_xmls:
        raise ValueError(f"No .xml report files in {source}")

    reports = []
    for name, content in named_xmls:
        report.rows_read[name] += 1
        try:
            root = ElementTree.fromstring(content)
        except ElementTree.ParseError as error:
            report.bad_row(name, "xml", f"invalid XML: {error}")
            continue
        sections = {
            element.get("Label"): " ".join((element.text or "").split()) for element in root.iter("AbstractText")
        }
        fields = report_from_sections(sections.get("FINDINGS", ""), sections.get("IMPRESSION", ""))
        image_ids = [element.get("id") for element in root.iter("parentImage")]
        reports.append((fields, image_ids, name))
    return reports


def _nlmcxr_examples(nlmcxr_reports, image_root: Path, report: ReadReport):
    """(parentImage id, image path, report fields) of each image of the NLMCXR reports; the image path is
    `image_root / "<id>.png"` under `path_inside`'s rule."""
    for fields, image_ids, name in nlmcxr_reports:
        if not image_ids:
            report.exclude(name, "xml", "report has no parentImage")
        elif not fields["report"]:
            report.exclude(name, "xml", "report has no FINDINGS or IMPRESSION text")
        else:
            for index, image_id in enumerate(image_ids):
                location = f"parentImage {image_id}" if image_id else f"parentImage[{index}]"
                try:
                    if not image_id:
                        raise ValueError("parentImage has no id")
                    id_path = path_inside(image_root, image_id, "parentImage id")
                    image_path = id_path.with_name(id_path.name + ".png")
                    if not image_path.is_file():
                        raise FileNotFoundError(f"image not found: {image_path}")
                except (ValueError, FileNotFoundError) as error:
                    report.bad_row(name, location, str(error))
                    continue
                yield image_id, image_path, fields


def _lookup(table: dict, key: str, key_name: str, table_path):
    if key not in table:
        raise ValueError(f"{key_name} {key!r} not found in {table_path}")
    return table[key]


def _describe(error: Exception) -> str:
    return f"missing field {error}" if isinstance(error, KeyError) else str(error)
