"""The literature's model-based report metrics, computed by their maintained packages (the `clinical-metrics` extra,
`pip install ".[clinical-metrics]"`): CheXbert F1 (`f1chexbert`), BERTScore (`bert-score`) and RadGraph F1
(`radgraph`). The three packages call tokenizer methods that transformers 5 removed; `restore_transformers4_methods`
gives their tokenizers those methods back with transformers 4's meaning. None of the packages ships weights:
`fetch_weights()` downloads them once (online) into the Hugging Face Hub cache and the packages' cache folders;
afterwards every metric runs offline. A metric whose weights are missing raises MissingWeightsError naming the missing
files and FETCH_WEIGHTS_COMMAND; `score_clinical_metrics` records that and still computes the other metrics. Every
result carries its protocol (the uncertain rule, the observation set, the text normalisation, the package versions and
the weight files' revisions and SHA-256 hashes) and its "per_study" outputs, from which the metric is recomputed on
any resample of the studies (`report_statistics`)."""

import ast
import contextlib
import hashlib
import importlib.metadata
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

CLINICAL_METRIC_NAMES = ("chexbert", "bertscore", "radgraph")
FETCH_WEIGHTS_COMMAND = "gaze2report evaluate --fetch-weights"
WEIGHTS_REPOSITORY = "StanfordAIMI/RRG_scorers"  # where f1chexbert and radgraph fetch their checkpoints
CHEXBERT_CHECKPOINT = "chexbert.pth"
CHEXBERT_TEXT_MODEL = "bert-base-uncased"  # f1chexbert's tokenizer and architecture
BERTSCORE_MODEL = "roberta-large"  # bert-score's default for English, at its default layer (17)
# The normalisation each package applies before its model reads a report.
CHEXBERT_NORMALISATION = (
    "f1chexbert: strip, newlines and runs of whitespace to one space, bert-base-uncased WordPiece (lower-cased), "
    "truncated to 512 tokens; an empty report is labelled from [CLS] [SEP]"
)
BERTSCORE_NORMALISATION = "bert-score: the model's own tokenizer on the raw text, no lower-casing, idf off"
RADGRAPH_MODEL = "radgraph-xl"  # radgraph's default model (RadGraph-XL), as RadEval scores it
RADGRAPH_MODEL_TYPES = ("radgraph", "radgraph-xl")
RADGRAPH_MODEL_FILES = ("config.json", "weights.th", "vocabulary")  # radgraph's extracted archive
# What each reward level compares, as sets of a report's annotations (radgraph.rewards).
RADGRAPH_REWARD_LEVELS = {
    "simple": "entities as (tokens, label)",
    "partial": "entities as (tokens, label), with whether they have a relation",
    "complete": "entities without a relation as (tokens, label); each relation as (tokens, label, relation, the "
    "related entity's tokens), tokens lower-cased",
}
RADGRAPH_NORMALISATION = {
    "radgraph-xl": "radgraph: literal \\n and newlines to spaces, runs of whitespace to one space, NLTK wordpunct "
    "tokens, each word split into its backbone's word pieces",
    "radgraph": "radgraph: spaces around / , - : . ! ? ( ), split on whitespace, each word split into its backbone's "
    "word pieces",
}


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


def _hub_file(repo_id, filenames, cache_dir=None):
    """The cached path of the first of `filenames` in the snapshot of `repo_id` (refs/main) in the Hub cache at
    `cache_dir` (default: the Hugging Face Hub cache), or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
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


def restore_transformers4_methods(tokenizer):
    """Gives `tokenizer` (BERT- or RoBERTa-style; changed in place, and returned) the two methods that f1chexbert
    0.0.2, radgraph 0.1.18 and bert-score 0.3.13 call and transformers 5 removed, with transformers 4's meaning for
    one sequence: `build_inputs_with_special_tokens(ids)` is [CLS] + ids + [SEP] (radgraph; bert-score, for an empty
    report); `encode_plus` of a list of WordPiece tokens is {"input_ids": [CLS] + their ids + [SEP]}, untruncated
    (f1chexbert), and of a text (and a text pair) the tokenizer's own call with the same arguments (radgraph). Its
    class stays the same (bert-score chooses its encoding by the tokenizer's class)."""
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no [CLS] or [SEP] token: not a BERT- or RoBERTa-style one")

    def build_inputs_with_special_tokens(token_ids):
        return [tokenizer.cls_token_id, *token_ids, tokenizer.sep_token_id]

    def encode_plus(text, text_pair=None, **kwargs):
        if isinstance(text, list):
            if text_pair is not None or kwargs:
                raise ValueError("encode_plus of a token list takes no text_pair or options")
            return {"input_ids": build_inputs_with_special_tokens(tokenizer.convert_tokens_to_ids(text))}
        return tokenizer(text, text_pair, **kwargs)

    tokenizer.build_inputs_with_special_tokens = build_inputs_with_special_tokens
    tokenizer.encode_plus = encode_plus
    return tokenizer


def _read_labels(path):
    """The per-report labels f1chexbert writes to its refs_filename / hyps_filename (one Python list a line)."""
    return [ast.literal_eval(line) for line in Path(path).read_text().splitlines()]


def chexbert_f1(generated, references, device="cpu"):
    """CheXbert F1 of `generated` against `references` (lists of report strings), computed by f1chexbert's own
    F1CheXbert: its labels per report, uncertain counted as positive ("rrg" mode), blank and negative as negative;
    sklearn's micro and macro F1 over the 14 observations and over the 5 (cardiomegaly, edema, consolidation,
    atelectasis, pleural effusion), plus the 5 observations' exact-match accuracy. "per_study" holds the labels those
    numbers are computed from, as F1CheXbert writes them to its label files: "generated_labels" and "reference_labels",
    (num_reports, 14) lists of 0/1 in "observations_14" order."""
    generated, references = _check_reports(generated, references)
    weights = chexbert_weights()
    from f1chexbert import F1CheXbert

    with tempfile.TemporaryDirectory() as folder:
        generated_file, reference_file = Path(folder) / "generated.txt", Path(folder) / "references.txt"
        scorer = F1CheXbert(refs_filename=str(reference_file), hyps_filename=str(generated_file), device=device)
        restore_transformers4_methods(scorer.tokenizer)
        accuracy, _, report_14, report_5 = scorer(hyps=generated, refs=references)
        generated_labels, reference_labels = _read_labels(generated_file), _read_labels(reference_file)
    return {
        "chexbert_14_micro_f1": float(report_14["micro avg"]["f1-score"]),
        "chexbert_14_macro_f1": float(report_14["macro avg"]["f1-score"]),
        "chexbert_5_micro_f1": float(report_5["micro avg"]["f1-score"]),
        "chexbert_5_macro_f1": float(report_5["macro avg"]["f1-score"]),
        "chexbert_5_accuracy": float(accuracy),
        "per_study": {"generated_labels": generated_labels, "reference_labels": reference_labels},
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
    reports of precision, recall and F1; "per_study" holds each pair's "precision", "recall" and "f1"."""
    generated, references = _check_reports(generated, references)
    weights = bertscore_weights(model_type)
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=model_type, device=device)
    restore_transformers4_methods(scorer._tokenizer)  # BERTScorer's own tokenizer (no public attribute)
    precision, recall, f1 = scorer.score(generated, references)
    return {
        "bertscore_precision": precision.mean().item(),
        "bertscore_recall": recall.mean().item(),
        "bertscore_f1": f1.mean().item(),
        "per_study": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()},
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


def radgraph_model_dir(model_type=RADGRAPH_MODEL):
    """Where radgraph loads `model_type` from: its archive, extracted in radgraph's cache folder."""
    from radgraph import radgraph as package

    return Path(package.CACHE_DIR) / model_type


def radgraph_weights(model_type=RADGRAPH_MODEL):
    """The protocol record of radgraph's `model_type` files (its extracted archive, the archive's revision when it is
    in radgraph's cache, and the backbone's configuration and tokenizer in the Hub cache); MissingWeightsError when
    any is missing."""
    from radgraph import radgraph as package

    model_dir = radgraph_model_dir(model_type)
    archive_name = package.MODEL_MAPPING[model_type]
    missing = [name for name in RADGRAPH_MODEL_FILES if not (model_dir / name).exists()]
    if missing:
        raise MissingWeightsError(
            f"radgraph's {model_type} model {model_dir} has no {', '.join(missing)} ({archive_name} of "
            f"{WEIGHTS_REPOSITORY}, extracted); fetch the weights online with {FETCH_WEIGHTS_COMMAND}"
        )
    config = json.loads((model_dir / "config.json").read_text())
    backbones = {
        config["dataset_reader"]["token_indexers"]["bert"]["model_name"],  # its tokenizer
        config["model"]["embedder"]["token_embedders"]["bert"]["model_name"],  # its configuration
    }
    archive = _hub_file(WEIGHTS_REPOSITORY, [archive_name], cache_dir=package.CACHE_DIR)
    needed = [("config.json",), ("tokenizer.json", "vocab.txt", "vocab.json")]
    return {
        "model": {
            "repository": WEIGHTS_REPOSITORY,
            "archive": archive_name,
            "revision": None if archive is None else archive.parent.name,
            "path": str(model_dir),
            "files": {name: _sha256(model_dir / name) for name in ("config.json", "weights.th")},
        },
        "text_models": [_hub_revision(name, needed) for name in sorted(backbones)],
    }


def _cuda_index(device):
    """radgraph's `cuda` argument for a torch device name: -1 for "cpu", N for "cuda:N" ("cuda": 0)."""
    if device == "cpu":
        return -1
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return int(match.group(1) or 0)


def radgraph_scorer(model_type=RADGRAPH_MODEL, device="cpu"):
    """radgraph's own F1RadGraph (every reward level) for `model_type` on `device`, each tokenizer it loads given
    `restore_transformers4_methods`; online, radgraph downloads the weights it lacks."""
    from radgraph import F1RadGraph
    from radgraph.allennlp.common import cached_transformers

    cuda = _cuda_index(device)
    load_tokenizer = cached_transformers.get_tokenizer
    cached_transformers.get_tokenizer = lambda name, **options: restore_transformers4_methods(
        load_tokenizer(name, **options)
    )
    try:
        with contextlib.redirect_stdout(sys.stderr):  # radgraph prints the device it runs on
            return F1RadGraph(reward_level="all", model_type=model_type, cuda=cuda)
    finally:
        cached_transformers.get_tokenizer = load_tokenizer


def radgraph_f1(generated, references, model_type=RADGRAPH_MODEL, device="cpu"):
    """RadGraph F1 of `generated` against `references` (lists of report strings), computed by radgraph's own
    F1RadGraph with `model_type` (RADGRAPH_MODEL_TYPES): per pair, the F1 of the generated report's annotations
    against the reference's at each reward level (RADGRAPH_REWARD_LEVELS; 0 where either report is empty or has no
    entity), and "radgraph_simple", "radgraph_partial", "radgraph_complete": their means over the pairs. "per_study"
    holds each pair's F1 per level."""
    generated, references = _check_reports(generated, references)
    if model_type not in RADGRAPH_MODEL_TYPES:
        raise ValueError(f"unknown radgraph model_type {model_type!r}; known: {', '.join(RADGRAPH_MODEL_TYPES)}")
    weights = radgraph_weights(model_type)
    scorer = radgraph_scorer(model_type, device)
    mean_rewards, rewards, _, _ = scorer(hyps=generated, refs=references)
    return {
        **{f"radgraph_{level}": float(mean) for level, mean in zip(RADGRAPH_REWARD_LEVELS, mean_rewards, strict=True)},
        "per_study": {
            level: [float(reward) for reward in level_rewards]
            for level, level_rewards in zip(RADGRAPH_REWARD_LEVELS, rewards, strict=True)
        },
        "protocol": {
            "model_type": model_type,
            "reward_levels": dict(RADGRAPH_REWARD_LEVELS),
            "average": "each pair's F1 (precision over the generated report's set, recall over the reference's), "
            "averaged over the pairs",
            "text_normalisation": RADGRAPH_NORMALISATION[model_type],
            "packages": {package: _version(package) for package in ("radgraph", "transformers", "torch")},
            "weights": weights,
        },
    }


METRICS = {"chexbert": chexbert_f1, "bertscore": bertscore, "radgraph": radgraph_f1}
EXTRA_PACKAGES = {"chexbert": "f1chexbert", "bertscore": "bert_score", "radgraph": "radgraph"}


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
    (it passes the removed `force_filename`), so its checkpoint is fetched here and copied where f1chexbert loads it;
    radgraph downloads and extracts its own archive (RADGRAPH_MODEL)."""
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
    if "radgraph" in metrics:
        radgraph_scorer(RADGRAPH_MODEL, "cpu")
