"""The real-data readers on hand-written fixtures in each dataset's real format (tests/fixtures/); the images they
point at are written by the tests."""

import csv
import io
import json
import math
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from datasets import Dataset, load_from_disk
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from modeling_gaze2report.data import (
    GAZE2REPORT_FEATURES,
    load_egd_cxr,
    load_iu_xray,
    load_mimic_cxr,
    load_reflacx,
    make_example,
    split_report,
)
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS

FIXTURES = Path(__file__).parent / "fixtures"
EGD_A = "1e2d3c4b-a5a5a5a5-b6b6b6b6-c7c7c7c7-d8d8d8d8"
EGD_B = "6f5e4d3c-e9e9e9e9-f0f0f0f0-a1a1a1a1-b2b2b2b2"


def write_jpeg(path: Path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size[::-1], dtype=np.uint8)).save(path)


def write_dicom(path: Path, rows=30, columns=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.update(
        dict(
            Rows=rows, Columns=columns, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
            BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0,
        )
    )  # fmt: skip
    dataset.PixelData = (np.arange(rows * columns, dtype=np.uint16).reshape(rows, columns) % 4096).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def labels_of(example) -> dict:
    return {name: value for name, value in zip(CHEXPERT_OBSERVATIONS, example["labels"]) if value is not None}


# MIMIC-CXR


@pytest.fixture
def mimic(tmp_path):
    root = tmp_path / "mimic"
    shutil.copytree(FIXTURES / "mimic", root)
    for split_entries in json.loads((root / "annotation.json").read_text()).values():
        for entry in split_entries:
            write_jpeg(tmp_path / "images" / entry["image_path"][0])
    return root, tmp_path / "images"


def test_mimic_reader_uses_split_view_and_chexpert_csvs(mimic):
    root, images = mimic
    dataset, report = load_mimic_cxr(
        root / "annotation.json",
        images,
        split_csv=root / "mimic-cxr-2.0.0-split.csv",
        metadata_csv=root / "mimic-cxr-2.0.0-metadata.csv",
        chexpert_csv=root / "mimic-cxr-2.0.0-chexpert.csv",
    )
    assert dataset["train"].features == GAZE2REPORT_FEATURES
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 1, "validation": 2, "test": 1}
    by_id = {example["id"][:8]: example for split in dataset.values() for example in split}
    assert {key: example["view"] for key, example in by_id.items()} == {
        "0a1b2c3d": "PA", "5e6f7a8b": "AP", "9c0d1e2f": "LATERAL", "3a4b5c6d": "unknown"
    }  # fmt: skip
    assert labels_of(by_id["0a1b2c3d"]) == {"No Finding": 1, "Pleural Effusion": 0, "Pneumothorax": 0}
    assert labels_of(by_id["5e6f7a8b"]) == {"Cardiomegaly": 1, "Pleural Effusion": -1}
    assert by_id["9c0d1e2f"]["labels"] == [None] * 14  # study absent from the CheXpert CSV
    assert sum(report.notes.values()) == 1
    assert by_id["5e6f7a8b"]["findings"] == "The heart is mildly enlarged. Small left pleural effusion."
    assert by_id["5e6f7a8b"]["impression"] == "Mild cardiomegaly."
    assert by_id["0a1b2c3d"]["findings"] == by_id["0a1b2c3d"]["report"] and by_id["0a1b2c3d"]["impression"] == ""
    assert by_id["0a1b2c3d"]["image"].size == (40, 30)
    assert by_id["0a1b2c3d"]["fixations"] == [] and by_id["0a1b2c3d"]["source"] == "mimic-cxr"
    assert report.examples_kept == {"train": 1, "validation": 2, "test": 1} and report.skipped == []


def test_mimic_reader_without_csvs_keeps_annotation_splits(mimic):
    root, images = mimic
    dataset, _ = load_mimic_cxr(root / "annotation.json", images)
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 2, "validation": 1, "test": 1}
    assert set(dataset["train"]["view"]) == {"unknown"}


def test_mimic_reader_strict_names_the_bad_entry_and_lenient_counts_every_skip(mimic):
    root, images = mimic
    with pytest.raises(ValueError, match=r"annotation_malformed\.json, train\[1\]: missing field 'report'"):
        load_mimic_cxr(root / "annotation_malformed.json", images)
    dataset, report = load_mimic_cxr(root / "annotation_malformed.json", images, strict=False)
    assert len(dataset["train"]) == 1
    assert [skip.location for skip in report.skipped] == ["train[1]", "train[2]", "train[3]"]
    reasons = [skip.reason for skip in report.skipped]
    assert "image not found" in reasons[1] and "'report' is empty" in reasons[2]
    assert sum(report.rows_read.values()) == 4


def test_mimic_reader_reports_malformed_csv_rows_and_missing_columns(mimic, tmp_path):
    root, images = mimic
    chexpert = root / "mimic-cxr-2.0.0-chexpert_malformed.csv"
    with pytest.raises(ValueError, match=r"chexpert_malformed\.csv, line 3: label value '2\.0'"):
        load_mimic_cxr(root / "annotation.json", images, chexpert_csv=chexpert)
    _, report = load_mimic_cxr(root / "annotation.json", images, chexpert_csv=chexpert, strict=False)
    assert [skip.location for skip in report.skipped] == ["line 3", "line 4"]
    assert "expected 16 fields, found 9" in report.skipped[1].reason
    no_view = tmp_path / "metadata.csv"
    no_view.write_text("dicom_id,subject_id,study_id\nx,1,2\n")
    with pytest.raises(ValueError, match=r"metadata\.csv, line 1: missing column\(s\) \['ViewPosition'\]"):
        load_mimic_cxr(root / "annotation.json", images, metadata_csv=no_view)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_mimic_cxr(root / "nowhere.json", images)


# IU X-Ray


def write_iu_pngs(image_root: Path, names):
    for name in names:
        write_jpeg(image_root / name)


def test_iu_reader_gives_one_example_per_view_with_xml_sections(tmp_path):
    write_iu_pngs(
        tmp_path, ["CXR1_1_IM-0001/0.png", "CXR1_1_IM-0001/1.png", "CXR2_IM-0652/0.png", "CXR2_IM-0652/1.png"]
    )
    dataset, report = load_iu_xray(
        FIXTURES / "iu" / "annotation.json", tmp_path, reports_xml_dir_or_tgz=FIXTURES / "iu" / "ecgen-radiology"
    )
    assert dataset["train"]["id"] == ["CXR1_1_IM-0001/0", "CXR1_1_IM-0001/1"]
    assert dataset["test"]["id"] == ["CXR2_IM-0652/0", "CXR2_IM-0652/1"]
    test_example = dataset["test"][0]
    assert test_example["report"] == "the heart is enlarged . small bilateral pleural effusions . cardiomegaly ."
    assert test_example["findings"] == "The heart is enlarged. Small bilateral pleural effusions."
    assert test_example["impression"] == "Cardiomegaly."
    assert test_example["view"] == "unknown" and test_example["source"] == "iu-xray"
    assert report.examples_kept == {"train": 2, "test": 2}


def test_iu_reader_reads_nlmcxr_xml_straight_from_a_tgz(tmp_path):
    archive = tmp_path / "NLMCXR_reports.tgz"
    with tarfile.open(archive, "w:gz") as tgz:
        tgz.add(FIXTURES / "iu" / "ecgen-radiology", arcname="ecgen-radiology")
    image_ids = ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001", "CXR2_IM-0652-1001", "CXR2_IM-0652-2001"]
    write_iu_pngs(tmp_path / "png", [f"{image_id}.png" for image_id in image_ids])
    dataset, report = load_iu_xray(image_root=tmp_path / "png", reports_xml_dir_or_tgz=archive)
    assert list(dataset) == ["train"] and dataset["train"]["id"] == image_ids
    assert dataset["train"][0]["report"] == (
        "The cardiac silhouette and mediastinum size are within normal limits. There is no focal consolidation. "
        "Normal chest x-XXXX."
    )
    assert report.skip_counts() == {"report has no parentImage": 1, "report has no FINDINGS or IMPRESSION text": 1}
    (tmp_path / "png" / "CXR2_IM-0652-2001.png").unlink()
    with pytest.raises(ValueError, match=r"2\.xml, parentImage CXR2_IM-0652-2001: image not found"):
        load_iu_xray(image_root=tmp_path / "png", reports_xml_dir_or_tgz=archive)
    dataset, report = load_iu_xray(image_root=tmp_path / "png", reports_xml_dir_or_tgz=archive, strict=False)
    assert len(dataset["train"]) == 3 and len(report.skipped) == 3


# EGD-CXR


@pytest.fixture
def egd(tmp_path):
    root = tmp_path / "egd"
    shutil.copytree(FIXTURES / "egd", root)
    mimic_root = tmp_path / "mimic-cxr-jpg"
    write_jpeg(mimic_root / f"files/p15/p15000001/s55000001/{EGD_A}.jpg")
    write_dicom(tmp_path / "mimic-cxr-jpg" / f"files/p16/p16000002/s56000002/{EGD_B}.dcm", rows=24, columns=36)
    return root, mimic_root


def test_egd_reader_orders_valid_fixations_and_counts_every_skipped_row(egd):
    root, mimic_root = egd
    dataset, report = load_egd_cxr(root, mimic_root)
    first, second = dataset["train"]
    assert first["id"] == EGD_A and first["source"] == "egd-cxr"
    assert [(f["x"], f["y"]) for f in first["fixations"]] == [(12.0, 8.0), (30.0, 20.0), (5.0, 25.0)]
    assert [f["duration"] for f in first["fixations"]] == pytest.approx([0.31, 0.25, 0.40])
    assert report.skip_counts() == {
        "calibration screen (DICOM_ID not in master_sheet.csv)": 2,
        "invalid fixation (FPOGV != 1)": 1,
        "fixation off the image (X_ORIGINAL or Y_ORIGINAL = -1)": 1,
    }
    assert labels_of(first) == {"Cardiomegaly": 1, "Edema": 1, "Pleural Effusion": -1, "Support Devices": 0}
    assert first["report"] == "Enlarged heart with interstitial edema and a small right effusion."
    assert second["image"].size == (36, 24)  # the DICOM, converted to a decodable image
    assert report.rows_read[str(root / "fixations.csv")] == 8


def test_egd_reader_takes_mimic_reports_and_split_when_asked(egd, tmp_path):
    root, mimic_root = egd
    split_csv = tmp_path / "split.csv"
    split_csv.write_text(
        f"dicom_id,study_id,subject_id,split\n{EGD_A},55000001,15000001,test\n{EGD_B},56000002,16000002,train\n"
    )
    dataset, _ = load_egd_cxr(root, mimic_root, mimic_reports_root=FIXTURES / "mimic-cxr-reports", split_csv=split_csv)
    (first,), (second,) = dataset["test"], dataset["train"]
    assert first["findings"] == (
        "The heart is enlarged. There is mild interstitial edema. Small right pleural effusion."
    )
    assert first["impression"] == "Cardiomegaly with mild pulmonary edema."
    assert first["report"] == first["findings"] + " " + first["impression"]
    assert second["findings"] == "" and second["report"] == "Right lower lobe consolidation, concerning for pneumonia."


def test_egd_reader_strict_and_lenient_on_malformed_fixations(egd):
    root, mimic_root = egd
    shutil.copy(root / "fixations_malformed.csv", root / "fixations.csv")
    with pytest.raises(ValueError, match=r"fixations\.csv, line 4: expected 37 fields, found 34"):
        load_egd_cxr(root, mimic_root)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert len(dataset["train"][0]["fixations"]) == 1
    assert [skip.location for skip in report.skipped] == ["line 2", "line 4", "line 5"]
    assert "FPOGD='n/a' is not a number" in report.skipped[2].reason
    assert report.notes == {"image kept without valid fixations": 1}


# REFLACX


@pytest.fixture
def reflacx_mimic(tmp_path):
    for path in (
        "p17/p17000001/s57000001/2b3c4d5e-13131313-24242424-35353535-46464646.jpg",
        "p18/p18000002/s58000002/8a9b0c1d-57575757-68686868-79797979-80808080.jpg",
        "p19/p19000003/s59000003/4c4c4c4c-91919191-a2a2a2a2-b3b3b3b3-c4c4c4c4.jpg",
    ):
        write_jpeg(tmp_path / "files" / path, size=(48, 40))
    return tmp_path


def test_reflacx_reader_maps_labels_and_filters_fixations(reflacx_mimic):
    dataset, report = load_reflacx(FIXTURES / "reflacx", reflacx_mimic, phases=(1, 3))
    assert {split: rows["id"] for split, rows in dataset.items()} == {
        "train": ["P102R108753"], "validation": ["P109R167017"], "test": ["P300R000001"]
    }  # fmt: skip
    reading = dataset["train"][0]
    assert [(f["x"], f["y"]) for f in reading["fixations"]] == [(24.0, 20.0), (10.0, 30.0), (30.5, 12.0)]
    assert [f["duration"] for f in reading["fixations"]] == pytest.approx([0.289, 0.45, 0.36])
    assert report.skip_counts() == {
        "eye-tracking data discarded": 1, "fixation outside the image": 1,
        "ellipse label 'Emphysema' has no CheXpert observation": 1,
        "ellipse label 'Pleural abnormality' has no CheXpert observation": 1,
    }  # fmt: skip
    assert labels_of(reading) == {
        "No Finding": 0, "Enlarged Cardiomediastinum": 1, "Cardiomegaly": 1, "Lung Lesion": 0, "Lung Opacity": 0,
        "Edema": 0, "Consolidation": 0, "Atelectasis": 0, "Pneumothorax": 0, "Pleural Effusion": 0,
        "Pleural Other": 0, "Fracture": 0, "Support Devices": 1,
    }  # fmt: skip
    assert labels_of(dataset["validation"][0])["No Finding"] == 1
    phase_3 = labels_of(dataset["test"][0])
    assert phase_3["Lung Lesion"] == 1 and phase_3["No Finding"] == 0
    assert "Pleural Effusion" not in phase_3 and "Pleural Other" not in phase_3  # "Pleural abnormality" is unmapped
    assert reading["report"] == "Enlarged cardiac silhouette. Possible small left effusion. Endotracheal tube in place."
    assert reading["image"].size == (48, 40)


def test_reflacx_reader_missing_files(reflacx_mimic, tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata_phase_2.csv"):
        load_reflacx(FIXTURES / "reflacx", reflacx_mimic)
    root = tmp_path / "reflacx"
    shutil.copytree(FIXTURES / "reflacx", root)
    (root / "main_data" / "P109R167017" / "transcription.txt").unlink()
    with pytest.raises(ValueError, match=r"metadata_phase_1\.csv, line 4: report not found: .*P109R167017"):
        load_reflacx(root, reflacx_mimic, phases=(1,))
    dataset, report = load_reflacx(root, reflacx_mimic, phases=(1,), strict=False)
    assert dataset["train"]["id"] == ["P102R108753"] and "validation" not in dataset
    assert len(report.skipped) == 4  # discarded, outside the image, the missing report, the Emphysema ellipse


# schema helpers


def test_split_report_and_make_example_validation():
    text = (
        "FINAL REPORT\n INDICATION: cough.\n FINDINGS:\n Clear lungs.\n\n IMPRESSION: Normal.\n"
        " RECOMMENDATION(S): None."
    )
    assert split_report(text) == ("Clear lungs.", "Normal.")
    assert split_report("no headers here.") == ("no headers here.", "")
    example = make_example(
        id="a", image="x.png", report="r", findings="r", fixations=[{"x": 1, "y": 2, "duration": 0.1}]
    )
    assert example["labels"] == [None] * 14
    fixation = example["fixations"][0]
    assert (fixation["x"], fixation["y"], fixation["duration"]) == (1.0, 2.0, 0.1)
    with pytest.raises(ValueError, match="'view' is 'oblique'"):
        make_example(id="a", image="x.png", report="r", findings="r", view="oblique")
    with pytest.raises(ValueError, match="fixation 0 x=-1"):
        make_example(id="a", image="x.png", report="r", findings="r", fixations=[{"x": -1, "y": 2, "duration": 0.1}])
    with pytest.raises(ValueError, match="'labels' must hold 14 values"):
        make_example(id="a", image="x.png", report="r", findings="r", labels=[2] * 14)


@pytest.mark.parametrize("image_path", ["/etc/passwd", "../../outside.jpg", "files/../../../etc/passwd", "C:/x.jpg"])
def test_annotation_image_paths_must_stay_inside_image_root(mimic, tmp_path, image_path):
    root, images = mimic
    annotation = json.loads((root / "annotation.json").read_text())
    annotation["train"][0]["image_path"] = [image_path]
    escaping = tmp_path / "escaping.json"
    escaping.write_text(json.dumps(annotation))
    with pytest.raises(ValueError, match=r"escaping\.json, train\[0\]: image_path=.* leaves .*images: paths read from"):
        load_mimic_cxr(escaping, images)
    dataset, report = load_mimic_cxr(escaping, images, strict=False)
    assert len(dataset["train"]) == 1 and [skip.location for skip in report.skipped] == ["train[0]"]


def rewrite_csv_cell(path, line, column, value):
    """Sets `column` of the CSV row on file line `line` (the header is line 1)."""
    rows = list(csv.reader(path.read_text().splitlines()))
    rows[line - 1][rows[0].index(column)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue())


def test_egd_fixations_beyond_the_image_are_skipped_and_counted(egd):
    root, mimic_root = egd
    rewrite_csv_cell(root / "fixations.csv", 4, "X_ORIGINAL", "5000")  # the (12, 8) fixation of EGD_A
    dataset, report = load_egd_cxr(root, mimic_root)
    assert [(f["x"], f["y"]) for f in dataset["train"][0]["fixations"]] == [(30.0, 20.0), (5.0, 25.0)]
    assert [skip.location for skip in report.skipped if "beyond" in skip.reason] == ["line 4"]


def test_egd_nan_start_names_the_fixations_line_and_lenient_drops_that_fixation_only(egd):
    root, mimic_root = egd
    rewrite_csv_cell(root / "fixations.csv", 4, "FPOGS", "nan")
    with pytest.raises(ValueError, match=r"fixations\.csv, line 4: FPOGS='nan' is not a finite number"):
        load_egd_cxr(root, mimic_root)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert len(dataset["train"]) == 2 and len(dataset["train"][0]["fixations"]) == 2
    assert [skip.location for skip in report.skipped if "FPOGS" in skip.reason] == ["line 4"]


@pytest.mark.parametrize(
    "value, message",
    [("nan", "is not a finite number"), ("-5", "is not an image size"), ("100", "disagrees with the image's 48x40")],
)
def test_reflacx_bad_image_size_names_the_metadata_row(reflacx_mimic, tmp_path, value, message):
    root = tmp_path / "reflacx"
    shutil.copytree(FIXTURES / "reflacx", root)
    metadata = root / "main_data" / "metadata_phase_1.csv"
    reading = next(csv.DictReader(metadata.read_text().splitlines()))
    assert reading["eye_tracking_data_discarded"] == "False"
    rewrite_csv_cell(metadata, 2, "image_size_x", value)
    with pytest.raises(ValueError, match=rf"metadata_phase_1\.csv, line 2: .*{message}"):
        load_reflacx(root, reflacx_mimic, phases=(1, 3))
    dataset, report = load_reflacx(root, reflacx_mimic, phases=(1, 3), strict=False)
    assert reading["id"] not in [id_ for rows in dataset.values() for id_ in rows["id"]]
    assert any(skip.location == "line 2" and message.split("'")[0] in skip.reason for skip in report.skipped)


# Fixation times, transcripts and regions (#17)


@pytest.fixture
def reflacx_copy(tmp_path):
    root = tmp_path / "reflacx"
    shutil.copytree(FIXTURES / "reflacx", root)
    return root


def test_reflacx_reader_gives_fixation_starts_transcript_phrases_and_regions(reflacx_mimic, tmp_path):
    dataset, _ = load_reflacx(FIXTURES / "reflacx", reflacx_mimic, phases=(1, 3))
    reading = dataset["train"][0]
    assert [f["start"] for f in reading["fixations"]] == pytest.approx([0.512, 0.950, 1.950])
    # the word file of this reading carries "." rows (as REFLACX's own code expects), phase 3's has none
    assert reading["transcript"] == [
        {"text": "Enlarged cardiac silhouette.", "start": 1.6, "end": 2.9},
        {"text": "Possible small left effusion.", "start": 3.4, "end": 4.9},
        {"text": "Endotracheal tube in place.", "start": 5.5, "end": 6.9},
    ]
    assert " ".join(phrase["text"] for phrase in reading["transcript"]) == reading["report"]
    assert [(r["label"], r["x0"], r["y0"], r["x1"], r["y1"], r["certainty"]) for r in reading["regions"]] == [
        ("Cardiomegaly", 14, 18, 40, 36, 4),
        ("Pleural Effusion", 30, 20, 48, 40, 2),  # the ellipse's box clipped to the 48x40 image
        ("Support Devices", 20, 0, 28, 22, 5),
        ("Enlarged Cardiomediastinum", 20, 0, 28, 22, 5),  # one ellipse, two labels
    ]
    phase_3 = dataset["test"][0]
    assert [(p["text"], p["start"], p["end"]) for p in phase_3["transcript"]] == [
        ("Right upper lobe nodule.", 0.3, 1.5), ("Pleural thickening on the left.", 2.0, 3.5)
    ]  # fmt: skip
    assert [(r["label"], r["certainty"]) for r in phase_3["regions"]] == [("Lung Lesion", 5)]
    assert dataset["validation"][0]["regions"] == []
    dataset.save_to_disk(tmp_path / "saved")
    loaded = load_from_disk(str(tmp_path / "saved"))
    assert loaded["train"].features == GAZE2REPORT_FEATURES
    assert loaded["train"][0]["transcript"] == reading["transcript"]
    assert loaded["train"][0]["regions"] == reading["regions"]
    assert loaded["train"][0]["fixations"] == reading["fixations"]


def strict_refuses_and_lenient_skips(root, mimic_root, match: str):
    """The phase-1 REFLACX reading under `root`: strict mode raises a ValueError matching `match`; returns what
    lenient mode reads (dataset, read report)."""
    with pytest.raises(ValueError, match=match):
        load_reflacx(root, mimic_root, phases=(1,))
    return load_reflacx(root, mimic_root, phases=(1,), strict=False)


def test_reflacx_transcript_whose_words_do_not_match_is_named_or_skipped(reflacx_mimic, reflacx_copy):
    words = reflacx_copy / "main_data" / "P102R108753" / "timestamps_transcription.csv"
    rewrite_csv_cell(words, 4, "word", "shadow")
    dataset, report = strict_refuses_and_lenient_skips(
        reflacx_copy,
        reflacx_mimic,
        r"timestamps_transcription\.csv, line 4: word 'shadow' does not match 'silhouette\.'",
    )
    reading = dataset["train"][0]
    assert reading["transcript"] == [] and len(reading["fixations"]) == 3  # the reading is kept
    assert [skip.location for skip in report.skipped if skip.file == str(words)] == ["line 4"]


def test_reflacx_transcript_missing_its_last_words_is_refused(reflacx_mimic, reflacx_copy):
    words = reflacx_copy / "main_data" / "P109R167017" / "timestamps_transcription.csv"
    words.write_text("\n".join(words.read_text().splitlines()[:3]) + "\n")  # "radiograph" and "." dropped
    with pytest.raises(ValueError, match=r"line 4: transcription.txt goes on with 'radiograph\.'"):
        load_reflacx(reflacx_copy, reflacx_mimic, phases=(1,))


def test_reflacx_word_time_going_backwards_is_a_bad_row(reflacx_mimic, reflacx_copy):
    words = reflacx_copy / "main_data" / "P109R167017" / "timestamps_transcription.csv"
    rewrite_csv_cell(words, 3, "timestamp_start_word", "0.5")  # "chest" before "Normal"
    with pytest.raises(ValueError, match=r"line 3: 'chest' starts at 0.5 s, before the previous word"):
        load_reflacx(reflacx_copy, reflacx_mimic, phases=(1,))


def test_reflacx_ellipse_outside_the_image_is_named_or_skipped(reflacx_mimic, reflacx_copy):
    ellipses = reflacx_copy / "main_data" / "P102R108753" / "anomaly_location_ellipses.csv"
    rewrite_csv_cell(ellipses, 2, "xmin", "50")
    rewrite_csv_cell(ellipses, 2, "xmax", "60")
    dataset, report = strict_refuses_and_lenient_skips(
        reflacx_copy, reflacx_mimic, r"anomaly_location_ellipses\.csv, line 2: ellipse \(50, 18, 60, 36\) lies outside"
    )
    assert [r["label"] for r in dataset["train"][0]["regions"]] == [
        "Pleural Effusion", "Support Devices", "Enlarged Cardiomediastinum"
    ]  # fmt: skip
    assert [skip.location for skip in report.skipped if skip.file == str(ellipses)] == ["line 2", "line 5"]


@pytest.mark.parametrize(
    "column, value, message",
    [("certainty", "7", "certainty='7' is not one of"), ("Fracture", "yes", "Fracture='yes' is not True or False")],
)
def test_reflacx_ellipse_with_a_bad_certainty_or_label_value_names_its_line(
    reflacx_mimic, reflacx_copy, column, value, message
):
    ellipses = reflacx_copy / "main_data" / "P102R108753" / "anomaly_location_ellipses.csv"
    rewrite_csv_cell(ellipses, 3, column, value)
    with pytest.raises(ValueError, match=rf"anomaly_location_ellipses\.csv, line 3: {message}"):
        load_reflacx(reflacx_copy, reflacx_mimic, phases=(1,))


def test_reflacx_fixation_time_going_backwards_is_named_or_skipped(reflacx_mimic, reflacx_copy):
    fixations = reflacx_copy / "main_data" / "P102R108753" / "fixations.csv"
    rewrite_csv_cell(fixations, 3, "timestamp_start_fixation", "1.200")  # starts inside the 0.95-1.40 fixation
    with pytest.raises(
        ValueError,
        match=r"fixations\.csv, line 3: fixation time goes backwards: it starts at 1.2 s, "
        r"before the previous fixation ends \(1.4 s\)",
    ):
        load_reflacx(reflacx_copy, reflacx_mimic, phases=(1,))
    dataset, report = load_reflacx(reflacx_copy, reflacx_mimic, phases=(1,), strict=False)
    assert [(f["x"], f["start"]) for f in dataset["train"][0]["fixations"]] == [(24.0, 0.512), (10.0, 0.95)]
    assert sorted(skip.location for skip in report.skipped if skip.file == str(fixations)) == ["line 3", "line 5"]


def test_egd_fixation_starts_count_from_the_images_first_fixation_and_phrases_end_at_sentence_punctuation(egd):
    root, mimic_root = egd
    dataset, _ = load_egd_cxr(root, mimic_root)
    first, second = dataset["train"]
    # FPOGS 1.9, 3.0, 4.7; the image's first fixation (any row) starts at FPOGS 1.9
    assert [f["start"] for f in first["fixations"]] == pytest.approx([0.0, 1.1, 2.8])
    assert first["transcript"] == [
        {"text": "Enlarged heart with interstitial edema and a small right effusion.", "start": 1.2, "end": 5.0}
    ]
    assert [(p["text"], p["start"], p["end"]) for p in second["transcript"]] == [
        ("Right lower lobe consolidation.", 0.6, 2.1), ("Possibly pneumonia.", 2.4, 3.6)
    ]  # fmt: skip
    assert second["fixations"][0]["start"] == 0.0 and first["regions"] == [] == second["regions"]
    shifted, _ = load_egd_cxr(root, mimic_root, first_fixation_time=0.5)
    assert [f["start"] for f in shifted["train"][0]["fixations"]] == pytest.approx([0.5, 1.6, 3.3])
    with pytest.raises(ValueError, match="first_fixation_time=nan is not a finite number"):
        load_egd_cxr(root, mimic_root, first_fixation_time=float("nan"))


def test_egd_malformed_transcript_entry_is_named_or_the_image_kept_without_transcript(egd):
    root, mimic_root = egd
    path = root / "audio_segmentation_transcripts" / EGD_B / "transcript.json"
    transcript = json.loads(path.read_text())
    transcript["time_stamped_text"][1]["end_time"] = 1.0
    path.write_text(json.dumps(transcript))
    with pytest.raises(
        ValueError,
        match=r"transcript\.json, time_stamped_text\[1\]: 'Possibly' ends at 1 s, before "
        r"it starts at 2.4 s",
    ):
        load_egd_cxr(root, mimic_root)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert len(dataset["train"]) == 2 and dataset["train"][1]["transcript"] == []
    assert [skip.location for skip in report.skipped if skip.file == str(path)] == ["time_stamped_text[1]"]


def test_egd_fixation_time_going_backwards_is_named_or_skipped(egd):
    root, mimic_root = egd
    rewrite_csv_cell(root / "fixations.csv", 3, "FPOGS", "2.0")  # inside the fixation of FPOGS 1.9, FPOGD 0.31
    with pytest.raises(ValueError, match=r"fixations\.csv, line 3: fixation time goes backwards"):
        load_egd_cxr(root, mimic_root)
    dataset, _ = load_egd_cxr(root, mimic_root, strict=False)
    assert [(f["x"], f["y"]) for f in dataset["train"][0]["fixations"]] == [(12.0, 8.0), (5.0, 25.0)]


def test_examples_without_times_transcript_or_regions_round_trip_with_nan_starts(tmp_path):
    example = make_example(
        id="a", image=str(tmp_path / "x.png"), report="r", findings="r", fixations=[{"x": 1, "y": 2, "duration": 0.1}]
    )
    assert math.isnan(example["fixations"][0]["start"])
    assert example["transcript"] == [] and example["regions"] == []
    write_jpeg(tmp_path / "x.png")
    Dataset.from_list([example], features=GAZE2REPORT_FEATURES).save_to_disk(tmp_path / "saved")
    loaded = load_from_disk(str(tmp_path / "saved"))[0]
    assert math.isnan(loaded["fixations"][0]["start"]) and loaded["transcript"] == [] == loaded["regions"]


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {
                "fixations": [
                    {"x": 1, "y": 1, "duration": 0.2, "start": 2.0},
                    {"x": 1, "y": 1, "duration": 0.2, "start": 1.0},
                ]
            },
            "fixation 1 start=1.0 goes back before fixation 0's start=2.0",
        ),
        (
            {"fixations": [{"x": 1, "y": 1, "duration": 0.2, "start": 2.0}, {"x": 1, "y": 1, "duration": 0.2}]},
            "fixation 1 has no start while others have one",
        ),
        ({"transcript": [{"text": "No effusion.", "start": 2.0, "end": 1.0}]}, "transcript phrase 0 ends"),
        ({"transcript": [{"text": " ", "start": 0.0, "end": 1.0}]}, "transcript phrase 0 text=' '"),
        (
            {"regions": [{"label": "Effusion", "x0": 0, "y0": 0, "x1": 1, "y1": 1, "certainty": 5}]},
            "region 0 label='Effusion' is not one of",
        ),
        (
            {"regions": [{"label": "Pneumothorax", "x0": 0, "y0": 0, "x1": 1, "y1": 1, "certainty": 0}]},
            "region 0 certainty=0 is not one of",
        ),
        ({"regions": [{"label": "Pneumothorax", "x0": 5, "y0": 0, "x1": 1, "y1": 1, "certainty": 3}]}, "is not a box"),
    ],
)
def test_make_example_refuses_bad_times_phrases_and_regions(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_example(id="a", image="x.png", report="r", findings="r", **fields)
