"""Report NLG metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr with pycocoevalcap's own scorers, as an `evaluate` metric.

Normalisation ("normalization" argument):
- "r2gen" (default): R2Gen's `clean_report_mimic_cxr` (also used by R2GenGPT and PromptMRG) applied to predictions and
  references, then the scorers split on spaces. See `clean_report_r2gen` for exactly what it does.
- "ptb": pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1, `-lowerCase`, punctuation tokens removed), the COCO
  caption evaluation path. Needs Java.

Scores are corpus-level exactly as pycocoevalcap defines them: BLEU pools n-gram counts over the corpus (brevity
penalty against the closest reference length), METEOR is meteor-1.5.jar's aggregate (`-l en -norm`), ROUGE-L is the
mean of per-pair LCS F-measures (beta 1.2), CIDEr is CIDEr-D with document frequencies from the evaluated references.
An empty (or whitespace-only) prediction is allowed: it is scored as the empty string, contributing 0 to every metric.
An empty reference is an error. When `java` is not on the PATH, METEOR is None and "meteor_error" says why.
"""

import importlib.metadata
import re
import shutil

import datasets
import evaluate
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from modeling_gaze2report.evaluation.meteor import meteor_scorer

NORMALIZATIONS = ("r2gen", "ptb")

_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{chen2020generating, title={Generating Radiology Reports via Memory-driven Transformer},
  author={Chen, Zhihong and Song, Yan and Chang, Tsung-Hui and Wan, Xiang}, booktitle={EMNLP}, year={2020}}
@article{chen2015microsoft, title={Microsoft COCO Captions: Data Collection and Evaluation Server},
  author={Chen, Xinlei and others}, journal={arXiv:1504.00325}, year={2015}}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): generated reports.
    references (`list[str]` or `list[list[str]]`): one or several reference reports per prediction.
    normalization (`str`): "r2gen" (default) or "ptb".
Returns:
    bleu_1, bleu_2, bleu_3, bleu_4, meteor, rouge_l, cider (floats; meteor None without Java), normalization,
    implementation, and meteor_error when METEOR could not run.
"""

_SPACE_RUNS = [("__", "_")] * 7 + [("  ", " ")] * 6 + [("..", ".")] * 8
_LIST_NUMBERS = [
    ("1. ", ""),
    (". 2. ", ". "),
    (". 3. ", ". "),
    (". 4. ", ". "),
    (". 5. ", ". "),
    (" 2. ", ". "),
    (" 3. ", ". "),
    (" 4. ", ". "),
    (" 5. ", ". "),
]
# R2Gen's character class, kept verbatim: ":-\[" is a range (":" to "["), so it also removes ; < = > ? @ and A-Z.
_R2GEN_PUNCTUATION = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")


def clean_report_r2gen(report):
    """R2Gen's `clean_report_mimic_cxr`, verbatim: newlines -> spaces; runs of "_", "  " and ".." shortened by repeated
    pairwise replacement; list numbers "1. " .. "5. " removed; stripped, lowercased, split into sentences at ". ";
    in each sentence `" ' / \\` removed and then every character of R2Gen's class `[.,?;*!%^&_+():-\\[\\]{}]` removed;
    sentences joined with " . " and a final " ." appended (so "." is a token of its own)."""
    text = report.replace("\n", " ")
    for old, new in _SPACE_RUNS + _LIST_NUMBERS:
        text = text.replace(old, new)
    sentences = text.strip().lower().split(". ")
    cleaned = []
    for sentence in sentences:
        sentence = sentence.replace('"', "").replace("/", "").replace("\\", "").replace("'", "").strip().lower()
        cleaned.append(_R2GEN_PUNCTUATION.sub("", sentence))
    return " . ".join(cleaned) + " ."


def check_inputs(predictions, references, normalization):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"report_nlg: normalization={normalization!r}; expected one of {NORMALIZATIONS}")
    if len(predictions) != len(references):
        raise ValueError(f"report_nlg: {len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("report_nlg: no predictions to score")
    for index, reference_list in enumerate(references):
        if len(reference_list) == 0:
            raise ValueError(f"report_nlg: references[{index}] is an empty list")
        for position, reference in enumerate(reference_list):
            if not reference.strip():
                raise ValueError(f"report_nlg: reference {position} of references[{index}] is empty")


def java_available():
    """Whether `java` is on the PATH (METEOR and the PTB tokenizer need it)."""
    return shutil.which("java") is not None


def normalize(predictions, references, normalization):
    """`(res, gts)` dicts in pycocoevalcap's format, `{index: [text]}` and `{index: [text, ...]}`, normalised."""
    if normalization == "r2gen":
        res = {index: [clean_report_r2gen(text) if text.strip() else ""] for index, text in enumerate(predictions)}
        gts = {index: [clean_report_r2gen(text) for text in texts] for index, texts in enumerate(references)}
        return res, gts
    if not java_available():
        raise RuntimeError("report_nlg: normalization='ptb' runs Stanford PTBTokenizer, which needs `java` on the PATH")
    tokenizer = PTBTokenizer()
    res = tokenizer.tokenize({index: [{"caption": text}] for index, text in enumerate(predictions)})
    gts = tokenizer.tokenize({index: [{"caption": text} for text in texts] for index, texts in enumerate(references)})
    if len(res) != len(predictions) or len(gts) != len(references):
        raise RuntimeError("report_nlg: PTBTokenizer returned fewer lines than it was given")
    return res, gts


def score(res, gts):
    """pycocoevalcap's scorers on normalised inputs; METEOR None with a reason when Java is missing."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge_l, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    scores = {f"bleu_{n}": float(bleu[n - 1]) for n in range(1, 5)}
    scores.update(rouge_l=float(rouge_l), cider=float(cider))
    if not java_available():
        scores["meteor"] = None
        scores["meteor_error"] = "METEOR not computed: meteor-1.5.jar needs `java` on the PATH and none was found"
    else:
        meteor, _ = meteor_scorer().compute_score(gts, res)
        scores["meteor"] = float(meteor)
    return scores


class ReportNLG(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=["https://github.com/tylin/coco-caption", "https://github.com/zhjohnchan/R2Gen"],
        )

    def _compute(self, predictions, references, normalization="r2gen"):
        references = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
        check_inputs(predictions, references, normalization)
        res, gts = normalize(predictions, references, normalization)
        scores = score(res, gts)
        scores["normalization"] = normalization
        scores["implementation"] = (
            f"pycocoevalcap {importlib.metadata.version('pycocoevalcap')}: Bleu(4) closest-length brevity penalty, "
            "Meteor 1.5 (-l en -norm), Rouge-L beta 1.2, CIDEr-D (sigma 6, document frequencies from the references)"
        )
        return scores
