"""Hostile input to the real-data readers and the fixation alignment (#30): paths read from a dataset's files that
leave its folders, negative transcript times, unreadable transcript files, "Unlikely" regions and regions that lack
a coordinate. Each gives a clear error naming the file, line and field, or is counted as skipped with strict=False,
or gives the correct result."""

import json
import re
import shutil

import pytest

from modeling_gaze2report.data import (
    Gaze2ReportCollator,
    fixation_finding_names,
    fixation_in_region,
    load_egd_cxr,
    load_iu_xray,
    load_mimic_cxr,
    load_reflacx,
    make_example,
)
from modeling_gaze2report.data.readers_common import path_inside
from modeling_gaze2report.observations import FINDING_OBSERVATIONS
from tests import test_readers
from tests.test_readers import (
    EGD_A,
    EGD_B,
    FIXTURES,
    rewrite_csv_cell,
    write_jpeg,
)

egd = test_readers.egd  # the reader tests' EGD-CXR fixture, shared
READING = "P102R108753"  # the phase-1 REFLACX reading on metadata_phase_1.csv line 2


@pytest.fixture
def reflacx(tmp_path):
    """(a copy of the REFLACX fixture, its MIMIC-CXR-JPG root)."""
    root = tmp_path / "reflacx"
    shutil.copytree(FIXTURES / "reflacx", root)
    mimic_root = tmp_path / "mimic-cxr-jpg"
    for path in (
        "p17/p17000001/s57000001/2b3c4d5e-13131313-24242424-35353535-46464646.jpg",
        "p18/p18000002/s58000002/8a9b0c1d-57575757-68686868-79797979-80808080.jpg",
    ):
        write_jpeg(mimic_root / "files" / path, size=(48, 40))
    return root, mimic_root


def skipped_in(report, path) -> list[str]:
    return [skip.location for skip in report.skipped if skip.file == str(path)]


# One path rule for every reader


@pytest.mark.parametrize(
    "relative_path, message",
    [
        ("../../outside.jpg", "leaves"),
        ("files/../../../etc/passwd", "leaves"),
        ("..\\..\\outside.jpg", "leaves"),
        ("/etc/passwd", "leaves"),
        ("C:/x.jpg", "leaves"),
        ("", "is not a path"),
        ("a\0b", "is not a path"),
        (".", "names no file"),
        (None, "is not a path"),
    ],
)
def test_a_path_read_from_a_file_that_leaves_its_root_is_refused_naming_the_field(tmp_path, relative_path, message):
    with pytest.raises(ValueError, match=rf"^image_path=.* {message}"):
        path_inside(tmp_path, relative_path, "image_path")


def test_a_relative_path_inside_the_root_is_joined_to_it(tmp_path):
    assert path_inside(tmp_path, "files/p1/x.jpg", "path") == tmp_path / "files" / "p1" / "x.jpg"
    assert path_inside(tmp_path, "files\\p1\\x.jpg", "path") == tmp_path / "files" / "p1" / "x.jpg"


def test_egd_dicom_id_that_climbs_out_is_refused_naming_the_master_sheet_line(egd, tmp_path):
    root, mimic_root = egd
    outside = tmp_path / "outside" / "transcript.json"  # what ../../outside would reach from the transcripts folder
    outside.parent.mkdir()
    shutil.copy(root / "audio_segmentation_transcripts" / EGD_A / "transcript.json", outside)
    rewrite_csv_cell(root / "master_sheet.csv", 2, "dicom_id", "../../outside")
    with pytest.raises(ValueError, match=r"master_sheet\.csv, line 2: dicom_id='\.\./\.\./outside' leaves"):
        load_egd_cxr(root, mimic_root)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert dataset["train"]["id"] == [EGD_B] and skipped_in(report, root / "master_sheet.csv") == ["line 2"]


@pytest.mark.parametrize("image_path", ["../outside.dcm", "{tmp_path}/outside.dcm"])
def test_egd_image_path_that_climbs_out_is_refused_naming_the_master_sheet_line(egd, tmp_path, image_path):
    root, mimic_root = egd
    write_jpeg(tmp_path / "outside.jpg")  # what the path would reach
    rewrite_csv_cell(root / "master_sheet.csv", 2, "path", image_path.format(tmp_path=tmp_path))
    with pytest.raises(ValueError, match=r"master_sheet\.csv, line 2: path='.*outside\.dcm' leaves"):
        load_egd_cxr(root, mimic_root)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert dataset["train"]["id"] == [EGD_B] and skipped_in(report, root / "master_sheet.csv") == ["line 2"]


def test_reflacx_reading_id_that_climbs_out_is_refused_naming_the_metadata_line(reflacx, tmp_path):
    root, mimic_root = reflacx
    shutil.copytree(root / "main_data" / READING, tmp_path / "outside")  # what ../../outside reaches from main_data
    metadata = root / "main_data" / "metadata_phase_1.csv"
    rewrite_csv_cell(metadata, 2, "id", "../../outside")
    with pytest.raises(ValueError, match=r"metadata_phase_1\.csv, line 2: id='\.\./\.\./outside' leaves"):
        load_reflacx(root, mimic_root, phases=(1,))
    dataset, report = load_reflacx(root, mimic_root, phases=(1,), strict=False)
    assert "train" not in dataset and dataset["validation"]["id"] == ["P109R167017"]
    assert skipped_in(report, metadata) == ["line 2", "line 3"]  # the climbing row; the discarded reading


def iu_with_edited_xml(tmp_path, old: str, new: str):
    """The IU fixtures with `old` replaced by `new` in 2.xml, and the images of the other reports: (reports folder,
    the edited XML, the image folder)."""
    reports = tmp_path / "ecgen-radiology"
    shutil.copytree(FIXTURES / "iu" / "ecgen-radiology", reports)
    xml = reports / "2.xml"
    xml.write_text(xml.read_text().replace(old, new))
    images = tmp_path / "png"
    for name in ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001", "CXR2_IM-0652-1001"):
        write_jpeg(images / f"{name}.png")
    return reports, xml, images


def test_iu_xml_parent_image_that_climbs_out_is_refused_naming_the_xml(tmp_path):
    reports, xml, images = iu_with_edited_xml(tmp_path, 'id="CXR2_IM-0652-2001"', 'id="../outside"')
    write_jpeg(tmp_path / "outside.png")  # what the id would reach
    with pytest.raises(ValueError, match=r"2\.xml, parentImage \.\./outside: parentImage id='\.\./outside' leaves"):
        load_iu_xray(image_root=images, reports_xml_dir_or_tgz=reports)
    dataset, report = load_iu_xray(image_root=images, reports_xml_dir_or_tgz=reports, strict=False)
    assert dataset["train"]["id"] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001", "CXR2_IM-0652-1001"]
    assert skipped_in(report, xml) == ["parentImage ../outside"]


def test_iu_xml_parent_image_without_an_id_is_a_bad_row(tmp_path):
    reports, xml, images = iu_with_edited_xml(tmp_path, '<parentImage id="CXR2_IM-0652-2001">', "<parentImage>")
    with pytest.raises(ValueError, match=r"2\.xml, parentImage\[1\]: parentImage has no id"):
        load_iu_xray(image_root=images, reports_xml_dir_or_tgz=reports)
    dataset, report = load_iu_xray(image_root=images, reports_xml_dir_or_tgz=reports, strict=False)
    assert len(dataset["train"]) == 3 and skipped_in(report, xml) == ["parentImage[1]"]


def test_iu_annotation_image_path_that_climbs_out_is_refused_naming_the_entry(tmp_path):
    annotation = json.loads((FIXTURES / "iu" / "annotation.json").read_text())
    annotation["train"][0]["image_path"] = ["../outside.png"]
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    images = tmp_path / "images"
    for name in ("CXR2_IM-0652/0.png", "CXR2_IM-0652/1.png"):
        write_jpeg(images / name)
    write_jpeg(tmp_path / "outside.png")
    with pytest.raises(ValueError, match=r"annotation\.json, train\[0\]: image_path='\.\./outside\.png' leaves"):
        load_iu_xray(path, images)
    dataset, report = load_iu_xray(path, images, strict=False)
    assert "train" not in dataset and skipped_in(report, path) == ["train[0]"]


def test_mimic_annotation_absolute_image_path_is_refused(tmp_path):
    annotation = json.loads((FIXTURES / "mimic" / "annotation.json").read_text())
    write_jpeg(tmp_path / "outside.jpg")
    annotation["train"][0]["image_path"] = [str(tmp_path / "outside.jpg")]
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match=r"annotation\.json, train\[0\]: image_path='/.*outside\.jpg' leaves"):
        load_mimic_cxr(path, tmp_path / "images")


# Negative transcript and fixation times


def test_egd_negative_transcript_time_is_refused_naming_the_file_and_entry(egd):
    root, mimic_root = egd
    path = root / "audio_segmentation_transcripts" / EGD_B / "transcript.json"
    transcript = json.loads(path.read_text())
    transcript["time_stamped_text"][0]["begin_time"] = -0.5
    path.write_text(json.dumps(transcript))
    with pytest.raises(
        ValueError,
        match=r"transcript\.json, time_stamped_text\[0\]: 'Right lower lobe consolidation\.' starts at -0\.5",
    ):
        load_egd_cxr(root, mimic_root)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert dataset["train"][1]["transcript"] == [] and dataset["train"][1]["report"]  # kept, without a transcript
    assert skipped_in(report, path) == ["time_stamped_text[0]"]


def test_reflacx_negative_word_time_is_refused_naming_the_file_and_line(reflacx):
    root, mimic_root = reflacx
    words = root / "main_data" / READING / "timestamps_transcription.csv"
    rewrite_csv_cell(words, 2, "timestamp_start_word", "-1.0")
    with pytest.raises(
        ValueError, match=r"timestamps_transcription\.csv, line 2: 'Enlarged' starts at -1 s, before the recording"
    ):
        load_reflacx(root, mimic_root, phases=(1,))
    dataset, report = load_reflacx(root, mimic_root, phases=(1,), strict=False)
    assert dataset["train"][0]["transcript"] == [] and len(dataset["train"][0]["fixations"]) == 3
    assert skipped_in(report, words) == ["line 2"]


def test_reflacx_negative_fixation_time_is_refused_naming_the_file_and_line(reflacx):
    root, mimic_root = reflacx
    fixations = root / "main_data" / READING / "fixations.csv"
    rewrite_csv_cell(fixations, 2, "timestamp_start_fixation", "-0.2")
    with pytest.raises(ValueError, match=r"fixations\.csv, line 2: timestamp_start_fixation=-0\.2 is before the rec"):
        load_reflacx(root, mimic_root, phases=(1,))
    dataset, report = load_reflacx(root, mimic_root, phases=(1,), strict=False)
    assert [f["x"] for f in dataset["train"][0]["fixations"]] == [10.0, 30.5]
    assert "line 2" in skipped_in(report, fixations)


# Unreadable transcript files name themselves, not the metadata


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"full_text": "Right lower lobe consolidation\xff"}', r"line 1: byte 0xff is not UTF-8 text"),
        (b'{\n "full_text": "Right lower lobe consolidation",\n', r"line 3: invalid JSON"),
        (b'{"time_stamped_text": []}', r"full_text: no full_text string"),
    ],
)
def test_egd_unreadable_transcript_json_is_named_not_the_master_sheet(egd, content, message):
    root, mimic_root = egd
    path = root / "audio_segmentation_transcripts" / EGD_B / "transcript.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}, {message}") as error:
        load_egd_cxr(root, mimic_root)
    assert "master_sheet" not in str(error.value)
    dataset, report = load_egd_cxr(root, mimic_root, strict=False)
    assert dataset["train"]["id"] == [EGD_A] and len(skipped_in(report, path)) == 1


def test_reflacx_transcription_with_a_bad_byte_is_named_not_the_metadata(reflacx):
    root, mimic_root = reflacx
    text = root / "main_data" / READING / "transcription.txt"
    text.write_bytes(b"Enlarged cardiac silhouette.\nPossible small left effusion \xe9.\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(text))}, line 2: byte 0xe9 is not UTF-8 text") as error:
        load_reflacx(root, mimic_root, phases=(1,))
    assert "metadata_phase" not in str(error.value)
    dataset, report = load_reflacx(root, mimic_root, phases=(1,), strict=False)
    assert "train" not in dataset and skipped_in(report, text) == ["line 2"]


def test_reflacx_fixations_csv_with_a_bad_byte_is_named_not_the_metadata(reflacx):
    root, mimic_root = reflacx
    fixations = root / "main_data" / READING / "fixations.csv"
    fixations.write_bytes(fixations.read_bytes().replace(b"0.512", b"0.5\xff2"))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(fixations))}, line \d+: unreadable CSV") as error:
        load_reflacx(root, mimic_root, phases=(1,))
    assert "metadata_phase" not in str(error.value)


# Regions: certainty and missing coordinates


def region(certainty=5, **changes):
    return {"label": "Pleural Effusion", "x0": 0, "y0": 0, "x1": 20, "y1": 20, "certainty": certainty, **changes}


IN_THE_REGION = {"x": 10.0, "y": 10.0, "duration": 0.2, "start": 0.0}


@pytest.mark.parametrize(
    "certainty, names",
    [(1, [None]), (2, [None]), (3, [["Pleural Effusion"]]), (4, [["Pleural Effusion"]]), (5, [["Pleural Effusion"]])],
)
def test_only_regions_whose_certainty_says_present_are_positive_targets(certainty, names):
    # REFLACX: 1 Unlikely, 2 Less likely are not findings; 3 Possibly, 4 Suggestive of, 5 Consistent with are
    example = {"fixations": [IN_THE_REGION], "regions": [region(certainty)]}
    assert fixation_finding_names(example) == names


def test_an_unlikely_region_adds_nothing_to_what_the_dictation_says():
    example = {
        "fixations": [IN_THE_REGION],
        "transcript": [{"text": "Mild cardiomegaly.", "start": 0.0, "end": 3.0}],
        "regions": [region(1), region(4, label="Edema")],
    }
    assert fixation_finding_names(example) == [["Cardiomegaly", "Edema"]]


def test_the_collator_trains_no_finding_at_a_fixation_in_an_unlikely_region(tiny_processor, tmp_path):
    write_jpeg(tmp_path / "x.png", size=(90, 120))
    fixations = [{"x": 10, "y": 10, "duration": 0.2}, {"x": 60, "y": 100, "duration": 0.2}]
    examples = [
        make_example(
            id=id, image=str(tmp_path / "x.png"), report="r", findings="r", fixations=fixations, regions=[regions]
        )
        for id, regions in (("unlikely", region(1)), ("possibly", region(3)))
    ]
    batch = Gaze2ReportCollator(tiny_processor, include_fixation_findings=True)(examples)
    effusion = FINDING_OBSERVATIONS.index("Pleural Effusion")
    assert batch["fixation_finding_mask"][0].sum() == 0  # nothing known at either fixation: no target, no negative
    assert batch["fixation_finding_mask"][1].tolist()[:2] == [True, False]
    assert batch["fixation_finding_labels"][1, 0].nonzero().flatten().tolist() == [effusion]


@pytest.mark.parametrize("missing", ["y1", "x0", "label", "certainty"])
def test_a_region_without_a_field_is_refused_naming_it(missing):
    bad = {key: value for key, value in region().items() if key != missing}
    with pytest.raises(ValueError, match=rf"Example s1: regions\[0\] has no field '{missing}'"):
        fixation_finding_names({"id": "s1", "fixations": [IN_THE_REGION], "regions": [bad]})
    with pytest.raises(ValueError, match=rf"^region has no field '{missing}'"):
        fixation_in_region(IN_THE_REGION, bad)
    with pytest.raises(ValueError, match=rf"Example a: region 0 has no field '{missing}'"):
        make_example(id="a", image="x.png", report="r", findings="r", regions=[bad])


@pytest.mark.parametrize(
    "bad_region, message",
    [
        (region(y1=None), r"regions\[0\] y1=None must be a finite number"),
        (region(y1="20"), r"regions\[0\] y1='20' must be a finite number"),
        (region(x1=float("nan")), r"regions\[0\] x1=nan must be a finite number"),
        (region(colour="red"), r"regions\[0\] has unknown field\(s\) \['colour'\]"),
        (None, r"regions\[0\] must be a dict"),
    ],
)
def test_a_region_with_a_bad_coordinate_or_field_is_refused_naming_it(bad_region, message):
    with pytest.raises(ValueError, match=message):
        fixation_finding_names({"fixations": [IN_THE_REGION], "regions": [bad_region]})


@pytest.mark.parametrize(
    "fixation, message",
    [
        ({"x": 1.0, "duration": 0.2}, r"fixations\[0\] has no field 'y'"),
        ({"x": 1.0, "y": None, "duration": 0.2}, r"fixations\[0\]\['y'\]=None must be a finite number"),
        ("not a fixation", r"fixations\[0\] must be a dict"),
    ],
)
def test_a_fixation_without_coordinates_is_refused_naming_the_field(fixation, message):
    with pytest.raises(ValueError, match=message):
        fixation_finding_names({"fixations": [fixation], "regions": [region()]})
