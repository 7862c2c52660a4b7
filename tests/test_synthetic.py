import numpy as np
import pytest
from datasets import load_from_disk

from modeling_gaze2report.data import align_fixations_to_transcript, fixation_finding_targets
from modeling_gaze2report.data.schema import GAZE2REPORT_FEATURES
from modeling_gaze2report.data.synthetic import make_synthetic_dataset, make_synthetic_study
from modeling_gaze2report.data.synthetic_gaze import MAX_DURATION, MAX_FIXATIONS, MIN_DURATION, MIN_FIXATIONS
from modeling_gaze2report.data.synthetic_phantom import FINDING_KINDS
from modeling_gaze2report.data.synthetic_reports import FINDING_OBSERVATIONS
from modeling_gaze2report.labeler_gaze2report import label_reports
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS

SIDED_KINDS = ("pleural_effusion", "pneumothorax", "nodule", "mass", "consolidation", "atelectasis", "rib_fracture")


def _fixations(example):
    return np.array([[f["x"], f["y"], f["duration"]] for f in example["fixations"]])  # (num_fixations, 3)


def _region_mask(region, size):
    x0, y0, x1, y1 = region
    y, x = np.mgrid[0:size, 0:size]
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _one_finding_studies(kinds, size, count=20):
    """(example, truth) of studies 0..count-1, study i with the one finding kinds[i % len(kinds)]."""
    for seed in range(count):
        yield make_synthetic_study(seed, image_size=size, finding_kinds=[kinds[seed % len(kinds)]])


def _pixels(fixations):
    """Integer (columns, rows) of (num_fixations, >= 2) fixations, to index a (size, size) mask."""
    return np.round(fixations[:, 0]).astype(int), np.round(fixations[:, 1]).astype(int)


def test_same_seed_gives_identical_study_and_other_seeds_differ():
    first, _ = make_synthetic_study(7, image_size=128)
    again, _ = make_synthetic_study(7, image_size=128)
    other, _ = make_synthetic_study(8, image_size=128)
    assert np.array_equal(np.asarray(first["image"]), np.asarray(again["image"]))
    assert first["report"] == again["report"] and first["fixations"] == again["fixations"]
    assert first["transcript"] == again["transcript"] and first["regions"] == again["regions"]
    assert first["labels"] == again["labels"]
    assert not np.array_equal(np.asarray(first["image"]), np.asarray(other["image"]))
    assert first["fixations"] != other["fixations"]


def test_example_is_a_grayscale_square_radiograph_with_schema_fields():
    example, truth = make_synthetic_study(3, image_size=96)
    assert example["image"].mode == "L" and example["image"].size == (96, 96)
    assert set(example) == set(GAZE2REPORT_FEATURES)
    assert example["source"] == "synthetic" and example["view"] in ("PA", "AP")
    assert example["report"] == f"{example['findings']} {example['impression']}".strip()
    pixels = np.asarray(example["image"])
    assert pixels.std() > 30  # bright bones/mediastinum against dark lungs and background


@pytest.mark.parametrize("kind", FINDING_KINDS)
def test_each_finding_changes_the_pixels_of_its_region(kind):
    size = 160
    for seed in range(3):
        _, truth = make_synthetic_study(seed, image_size=size, finding_kinds=[kind])
        with_finding = truth.draw().astype(float)
        without = truth.draw(findings=()).astype(float)
        difference = np.abs(with_finding - without)
        inside = _region_mask(truth.findings[0].region, size)
        assert difference[inside].mean() > 0.5, (kind, seed)
        assert difference[inside].mean() > 5 * difference[~inside].mean(), (kind, seed)


@pytest.mark.parametrize("kind", SIDED_KINDS)
def test_patient_left_findings_are_on_the_image_right(kind):
    size = 128
    sides = set()
    for seed in range(12):
        example, truth = make_synthetic_study(seed, image_size=size, finding_kinds=[kind])
        finding = truth.findings[0]
        x0, _, x1, _ = finding.region
        centre = 0.5 * (x0 + x1)
        assert (centre > size / 2) == (finding.side == "left"), (seed, finding.side, finding.region)
        assert f"{finding.side} " in example["findings"].lower() or (finding.side, finding.lobe) == ("left", "middle")
        sides.add(finding.side)
    assert sides == {"left", "right"}


def test_enlarged_heart_sits_to_the_image_right_with_ratio_above_half():
    _, truth = make_synthetic_study(5, image_size=128, finding_kinds=["cardiomegaly"])
    heart = truth.findings[0]
    assert heart.cardiothoracic_ratio > 0.5
    x0, _, x1, _ = heart.region
    assert 0.5 * (x0 + x1) > 64


def test_fixation_counts_durations_and_positions_stay_in_the_documented_ranges():
    size = 128
    for seed in range(25):
        example, _ = make_synthetic_study(seed, image_size=size)
        fixations = _fixations(example)
        assert MIN_FIXATIONS <= len(fixations) <= MAX_FIXATIONS
        assert (fixations[:, 2] >= MIN_DURATION - 1e-6).all() and (fixations[:, 2] <= MAX_DURATION + 1e-6).all()
        assert (fixations[:, :2] >= 0).all() and (fixations[:, :2] <= size - 1).all()


def test_gaze_dwells_longer_per_area_on_abnormal_regions_than_on_normal_lung():
    size = 128
    abnormal_dwell = abnormal_area = normal_dwell = normal_area = 0.0
    for example, truth in _one_finding_studies(
        ("nodule", "mass", "consolidation", "atelectasis", "pleural_effusion"), size
    ):
        fixations = _fixations(example)
        region = _region_mask(truth.findings[0].region, size)
        lungs = np.zeros((size, size), dtype=bool)
        for side in ("right", "left"):
            u0, v0, u1, v1 = truth.anatomy.lung_box(side)
            (x0, y0), (x1, y1) = truth.anatomy.pose.to_pixels([[u0, v0], [u1, v1]], size)
            lungs |= _region_mask((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), size)
        normal = lungs & ~region
        columns, rows = _pixels(fixations)
        abnormal_dwell += fixations[region[rows, columns], 2].sum()
        normal_dwell += fixations[normal[rows, columns], 2].sum()
        abnormal_area += region.sum()
        normal_area += normal.sum()
    assert abnormal_dwell / abnormal_area > 2 * normal_dwell / normal_area


def test_labels_equal_what_the_labeler_reads_in_the_reports():
    examples, covered = [], set()
    for seed in range(240):
        kinds = [FINDING_KINDS[seed % len(FINDING_KINDS)]] if seed < 120 else None
        example, truth = make_synthetic_study(seed, image_size=64, finding_kinds=kinds)
        examples.append(example)
        covered |= {(finding.kind, finding.side) for finding in truth.findings}
    assert {(kind, side) for kind in SIDED_KINDS for side in ("left", "right")} <= covered
    assert any(example["labels"][0] == 1 for example in examples)
    read = label_reports([example["report"] for example in examples])
    for example, labels in zip(examples, read):
        assert [labels[name] for name in CHEXPERT_OBSERVATIONS] == example["labels"], example["report"]


def test_no_finding_is_set_only_for_studies_without_pathology():
    for seed in range(40):
        example, truth = make_synthetic_study(seed, image_size=64)
        pathologies = [finding for finding in truth.findings if finding.kind != "support_devices"]
        assert (example["labels"][0] == 1) == (not pathologies)
        if not pathologies:
            assert "No acute cardiopulmonary" in example["impression"]


def test_dataset_has_three_splits_with_the_schema_and_round_trips_through_disk(tmp_path):
    dataset = make_synthetic_dataset(num_studies=10, seed=1, image_size=64)
    assert {split: len(dataset[split]) for split in dataset} == {"train": 8, "validation": 1, "test": 1}
    for split in dataset:
        assert dataset[split].features == GAZE2REPORT_FEATURES
        assert set(dataset[split]["split"]) == {split}
    assert dataset["train"][0]["id"] == "synthetic-1-00000"
    single, _ = make_synthetic_study((1, 0), image_size=64)
    assert np.array_equal(np.asarray(dataset["train"][0]["image"]), np.asarray(single["image"]))
    dataset.save_to_disk(tmp_path / "synthetic")
    loaded = load_from_disk(str(tmp_path / "synthetic"))
    assert loaded["test"][0]["report"] == dataset["test"][0]["report"]
    assert loaded["train"]["labels"] == dataset["train"]["labels"]
    assert loaded["train"]["transcript"] == dataset["train"]["transcript"]
    assert loaded["train"]["regions"] == dataset["train"]["regions"]
    assert loaded["train"]["fixations"] == dataset["train"]["fixations"]


def test_abnormal_fraction_zero_gives_only_normal_studies():
    dataset = make_synthetic_dataset(num_studies=6, seed=2, image_size=64, abnormal_fraction=0, device_fraction=0)
    assert all(labels[0] == 1 for split in dataset for labels in dataset[split]["labels"])


@pytest.mark.parametrize(
    "arguments",
    [
        {"num_studies": 0},
        {"seed": -1},
        {"split_fractions": (0.5, 0.2, 0.2)},
        {"image_size": 16},
        {"abnormal_fraction": 1.5},
    ],
)
def test_bad_dataset_arguments_are_rejected(arguments):
    with pytest.raises(ValueError):
        make_synthetic_dataset(**{"num_studies": 3, **arguments})


def test_unknown_finding_kind_is_rejected():
    with pytest.raises(ValueError, match="finding_kinds"):
        make_synthetic_study(0, image_size=64, finding_kinds=["fracture of the femur"])


def test_the_transcript_is_the_report_sentence_by_sentence_in_order_and_fixations_never_overlap():
    for seed in range(25):
        example, _ = make_synthetic_study(seed, image_size=64)
        phrases = example["transcript"]
        assert " ".join(phrase["text"] for phrase in phrases) == example["report"]
        assert all(phrase["text"].endswith(".") and phrase["text"].count(". ") == 0 for phrase in phrases)
        for before, after in zip(phrases, phrases[1:]):
            assert before["start"] < before["end"] < after["start"]
        starts = np.array([fixation["start"] for fixation in example["fixations"]])
        durations = _fixations(example)[:, 2]
        assert starts[0] >= 0 and (starts[1:] >= starts[:-1] + durations[:-1]).all()


def test_every_drawn_finding_has_a_region_labelled_with_its_chexpert_name():
    for seed in range(12):
        kinds = [FINDING_KINDS[seed % len(FINDING_KINDS)], FINDING_KINDS[(seed + 3) % len(FINDING_KINDS)]]
        example, truth = make_synthetic_study(seed, image_size=96, finding_kinds=kinds)
        assert [(r["label"], (r["x0"], r["y0"], r["x1"], r["y1"]), r["certainty"]) for r in example["regions"]] == [
            (FINDING_OBSERVATIONS[finding.kind], finding.region, 5) for finding in truth.findings
        ]
    normal, _ = make_synthetic_study(0, image_size=64, finding_kinds=[])
    assert normal["regions"] == []


def test_fixations_aligned_to_a_phrase_naming_a_finding_look_at_that_finding():
    size = 128
    inside_aligned = aligned = inside_all = total = 0
    for example, truth in _one_finding_studies(
        ("nodule", "pneumothorax", "consolidation", "atelectasis", "pleural_effusion"), size
    ):
        (region,) = example["regions"]
        columns, rows = _pixels(_fixations(example))
        inside = _region_mask(truth.findings[0].region, size)[rows, columns]
        names_it = [
            targets is not None and region["label"] in targets
            for targets in fixation_finding_targets(example["fixations"], example["transcript"])
        ]
        inside_aligned += inside[names_it].sum()
        aligned += sum(names_it)
        inside_all += inside.sum()
        total += len(inside)
    assert aligned > 0 and inside_aligned / aligned > 0.8 > 2 * inside_all / total


def test_each_sentence_is_spoken_one_study_lag_after_a_look_starts_and_the_search_is_silent():
    for seed in range(10):
        example, _ = make_synthetic_study(seed, image_size=64)
        if len(example["fixations"]) == MAX_FIXATIONS:
            continue  # the reading may stop before its last looks
        starts = [fixation["start"] for fixation in example["fixations"]]
        lags = [
            {round(phrase["start"] - start, 9) for start in starts if 1.0 <= phrase["start"] - start <= 2.0}
            for phrase in example["transcript"]
        ]
        assert len(set.intersection(*lags)) == 1, seed  # one lag, between 1 and 2 s, for every sentence
        assert align_fixations_to_transcript(example["fixations"], example["transcript"])[0] == -1
