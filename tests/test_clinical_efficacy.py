"""clinical_efficacy: micro / macro / example-based scores and laterality accuracy on hand-computed cases."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from modeling_gaze2report.evaluation import LABELER_VERSION, load_metric

# Positives per report (hand-labelled; "Possible edema" is uncertain):
#   prediction                        reference
#   {Effusion (left)}                 {Effusion (left), Cardiomegaly}
#   {Cardiomegaly}, Edema uncertain   {Cardiomegaly, Edema}
#   {No Finding}                      {Effusion (right)}
PREDICTIONS = ["Small left effusion.", "Cardiomegaly. Possible edema.", "No acute process."]
REFERENCES = ["Left pleural effusion. Cardiomegaly.", "Cardiomegaly and edema.", "Right effusion."]


@pytest.fixture(scope="module")
def clinical_efficacy():
    return load_metric("clinical_efficacy")


def test_uncertain_as_zero_micro_macro_and_example_based(clinical_efficacy):
    result = clinical_efficacy.compute(predictions=PREDICTIONS, references=REFERENCES, uncertain_as=0)
    # TP = 2 (effusion in 1, cardiomegaly in 2), FP = 1 (No Finding in 3), FN = 3 (cardiomegaly 1, edema 2, effusion 3)
    assert result["micro_precision"] == pytest.approx(2 / 3)
    assert result["micro_recall"] == pytest.approx(2 / 5)
    assert result["micro_f1"] == pytest.approx(0.5)
    # effusion and cardiomegaly: P 1, R 1/2, F1 2/3; every other observation 0
    assert result["macro_14_precision"] == pytest.approx(2 / 14)
    assert result["macro_14_recall"] == pytest.approx(1 / 14)
    assert result["macro_14_f1"] == pytest.approx((4 / 3) / 14)
    assert result["macro_5_precision"] == pytest.approx(2 / 5)
    assert result["macro_5_f1"] == pytest.approx((4 / 3) / 5)
    # per report: (1, 1/2, 2/3), (1, 1/2, 2/3), (0, 0, 0)
    assert result["example_precision"] == pytest.approx(2 / 3)
    assert result["example_recall"] == pytest.approx(1 / 3)
    assert result["example_f1"] == pytest.approx(4 / 9)
    assert result["exact_match"] == 0.0  # no report has all 14 labels right
    assert result["per_observation"]["Pleural Effusion"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert result["per_observation"]["No Finding"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["protocol"]["labeler"] == LABELER_VERSION
    assert result["protocol"]["uncertain_as"] == 0 and result["protocol"]["blank_as"] == 0
    assert result["num_reports"] == 3


def test_uncertain_as_one_counts_the_hedged_edema_as_positive(clinical_efficacy):
    result = clinical_efficacy.compute(predictions=PREDICTIONS, references=REFERENCES, uncertain_as=1)
    assert result["micro_precision"] == pytest.approx(3 / 4)
    assert result["micro_recall"] == pytest.approx(3 / 5)
    assert result["example_recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["per_observation"]["Edema"]["f1"] == 1.0
    assert result["exact_match"] == pytest.approx(1 / 3)  # report 2 now matches its reference label for label
    assert result["protocol"]["uncertain_as"] == 1


def test_laterality_accuracy_over_findings_positive_in_both_with_a_reference_side(clinical_efficacy):
    result = clinical_efficacy.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert (result["laterality_accuracy"], result["laterality_support"]) == (1.0, 1)
    result = clinical_efficacy.compute(
        predictions=[
            "Right pleural effusion.",
            "Bilateral effusions.",
            "Left lower lobe atelectasis.",
            "Cardiomegaly.",
        ],
        references=["Left pleural effusion.", "Left and right effusions.", "Atelectasis.", "Mild cardiomegaly."],
    )
    # effusion 1: right vs left (wrong); effusion 2: bilateral vs bilateral (right); no reference side elsewhere
    assert (result["laterality_accuracy"], result["laterality_support"]) == (0.5, 2)
    result = clinical_efficacy.compute(predictions=["Cardiomegaly."], references=["Cardiomegaly."])
    assert (result["laterality_accuracy"], result["laterality_support"]) == (None, 0)


def test_perfect_predictions_score_one(clinical_efficacy):
    result = clinical_efficacy.compute(predictions=REFERENCES, references=REFERENCES)
    assert result["micro_f1"] == result["example_f1"] == result["exact_match"] == 1.0


def test_bad_uncertain_as_is_rejected(clinical_efficacy):
    with pytest.raises(ValueError, match="uncertain_as=2"):
        clinical_efficacy.compute(predictions=PREDICTIONS, references=REFERENCES, uncertain_as=2)
