"""The literature's model-based report metrics, computed by their maintained packages (the `clinical-metrics` extra,
`pip install ".[clinical-metrics]"`): CheXbert F1 (`f1chexbert`) and BERTScore (`bert-score`). RadGraph F1 is not
offered: radgraph 0.1.18 calls the tokenizers' `encode_plus`, which transformers 5 removed. None of the packages ships
weights: `fetch_weights()` downloads them once (online) into the Hugging Face Hub cache and f1chexbert's cache folder;
afterwards every metric runs offline. A metric whose weights are missing raises MissingWeightsError naming the missing
files and FETCH_WEIGHTS_COMMAND; `score_clinical_metrics` records that and still computes the other metrics. Every
result carries its protocol: the uncertain rule, the observation set, the text normalisation, the package versions and
the weight files' revisions and SHA-256 hashes."""

import hashlib
import importlib.metadata
import shutil
from pathlib import Path

CLINICAL_METRIC_NAMES = ("chexbert", "bertscore")
FETCH_WEIGHTS_COMMAND = "gaze2report evaluate --fetch-weights"
WEIGHTS_REPOSITORY = "StanfordAIMI/RRG_scorers"  # CheXbert's checkpoint, where f1chexbert fetches it
CHEXBERT_CHECKPOINT = "chexbert.pth"
CHEXBERT_TEXT_MODEL = "bert-base-uncased"  # f1chexbert's tokenizer and architecture
BERTSCORE_MODEL = "roberta-large"  # bert-score's default for English, at its default layer (17)
# The normalisation each package applies before its model reads a report.
CHEXBERT_NORMALISATION = (
    "f1chexbert: strip, newlines and runs of whitespace to one space, bert-base-uncased WordPiece (lower-cased), "
    "truncated to 512 tokens; an empty report is labelled from [CLS] [SEP]"
)
BERTSCORE_NORMALISATION = "bert-score: the model's own tokenizer on the raw text, no lower-casing, idf off"


class MissingWeightsError(FileNotFoundError):
    """A metric's weights are not on this machine (and cannot be downloaded: offline)."""


def _version(package):
    return importlib.metadata.version(package)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_file(repo_id, filenames):
    """The cached path of the first of `filenames` in the Hub cache's snapshot of `repo_id` (refs/main), or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str):
            return Path(path)
    return None


def _hub_revision(repo_id, needed):
    """{"repository", "revision", "files"} of `repo_id` in the Hub cache, where `needed` lists the files it must hold
    (each entry a tuple of alternative names); raises MissingWeightsError naming what is missing."""
    found, missing = [], []
    for alternatives in needed:
        path = _hub_file(repo_id, alternatives)
        if path is None:
            missing.append(" or ".join(alternatives))
        else:
            found.append(path)
    if missing:
        raise MissingWeightsError(
            f"the Hugging Face Hub cache has no {', '.join(missing)} of {repo_id}; fetch the weights online with "
            f"{FETCH_WEIGHTS_COMMAND}"
        )
    return {
        "repository": repo_id,
        "revision": found[0].parent.name,  # the snapshot folder is named after the commit
        "files": {path.name: _sha256(path) for path in found},
    }


def _check_reports(generated, references):
    for name, reports in (("generated", generated), ("references", references)):
        if isinstance(reports, str) or not all(isinstance(report, str) for report in reports):
            raise ValueError(f"{name} must be a list of report strings")
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated reports but {len(references)} references: one reference each")
    if not generated:
        raise ValueError("no reports to score: generated and references are empty")
    return list(generated), list(references)


def chexbert_checkpoint_path():
    """Where f1chexbert loads its checkpoint from (its cache folder; `fetch_weights` puts it there)."""
    from f1chexbert import f1chexbert

    return Path(f1chexbert.CACHE_DIR) / CHEXBERT_CHECKPOINT


def chexbert_weights():
    """The protocol record of CheXbert's weight files; MissingWeightsError when any is missing."""
    checkpoint = chexbert_checkpoint_path()
    if not checkpoint.is_file():
        raise MissingWeightsError(
            f"CheXbert's checkpoint {checkpoint} is missing ({CHEXBERT_CHECKPOINT} of {WEIGHTS_REPOSITORY}); fetch "
            f"the weights online with {FETCH_WEIGHTS_COMMAND}"
        )
    return {
        "checkpoint": {"repository": WEIGHTS_REPOSITORY, "path": str(checkpoint), "sha256": _sha256(checkpoint)},
        "text_model": _hub_revision(CHEXBERT_TEXT_MODEL, [("config.json",), ("vocab.txt",)]),
    }


class TokensToInputIds:
    """f1chexbert 0.0.2's tokenizer, given back `encode_plus(tokens)`, which it calls and transformers 5 removed, with
    transformers 4's meaning for a list of WordPiece tokens: {"input_ids": [CLS] + their ids + [SEP]}, no truncation.
    Every other attribute is the tokenizer's own."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode_plus(self, tokens):
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        return {"input_ids": [self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id]}


def chexbert_f1(generated, references, device="cpu"):
    """CheXbert F1 of `generated` against `references` (lists of report strings), computed by f1chexbert's own
    F1CheXbert: its labels per report, uncertain counted as positive ("rrg" mode), blank and negative as negative;
    sklearn's micro and macro F1 over the 14 observations and over the 5 (cardiomegaly, edema, consolidation,
    atelectasis, pleural effusion), plus the 5 observations' exact-match accuracy. Its tokenizer is wrapped in
    TokensToInputIds so that f1chexbert runs under transformers 5."""
    generated, references = _check_reports(generated, references)
    weights = chexbert_weights()
    from f1chexbert import F1CheXbert

    scorer = F1CheXbert(device=device)
    scorer.tokenizer = TokensToInputIds(scorer.tokenizer)
    accuracy, _, report_14, report_5 = scorer(hyps=generated, refs=references)
    return {
        "chexbert_14_micro_f1": float(report_14["micro avg"]["f1-score"]),
        "chexbert_14_macro_f1": float(report_14["macro avg"]["f1-score"]),
        "chexbert_5_micro_f1": float(report_5["micro avg"]["f1-score"]),
        "chexbert_5_macro_f1": float(report_5["macro avg"]["f1-score"]),
        "chexbert_5_accuracy": float(accuracy),
        "protocol": {
            "labeler": "CheXbert (f1chexbert)",
            "uncertain": "positive",
            "observations_14": list(scorer.target_names),
            "observations_5": list(scorer.target_names_5),
            "averages": "sklearn classification_report's micro avg and macro avg over the observations",
            "text_normalisation": CHEXBERT_NORMALISATION,
            "packages": {package: _version(package) for package in ("f1chexbert", "transformers", "torch")},
            "weights": weights,
        },
    }


def bertscore_weights(model_type=BERTSCORE_MODEL):
    """The protocol record of BERTScore's model files in the Hub cache; MissingWeightsError when any is missing."""
    needed = [
        ("config.json",),
        ("model.safetensors", "pytorch_model.bin"),
        ("tokenizer.json", "vocab.json", "vocab.txt"),
    ]
    return {"model": _hub_revision(model_type, needed)}


def bertscore(generated, references, model_type=BERTSCORE_MODEL, device="cpu"):
    """BERTScore of `generated` against `references` (lists of report strings), computed by bert-score's BERTScorer
    with `model_type` at bert-score's default layer for it, idf off, no baseline rescaling: the means over the
    reports of precision, recall and F1."""
    generated, references = _check_reports(generated, references)
    weights = bertscore_weights(model_type)
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=model_type, device=device)
    precision, recall, f1 = scorer.score(generated, references)
    return {
        "bertscore_precision": precision.mean().item(),
        "bertscore_recall": recall.mean().item(),
        "bertscore_f1": f1.mean().item(),
        "protocol": {
            "model_type": model_type,
            "num_layers": scorer.num_layers,
            "idf": False,
            "rescale_with_baseline": False,
            "bert_score_hash": scorer.hash,
            "text_normalisation": BERTSCORE_NORMALISATION,
            "packages": {package: _version(package) for package in ("bert-score", "transformers", "torch")},
            "weights": weights,
        },
    }


METRICS = {"chexbert": chexbert_f1, "bertscore": bertscore}
EXTRA_PACKAGES = {"chexbert": "f1chexbert", "bertscore": "bert_score"}


def _check_metrics(metrics):
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown clinical metric {unknown[0]!r}; known metrics are {', '.join(METRICS)}")


def score_clinical_metrics(generated, references, metrics=CLINICAL_METRIC_NAMES, device="cpu"):
    """Each of `metrics` (names in CLINICAL_METRIC_NAMES) on `generated` against `references`, as
    {"scores": {name: result with its "protocol"}, "unavailable": {name: why}}: a metric whose package is not installed
    or whose weights are missing is recorded under "unavailable" with the reason (naming the missing weights and
    FETCH_WEIGHTS_COMMAND) while the other metrics are still computed."""
    _check_metrics(metrics)
    generated, references = _check_reports(generated, references)
    scores, unavailable = {}, {}
    for name in metrics:
        try:
            importlib.import_module(EXTRA_PACKAGES[name])
        except ImportError as error:
            unavailable[name] = f'{error}; install the extra with pip install ".[clinical-metrics]"'
            continue
        try:
            scores[name] = METRICS[name](generated, references, device=device)
        except MissingWeightsError as error:
            unavailable[name] = str(error)
    return {"scores": scores, "unavailable": unavailable}


def fetch_weights(metrics=CLINICAL_METRIC_NAMES):
    """Downloads (online) every file that `metrics` load into the Hugging Face Hub cache and the packages' cache
    folders, so that they run offline afterwards. f1chexbert's own download does not work with huggingface_hub >= 1
    (it passes the removed `force_filename`), so its checkpoint is fetched here and copied where f1chexbert loads it."""
    from modeling_gaze2report.files import write_atomically

    _check_metrics(metrics)
    if "chexbert" in metrics:
        from f1chexbert import F1CheXbert
        from huggingface_hub import hf_hub_download

        downloaded = hf_hub_download(WEIGHTS_REPOSITORY, CHEXBERT_CHECKPOINT)
        with open(downloaded, "rb") as source:
            write_atomically(chexbert_checkpoint_path(), lambda target: shutil.copyfileobj(source, target), binary=True)
        F1CheXbert(device="cpu")  # fetches bert-base-uncased's tokenizer and configuration
    if "bertscore" in metrics:
        from bert_score import BERTScorer

        BERTScorer(model_type=BERTSCORE_MODEL, device="cpu")
