"""report_nlg: equals pycocoevalcap's own scorers on the same normalised inputs; R2Gen cleaning; Java-missing path."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
import sys

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from modeling_gaze2report.evaluation import load_metric
from modeling_gaze2report.evaluation.metrics.report_nlg.report_nlg import clean_report_r2gen

PREDICTIONS = [
    "The heart size is normal. No focal consolidation, pleural effusion or pneumothorax.",
    "Small left pleural effusion with adjacent atelectasis.",
    "Endotracheal tube terminates 4 cm above the carina. Mild pulmonary edema.",
    "Stable cardiomegaly. Lungs are clear.",
]
REFERENCES = [
    "Heart size is normal. There is no focal consolidation, effusion, or pneumothorax.",
    "Left pleural effusion and left basilar atelectasis, unchanged.",
    "ET tube 4 cm above the carina. Moderate pulmonary edema has worsened.",
    "Moderate cardiomegaly is stable. The lungs are clear.",
]
HAS_JAVA = shutil.which("java") is not None


@pytest.fixture(scope="module")
def report_nlg():
    return load_metric("report_nlg")


def _pycocoevalcap_scores(res, gts, meteor=None):
    """pycocoevalcap's classes called directly; `meteor` is a running pycocoevalcap `Meteor` (one jar per process,
    the metric's own, because loading the jar takes tens of seconds)."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu_{n}": bleu[n - 1] for n in range(1, 5)}
    scores["rouge_l"] = Rouge().compute_score(gts, res)[0]
    scores["cider"] = Cider().compute_score(gts, res)[0]
    if meteor is not None:
        scores["meteor"] = meteor.compute_score(gts, res)[0]
    return scores


def _meteor_of(metric):
    meteor = sys.modules[type(metric).__module__].meteor_scorer()
    assert type(meteor).__module__ == "pycocoevalcap.meteor.meteor"
    return meteor


@pytest.mark.skipif(not HAS_JAVA, reason="METEOR needs java")
def test_r2gen_scores_equal_pycocoevalcap_on_r2gen_cleaned_text(report_nlg):
    result = report_nlg.compute(predictions=PREDICTIONS, references=REFERENCES, normalization="r2gen")
    res = {index: [clean_report_r2gen(text)] for index, text in enumerate(PREDICTIONS)}
    gts = {index: [clean_report_r2gen(text)] for index, text in enumerate(REFERENCES)}
    expected = _pycocoevalcap_scores(res, gts, _meteor_of(report_nlg))
    assert {key: result[key] for key in expected} == expected
    assert result["normalization"] == "r2gen"
    assert result["implementation"].startswith("pycocoevalcap 1.2")
    assert 0 < result["bleu_1"] <= 1 and result["cider"] > 0


@pytest.mark.skipif(not HAS_JAVA, reason="PTBTokenizer and METEOR need java")
def test_ptb_scores_with_several_references_equal_pycocoevalcap(report_nlg):
    references = [[reference, prediction.upper()] for reference, prediction in zip(REFERENCES, PREDICTIONS)]
    result = report_nlg.compute(predictions=PREDICTIONS, references=references, normalization="ptb")
    tokenizer = PTBTokenizer()
    res = tokenizer.tokenize({index: [{"caption": text}] for index, text in enumerate(PREDICTIONS)})
    gts = tokenizer.tokenize({index: [{"caption": text} for text in texts] for index, texts in enumerate(references)})
    expected = _pycocoevalcap_scores(res, gts, _meteor_of(report_nlg))
    assert {key: result[key] for key in expected} == expected
    assert result["bleu_4"] == pytest.approx(1.0)  # every prediction is, after lowercasing, one of its references


def test_without_java_meteor_is_none_with_a_message_and_the_rest_is_computed(report_nlg, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda command, *args, **kwargs: None)
    result = report_nlg.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert result["meteor"] is None
    assert "java" in result["meteor_error"]
    res = {index: [clean_report_r2gen(text)] for index, text in enumerate(PREDICTIONS)}
    gts = {index: [clean_report_r2gen(text)] for index, text in enumerate(REFERENCES)}
    expected = _pycocoevalcap_scores(res, gts)
    assert {key: result[key] for key in expected} == expected
    with pytest.raises(RuntimeError, match="java"):
        report_nlg.compute(predictions=PREDICTIONS, references=REFERENCES, normalization="ptb")


@pytest.mark.parametrize(
    "raw,cleaned",
    [
        ("The heart is normal.", "the heart is normal ."),
        ("1. Small effusion. 2. No pneumothorax.", "small effusion . no pneumothorax ."),
        ("Lines/tubes: unchanged!!  ET tube (stable)", "linestubes unchanged et tube stable ."),
        ('Size ~3.5 cm; "mass"\nat L-sided apex...', "size ~35 cm mass at l-sided apex ."),
        ("NG tube__ in place.. Heart \\ normal", "ng tube in place . heart  normal ."),
        ("Lungs: clear 100%+", "lungs clear 100 ."),
    ],
)
def test_r2gen_cleaning_matches_r2gen_clean_report_mimic_cxr(raw, cleaned):
    assert clean_report_r2gen(raw) == cleaned


def test_empty_prediction_scores_zero_and_empty_reference_is_rejected(report_nlg, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda command, *args, **kwargs: None)
    result = report_nlg.compute(predictions=["", "   "], references=["No effusion.", "Normal heart."])
    assert result["bleu_1"] == pytest.approx(0.0, abs=1e-6) and result["rouge_l"] == 0 and result["cider"] == 0
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        report_nlg.compute(predictions=["a", "b"], references=["No effusion.", " "])
    with pytest.raises(ValueError, match="normalization"):
        report_nlg.compute(predictions=["a"], references=["b"], normalization="nltk")


def test_load_metric_rejects_unknown_names_listing_the_known_ones():
    with pytest.raises(ValueError, match="report_nlg, clinical_efficacy, scanpath"):
        load_metric("bleu")
