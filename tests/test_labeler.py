"""The rule-based CheXpert-style labeler: the reference labeler's own golden cases and a hand-written sentence suite."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import pytest

from modeling_gaze2report.evaluation import extract_laterality, label_reports
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS

# The reference labeler's sample reports and its labels of them; the file names its repository and commit.
GOLDEN_PATH = Path(__file__).parent / "fixtures" / "chexpert_labeler_golden.json"


def _golden_cases():
    golden = json.loads(GOLDEN_PATH.read_text())
    assert tuple(golden["categories"]) == CHEXPERT_OBSERVATIONS
    return golden["cases"]


@pytest.mark.parametrize("case", _golden_cases(), ids=lambda case: case["report"][:40])
def test_golden_case_matches_reference_labeler_on_all_14_observations(case):
    assert label_reports([case["report"]]) == [case["labels"]]


# (sentence, {observation: expected label}) -- only the named observations are asserted.
SENTENCES = [
    # Enlarged Cardiomediastinum
    ("The mediastinum is widened.", {"Enlarged Cardiomediastinum": 1}),
    ("Mediastinal widening is noted.", {"Enlarged Cardiomediastinum": 1}),
    ("Normal cardiomediastinal silhouette.", {"Enlarged Cardiomediastinum": 0}),
    ("The cardiomediastinal silhouette is within normal limits.", {"Enlarged Cardiomediastinum": 0}),
    ("No evidence of mediastinal widening.", {"Enlarged Cardiomediastinum": 0}),
    ("Widening of the mediastinum may represent adenopathy.", {"Enlarged Cardiomediastinum": 1}),
    ("Stable cardiomediastinal silhouette.", {"Enlarged Cardiomediastinum": None}),
    # Cardiomegaly
    ("Cardiomegaly.", {"Cardiomegaly": 1}),
    ("Normal heart size.", {"Cardiomegaly": 0}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": 1}),
    ("The heart is not enlarged.", {"Cardiomegaly": 0}),
    ("Borderline heart size.", {"Cardiomegaly": -1}),
    ("No cardiomegaly.", {"Cardiomegaly": 0}),
    ("Unchanged moderate cardiomegaly.", {"Cardiomegaly": 1}),
    ("Congestive heart failure.", {"Edema": 1, "Cardiomegaly": -1}),
    # Lung Lesion
    ("A 1.5 cm nodule in the right upper lobe.", {"Lung Lesion": 1}),
    ("No suspicious pulmonary nodules.", {"Lung Lesion": 0}),
    ("Right hilar mass may represent malignancy.", {"Lung Lesion": 1}),
    ("Possible nodule at the left apex.", {"Lung Lesion": -1}),
    ("A lung mass cannot be excluded.", {"Lung Lesion": -1}),
    # Lung Opacity
    ("Patchy opacity at the right base.", {"Lung Opacity": 1}),
    ("No focal opacity.", {"Lung Opacity": 0}),
    ("Bibasilar opacities may represent atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1}),
    ("The lungs are clear.", {"Lung Opacity": None, "Consolidation": None}),
    ("Interval resolution of the left lower lobe opacity.", {"Lung Opacity": 0}),
    ("Hazy opacification of the left hemithorax.", {"Lung Opacity": 1}),
    # Edema
    ("Mild pulmonary edema.", {"Edema": 1}),
    ("No evidence of pulmonary edema.", {"Edema": 0}),
    ("Findings are suggestive of mild interstitial edema.", {"Edema": -1}),
    ("Pulmonary vascular congestion without frank edema.", {"Edema": 1}),
    ("Edema has resolved.", {"Edema": 0}),
    # Consolidation
    ("Right lower lobe consolidation.", {"Consolidation": 1}),
    ("No focal consolidation.", {"Consolidation": 0}),
    ("Focal consolidation cannot be excluded.", {"Consolidation": -1}),
    ("Lungs are free of consolidation.", {"Consolidation": 0}),
    ("Atelectasis rather than consolidation.", {"Consolidation": 0, "Atelectasis": 1}),
    # Pneumonia
    ("Right lower lobe pneumonia.", {"Pneumonia": 1}),
    ("Findings concerning for pneumonia.", {"Pneumonia": -1}),
    ("Opacity likely pneumonia.", {"Pneumonia": -1, "Lung Opacity": 1}),
    ("No radiographic evidence of pneumonia.", {"Pneumonia": 0}),
    ("Atelectasis versus pneumonia in the left base.", {"Pneumonia": -1, "Atelectasis": -1}),
    # Atelectasis
    ("Left basilar atelectasis.", {"Atelectasis": 1}),
    ("Minimal bibasilar atelectasis, unchanged.", {"Atelectasis": 1}),
    ("Without atelectasis.", {"Atelectasis": 0}),
    ("Right lower lobe collapse.", {"Atelectasis": 1}),
    # Pneumothorax
    ("Small left apical pneumothorax.", {"Pneumothorax": 1}),
    ("No pneumothorax.", {"Pneumothorax": 0}),
    ("Negative for pneumothorax.", {"Pneumothorax": 0}),
    ("No new pneumothorax.", {"Pneumothorax": 0}),
    ("Tiny pneumothorax is questionable.", {"Pneumothorax": 1}),
    ("Questionable tiny pneumothorax.", {"Pneumothorax": -1}),
    ("The previously seen pneumothorax has resolved.", {"Pneumothorax": 0}),
    # Pleural Effusion
    ("Small bilateral pleural effusions.", {"Pleural Effusion": 1}),
    ("No pleural effusion.", {"Pleural Effusion": 0}),
    ("Blunting of the costophrenic angle may represent a small effusion.", {"Pleural Effusion": -1}),
    ("No change in the small left effusion.", {"Pleural Effusion": 1}),
    ("Stable right pleural effusion.", {"Pleural Effusion": 1}),
    ("Small pericardial effusion.", {"Pleural Effusion": None}),
    ("No effusion but there is a small pneumothorax.", {"Pleural Effusion": 0, "Pneumothorax": 1}),
    ("No effusion; however, mild edema is present.", {"Pleural Effusion": 0, "Edema": 1}),
    ("Effusion and atelectasis have resolved.", {"Pleural Effusion": 0, "Atelectasis": 0}),
    # Pleural Other
    ("Right pleural thickening.", {"Pleural Other": 1}),
    ("Calcified pleural plaques.", {"Pleural Other": 1}),
    ("No pleural thickening.", {"Pleural Other": 0}),
    # Fracture
    ("Healed right rib fractures.", {"Fracture": 1}),
    ("No acute fracture.", {"Fracture": 0}),
    ("Possible nondisplaced rib fracture.", {"Fracture": -1}),
    # Support Devices
    ("Endotracheal tube terminates 4 cm above the carina.", {"Support Devices": 1}),
    ("Right PICC line tip in the SVC.", {"Support Devices": 1}),
    ("Left chest wall pacemaker with leads in place.", {"Support Devices": 1}),
    ("Surgical clips in the upper abdomen.", {"Support Devices": 1}),
    ("The nasogastric tube has been removed.", {"Support Devices": 0}),
    ("Interval removal of the right internal jugular catheter.", {"Support Devices": 0}),
]


@pytest.mark.parametrize("sentence,expected", SENTENCES, ids=[sentence for sentence, _ in SENTENCES])
def test_sentence_labels(sentence, expected):
    labels = label_reports([sentence])[0]
    assert {observation: labels[observation] for observation in expected} == expected


# One plain phrase for each of the 13 observations besides "No Finding".
OBSERVATION_PHRASES = {
    "Enlarged Cardiomediastinum": "enlarged cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Lesion": "lung nodule",
    "Lung Opacity": "opacity",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "pleural thickening",
    "Fracture": "rib fracture",
    "Support Devices": "endotracheal tube",
}


@pytest.mark.parametrize("observation", CHEXPERT_OBSERVATIONS[1:])
@pytest.mark.parametrize("template,label", [("{}.", 1), ("No {}.", 0), ("Possible {}.", -1)])
def test_each_observation_takes_all_three_labels_and_leaves_the_others_unmentioned(observation, template, label):
    [labels] = label_reports([template.format(OBSERVATION_PHRASES[observation]).capitalize()])
    # "No Finding" is 1 unless an observation other than Support Devices is positive or uncertain.
    no_finding = 1 if label == 0 or observation == "Support Devices" else None
    expected = {name: None for name in CHEXPERT_OBSERVATIONS} | {"No Finding": no_finding, observation: label}
    assert labels == expected


def test_output_has_the_14_observations_in_standard_order():
    labels = label_reports(["Small left effusion. No pneumothorax."])[0]
    assert tuple(labels) == CHEXPERT_OBSERVATIONS
    assert labels["Pleural Effusion"] == 1 and labels["Pneumothorax"] == 0


@pytest.mark.parametrize(
    "report,no_finding",
    [
        ("No acute cardiopulmonary process.", 1),
        ("", 1),
        ("No pneumothorax. Endotracheal tube in standard position.", 1),
        ("Possible small effusion.", None),
        ("Hyperinflated lungs consistent with emphysema.", None),
        ("No emphysema. No effusion.", 1),
    ],
)
def test_no_finding_rule(report, no_finding):
    assert label_reports([report])[0]["No Finding"] == no_finding


def test_mentions_of_one_observation_aggregate_positive_over_uncertain_over_negative():
    labels = label_reports(["No right effusion. Possible left effusion.", "No edema. Possible edema. Edema."])
    assert labels[0]["Pleural Effusion"] == -1
    assert labels[1]["Edema"] == 1


@pytest.mark.parametrize(
    "report,expected",
    [
        ("Small left pleural effusion.", {"Pleural Effusion": "left"}),
        ("Small right effusion and left basilar atelectasis.", {"Pleural Effusion": "right", "Atelectasis": "left"}),
        ("Bilateral pleural effusions.", {"Pleural Effusion": "bilateral"}),
        ("Left effusion. Right effusion.", {"Pleural Effusion": "bilateral"}),
        ("Left and right lower lobe opacities.", {"Lung Opacity": "bilateral"}),
        ("Bibasilar atelectasis.", {"Atelectasis": "bilateral"}),
        ("Cardiomegaly. No left effusion.", {"Cardiomegaly": None, "Pleural Effusion": None}),
        ("Possible right pneumothorax.", {"Pneumothorax": None}),
    ],
)
def test_extract_laterality_for_positive_mentions(report, expected):
    laterality = extract_laterality(report)
    assert tuple(laterality) == CHEXPERT_OBSERVATIONS
    assert {observation: laterality[observation] for observation in expected} == expected


def test_bad_input_is_rejected_with_the_index():
    with pytest.raises(TypeError, match="single str"):
        label_reports("No effusion.")
    with pytest.raises(TypeError, match="index 1"):
        label_reports(["No effusion.", None])
