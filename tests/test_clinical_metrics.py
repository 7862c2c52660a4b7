"""The clinical-metrics wrapper against the packages' own functions, offline: same-architecture checkpoints with random
weights (tiny sizes) are written into a temporary Hugging Face Hub cache and the packages' cache folders, in the layout
the packages look them up in, and a fresh interpreter (the packages read their cache folders at import) scores the same
reports through the wrapper and through each package. The packages' own functions run under transformers 5 with this
file's own stand-in for the tokenizer methods transformers 5 removed (TRANSFORMERS_4_TOKENIZER)."""

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("f1chexbert")
pytest.importorskip("bert_score")
pytest.importorskip("radgraph")

from modeling_gaze2report.evaluation import clinical_metrics  # noqa: E402

GENERATED = [
    "The heart is enlarged. There is a small left pleural effusion.",
    "No acute cardiopulmonary process.",
    "Possible consolidation in the right lower lobe, may represent pneumonia.",
    "Mild pulmonary edema with bibasilar atelectasis.",
]
REFERENCES = [
    "Cardiomegaly with a small left pleural effusion.",
    "No acute cardiopulmonary abnormality.",
    "Right lower lobe consolidation.",
    "Pulmonary edema, no pneumothorax.",
]
# The pairs the wrapper and the packages score: the reports above and an empty generated report.
SCORED_GENERATED, SCORED_REFERENCES = [*GENERATED, ""], [*REFERENCES, "Heart size is normal."]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RADGRAPH_BACKBONE = "test-org/radgraph-backbone"  # the BERT that the test's radgraph configuration names


def hub_snapshot(hub, repo_id):
    """The snapshot folder of `repo_id` at COMMIT, with refs/main pointing at it (the Hub cache's layout)."""
    repository = hub / f"models--{repo_id.replace('/', '--')}"
    (repository / "refs").mkdir(parents=True)
    (repository / "refs" / "main").write_text(COMMIT)
    snapshot = repository / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def write_tiny_bert(hub, repo_id):
    """A lower-casing WordPiece tokenizer of the reports' words and a tiny BertConfig in the Hub cache's snapshot of
    `repo_id`; returns the configuration."""
    from transformers import BertConfig, BertTokenizer

    snapshot = hub_snapshot(hub, repo_id)
    words = sorted({word.strip(".,").lower() for report in GENERATED + REFERENCES for word in report.split()})
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]
    vocabulary = special + words + letters + [f"##{letter}" for letter in letters]
    (snapshot / "vocab.txt").write_text("\n".join(dict.fromkeys(vocabulary)) + "\n")
    BertTokenizer(str(snapshot / "vocab.txt")).save_pretrained(snapshot)
    config = BertConfig(
        vocab_size=len(dict.fromkeys(vocabulary)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=1.0,  # wide weights: the labels differ between reports
    )
    config.save_pretrained(snapshot)
    return config


def write_chexbert(hub, cache):
    """bert-base-uncased's tokenizer and (tiny) configuration in the Hub cache, and f1chexbert's chexbert.pth (a
    DataParallel state dict of its bert_labeler, random weights) in its cache folder; returns the checkpoint's path."""
    from transformers import BertModel

    config = write_tiny_bert(hub, "bert-base-uncased")
    torch.manual_seed(0)
    state = {f"module.bert.{name}": tensor for name, tensor in BertModel(config).state_dict().items()}
    for head in range(14):
        classes = 2 if head == 13 else 4
        state[f"module.linear_heads.{head}.weight"] = torch.randn(classes, config.hidden_size)
        state[f"module.linear_heads.{head}.bias"] = torch.zeros(classes)
    checkpoint = cache / "chexbert" / "chexbert.pth"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"model_state_dict": state}, checkpoint)
    return checkpoint


def write_roberta_large(hub):
    """roberta-large as bert-score loads it: a byte-level BPE tokenizer and a RobertaModel with random weights (tiny
    width, bert-score's default 17 layers for it) in the Hub cache."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    snapshot = hub_snapshot(hub, "roberta-large")
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + list(bytes_to_unicode().values())
    (snapshot / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (snapshot / "merges.txt").write_text("#version: 0.2\n")
    RobertaTokenizer(str(snapshot / "vocab.json"), str(snapshot / "merges.txt"), model_max_length=512).save_pretrained(
        snapshot
    )
    config = RobertaConfig(
        vocab_size=len(tokens),
        hidden_size=16,
        num_hidden_layers=17,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=514,
        pad_token_id=1,
    )
    torch.manual_seed(1)
    RobertaModel(config).save_pretrained(snapshot)


# transformers 4's encode_plus and build_inputs_with_special_tokens of a BERT tokenizer, which radgraph 0.1.18 calls
# and transformers 5 removed, given to every tokenizer radgraph loads.
TRANSFORMERS_4_TOKENIZER = """
from radgraph.allennlp.common import cached_transformers


class BertTokenizer4:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode_plus(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def build_inputs_with_special_tokens(self, token_ids):
        return [self.tokenizer.cls_token_id] + token_ids + [self.tokenizer.sep_token_id]


load_tokenizer = cached_transformers.get_tokenizer
cached_transformers.get_tokenizer = lambda *args, **kwargs: BertTokenizer4(load_tokenizer(*args, **kwargs))
"""

SCORE_BOTH_WAYS = """
import json, sys
from bert_score import BERTScorer
from f1chexbert import F1CheXbert
from radgraph import F1RadGraph
from modeling_gaze2report.evaluation.clinical_metrics import score_clinical_metrics

generated, references = json.loads(sys.argv[1])
wrapped = score_clinical_metrics(generated, references)
package = {}
if "chexbert" in wrapped["scores"]:
    scorer = F1CheXbert(device="cpu")
    tokenizer = scorer.tokenizer
    # transformers 4's encode_plus of a token list, which f1chexbert 0.0.2 calls and transformers 5 removed
    tokenizer.encode_plus = lambda tokens: {
        "input_ids": [tokenizer.cls_token_id] + tokenizer.convert_tokens_to_ids(tokens) + [tokenizer.sep_token_id]
    }
    accuracy, _, report_14, report_5 = scorer(hyps=generated, refs=references)
    package["chexbert"] = {
        "chexbert_14_micro_f1": report_14["micro avg"]["f1-score"],
        "chexbert_14_macro_f1": report_14["macro avg"]["f1-score"],
        "chexbert_5_micro_f1": report_5["micro avg"]["f1-score"],
        "chexbert_5_macro_f1": report_5["macro avg"]["f1-score"],
        "chexbert_5_accuracy": accuracy,
    }
    package["chexbert_labels"] = {
        "generated_labels": [scorer.get_label(report.strip()) for report in generated],
        "reference_labels": [scorer.get_label(report.strip()) for report in references],
    }
if "bertscore" in wrapped["scores"]:
    scorer = BERTScorer(model_type="roberta-large", device="cpu")
    tokenizer = scorer._tokenizer
    # transformers 4's build_inputs_with_special_tokens, which bert-score 0.3.13 calls for an empty report
    tokenizer.build_inputs_with_special_tokens = lambda ids: [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id]
    precision, recall, f1 = scorer.score(generated, references)
    package["bertscore"] = {
        "bertscore_precision": precision.mean().item(),
        "bertscore_recall": recall.mean().item(),
        "bertscore_f1": f1.mean().item(),
    }
    package["bertscore_per_pair"] = {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}
if "radgraph" in wrapped["scores"]:
    exec(TRANSFORMERS_4_TOKENIZER)
    mean_rewards, rewards, _, _ = F1RadGraph(reward_level="all", model_type="radgraph-xl", cuda=-1)(
        hyps=generated, refs=references
    )
    package["radgraph"] = dict(zip(["radgraph_simple", "radgraph_partial", "radgraph_complete"], mean_rewards))
    package["radgraph_per_pair"] = dict(zip(["simple", "partial", "complete"], rewards))
print(json.dumps({"wrapped": wrapped, "package": package}))
"""

# radgraph-xl's DyGIE model as radgraph builds it from its config.json and vocabulary (random weights), saved where
# radgraph loads it (its archive extracted in its cache folder) and as its archive in its Hub-layout cache.
WRITE_RADGRAPH = """
import json, sys, tarfile
from pathlib import Path
import torch
from dotmap import DotMap
from radgraph import radgraph as package
from radgraph.allennlp.data import Vocabulary
from radgraph.allennlp.modules import text_field_embedders, token_embedders
from radgraph.dygie.models import dygie

exec(TRANSFORMERS_4_TOKENIZER)
config, commit = json.loads(sys.argv[1])
vocabulary = Vocabulary()
vocabulary.add_tokens_to_namespace(
    ["", "Anatomy::definitely present", "Observation::definitely present", "Observation::definitely absent",
     "Observation::uncertain"],
    "radgraph-xl__ner_labels",
)
vocabulary.add_tokens_to_namespace(["located_at", "modify", "suggestive_of"], "radgraph-xl__relation_labels")
bert = config["model"]["embedder"]["token_embedders"]["bert"]
embedder = text_field_embedders.BasicTextFieldEmbedder(
    {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(bert["model_name"], max_length=bert["max_length"])}
)
arguments = DotMap(config).model
for name in ["type", "embedder", "initializer", "module_initializer"]:
    del arguments[name]
torch.manual_seed(2)
model = dygie.DyGIE(vocab=vocabulary, embedder=embedder, **arguments)
model_dir = Path(package.CACHE_DIR) / "radgraph-xl"
model_dir.mkdir(parents=True)
vocabulary.save_to_files(str(model_dir / "vocabulary"))
(model_dir / "config.json").write_text(json.dumps(config))
torch.save(model.state_dict(), model_dir / "weights.th")
repository = Path(package.CACHE_DIR) / "models--StanfordAIMI--RRG_scorers"
(repository / "refs").mkdir(parents=True)
(repository / "refs" / "main").write_text(commit)
(repository / "snapshots" / commit).mkdir(parents=True)
with tarfile.open(repository / "snapshots" / commit / "radgraph-xl.tar.gz", "w:gz") as archive:
    for name in ["config.json", "weights.th", "vocabulary"]:
        archive.add(model_dir / name, arcname=name)
print(model_dir)
"""
INDEXER = {"type": "pretrained_transformer_mismatched", "model_name": RADGRAPH_BACKBONE, "max_length": 512}
# DyGIE++'s configuration as radgraph reads it (tiny feature sizes).
RADGRAPH_CONFIG = {
    "dataset_reader": {"type": "dygie", "max_span_width": 8, "token_indexers": {"bert": INDEXER}},
    "model": {
        "type": "dygie",
        "embedder": {"token_embedders": {"bert": INDEXER}},
        "initializer": {},
        "module_initializer": {},
        "feature_size": 8,
        "max_span_width": 8,
        "target_task": "relation",
        "feedforward_params": {"num_layers": 2, "hidden_dims": 16, "dropout": 0.4},
        "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
        "modules": {
            "coref": {"spans_per_word": 0.3, "max_antecedents": 100, "coref_prop": 0},
            "ner": {},
            "relation": {"spans_per_word": 0.5},
            "events": {
                "trigger_spans_per_word": 0.3,
                "argument_spans_per_word": 0.8,
                "loss_weights": {"trigger": 1.0, "arguments": 0.5},
            },
        },
    },
}


def run_offline(tmp_path, script, argument):
    """The last line of stdout of `script` (given `argument`) in a fresh interpreter reading only the temporary caches
    under `tmp_path`, offline."""
    environment = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(tmp_path / "hub"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    completed = subprocess.run(
        [sys.executable, "-c", f"TRANSFORMERS_4_TOKENIZER = {TRANSFORMERS_4_TOKENIZER!r}\n{script}", argument],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip().splitlines()[-1]


def write_radgraph(tmp_path):
    """radgraph-xl with random weights in radgraph's cache folder under `tmp_path` and its (tiny BERT) backbone in the
    Hub cache; returns the model's folder."""
    write_tiny_bert(tmp_path / "hub", RADGRAPH_BACKBONE)
    return Path(run_offline(tmp_path, WRITE_RADGRAPH, json.dumps([RADGRAPH_CONFIG, COMMIT])))


def score_offline(tmp_path, generated, references):
    """The wrapper's and the packages' results in a fresh interpreter reading only the temporary caches, offline."""
    return json.loads(run_offline(tmp_path, SCORE_BOTH_WAYS, json.dumps([generated, references])))


@pytest.fixture(scope="module")
def offline_scores(tmp_path_factory):
    """(the wrapper's and the packages' results on GENERATED / REFERENCES with every weight in the temporary caches,
    the CheXbert checkpoint's path)."""
    cache_root = tmp_path_factory.mktemp("caches")
    checkpoint = write_chexbert(cache_root / "hub", cache_root / "cache")
    write_roberta_large(cache_root / "hub")
    radgraph_dir = write_radgraph(cache_root)
    return score_offline(cache_root, SCORED_GENERATED, SCORED_REFERENCES), checkpoint, radgraph_dir


def test_wrapper_equals_the_packages_own_functions_offline(offline_scores):
    result, _, _ = offline_scores
    scores, package = result["wrapped"]["scores"], result["package"]

    for name in ("chexbert", "bertscore", "radgraph"):
        assert {key: value for key, value in scores[name].items() if key not in ("protocol", "per_study")} == package[
            name
        ]
    assert len(scores["chexbert"]) == 7  # 5 scores, the per-study labels and the protocol
    assert scores["chexbert"]["chexbert_14_micro_f1"] < 1  # the random labels disagree somewhere: not a vacuous match
    assert scores["bertscore"]["per_study"] == package["bertscore_per_pair"]
    assert scores["radgraph"]["per_study"] == package["radgraph_per_pair"]
    assert 0 < scores["radgraph"]["radgraph_simple"] < 1  # the random annotations match partly: not a vacuous match
    assert [rewards[-1] for rewards in scores["radgraph"]["per_study"].values()] == [0, 0, 0]  # the empty report


def test_chexbert_per_study_labels_give_the_packages_f1(offline_scores):
    from sklearn.metrics import f1_score

    result, _, _ = offline_scores
    chexbert = result["wrapped"]["scores"]["chexbert"]
    generated = np.array(chexbert["per_study"]["generated_labels"])
    referenced = np.array(chexbert["per_study"]["reference_labels"])

    assert chexbert["per_study"] == result["package"]["chexbert_labels"]  # F1CheXbert.get_label of each report
    assert generated.shape == referenced.shape == (len(SCORED_GENERATED), 14)
    assert set(np.unique(np.concatenate([generated, referenced]))) <= {0, 1}
    observations_14 = chexbert["protocol"]["observations_14"]
    five = [observations_14.index(name) for name in chexbert["protocol"]["observations_5"]]
    for columns, size in ((slice(None), 14), (five, 5)):
        for average in ("micro", "macro"):
            recomputed = f1_score(referenced[:, columns], generated[:, columns], average=average)
            assert recomputed == chexbert[f"chexbert_{size}_{average}_f1"]


def test_protocol_names_the_weights_loaded(offline_scores):
    result, checkpoint, radgraph_dir = offline_scores
    scores = result["wrapped"]["scores"]

    chexbert = scores["chexbert"]["protocol"]
    assert chexbert["uncertain"] == "positive"
    assert chexbert["observations_5"] == ["Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion"]
    assert len(chexbert["observations_14"]) == 14
    assert chexbert["weights"]["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert chexbert["weights"]["text_model"]["revision"] == COMMIT
    assert chexbert["packages"]["f1chexbert"] == importlib.metadata.version("f1chexbert")
    assert chexbert["text_normalisation"].startswith("f1chexbert:")
    bertscore = scores["bertscore"]["protocol"]
    assert bertscore["model_type"] == "roberta-large" and bertscore["num_layers"] == 17
    assert bertscore["weights"]["model"]["revision"] == COMMIT
    assert bertscore["packages"]["bert-score"] == importlib.metadata.version("bert-score")
    assert bertscore["text_normalisation"].startswith("bert-score:")
    radgraph = scores["radgraph"]["protocol"]
    assert radgraph["model_type"] == "radgraph-xl"
    assert list(radgraph["reward_levels"]) == ["simple", "partial", "complete"]
    assert radgraph["packages"]["radgraph"] == importlib.metadata.version("radgraph")
    model = radgraph["weights"]["model"]
    assert model["revision"] == COMMIT and model["archive"] == "radgraph-xl.tar.gz"
    assert model["files"]["weights.th"] == hashlib.sha256((radgraph_dir / "weights.th").read_bytes()).hexdigest()
    assert [text_model["repository"] for text_model in radgraph["weights"]["text_models"]] == [RADGRAPH_BACKBONE]
    assert radgraph["text_normalisation"].startswith("radgraph:")


def test_missing_weights_are_named_with_the_fetch_command_and_other_metrics_still_computed(tmp_path):
    write_roberta_large(tmp_path / "hub")  # BERTScore's weights only

    wrapped = score_offline(tmp_path, GENERATED, REFERENCES)["wrapped"]

    assert set(wrapped["scores"]) == {"bertscore"}
    assert set(wrapped["unavailable"]) == {"chexbert", "radgraph"}
    assert str(tmp_path / "cache" / "chexbert" / "chexbert.pth") in wrapped["unavailable"]["chexbert"]
    radgraph_dir = tmp_path / "cache" / "radgraph" / importlib.metadata.version("radgraph") / "radgraph-xl"
    assert f"{radgraph_dir} has no config.json, weights.th, vocabulary" in wrapped["unavailable"]["radgraph"]
    assert "radgraph-xl.tar.gz of StanfordAIMI/RRG_scorers" in wrapped["unavailable"]["radgraph"]
    for reason in wrapped["unavailable"].values():
        assert clinical_metrics.FETCH_WEIGHTS_COMMAND in reason


def test_missing_hub_files_are_named(tmp_path):
    write_chexbert(tmp_path / "hub", tmp_path / "cache")  # CheXbert's weights only, and
    write_radgraph(tmp_path / "elsewhere")  # radgraph's model without its backbone in this Hub cache
    shutil.move(tmp_path / "elsewhere" / "cache" / "radgraph", tmp_path / "cache" / "radgraph")

    wrapped = score_offline(tmp_path, GENERATED, REFERENCES)["wrapped"]

    assert set(wrapped["scores"]) == {"chexbert"}
    for name, repository in (("bertscore", "roberta-large"), ("radgraph", RADGRAPH_BACKBONE)):
        reason = wrapped["unavailable"][name]
        assert "config.json" in reason and repository in reason and clinical_metrics.FETCH_WEIGHTS_COMMAND in reason


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one reference each"):
        clinical_metrics.score_clinical_metrics(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown clinical metric 'rouge'"):
        clinical_metrics.score_clinical_metrics(["a"], ["a"], metrics=("rouge",))
    with pytest.raises(ValueError, match="generated must be a list of report strings"):
        clinical_metrics.score_clinical_metrics("a", ["a"])
    with pytest.raises(ValueError, match="unknown radgraph model_type 'echograph'"):
        clinical_metrics.radgraph_f1(["a"], ["a"], model_type="echograph")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        clinical_metrics.radgraph_scorer(device="tpu")


def write_pairs_jsonl(path):
    rows = [
        {"id": f"s{index}", "generated_report": generated, "reference_report": reference}
        for index, (generated, reference) in enumerate(zip(GENERATED, REFERENCES))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_evaluate_command_scores_offline_and_names_the_missing_weights(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from f1chexbert import f1chexbert
    from radgraph import radgraph

    from modeling_gaze2report import cli

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(f1chexbert, "CACHE_DIR", str(tmp_path / "empty-chexbert"))
    monkeypatch.setattr(radgraph, "CACHE_DIR", str(tmp_path / "empty-radgraph"))
    output = tmp_path / "metrics.json"

    cli.main(["evaluate", str(write_pairs_jsonl(tmp_path / "reports.jsonl")), "--output", str(output)])

    printed = capsys.readouterr().out
    header = printed.splitlines()[0]
    for column in ("BLEU-4", "ROUGE-L", "CIDEr", "Offline labeler micro-F1 (14)", "CheXbert micro-F1 (5)", "BERTScore"):
        assert column in header
    assert f"n/a chexbert: CheXbert's checkpoint {tmp_path / 'empty-chexbert' / 'chexbert.pth'}" in printed
    assert "n/a bertscore: the Hugging Face Hub cache has no config.json" in printed
    assert f"n/a radgraph: radgraph's radgraph-xl model {tmp_path / 'empty-radgraph' / 'radgraph-xl'}" in printed
    assert clinical_metrics.FETCH_WEIGHTS_COMMAND == "gaze2report evaluate --fetch-weights"
    results = json.loads(output.read_text())
    assert results["num_studies"] == 4
    columns = results["columns"]
    assert 0 <= columns["BLEU-4"]["value"] <= 1 and columns["CheXbert micro-F1 (14)"]["value"] is None
    assert set(results["clinical_metrics"]["unavailable"]) == {"chexbert", "bertscore", "radgraph"}


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"id": "a", "generated_report": "x"}\n', ".jsonl", "row 1 has no string reference_report"),
        ("id,generated_report\na,x\n", ".csv", "row 1 has no string reference_report"),
        ("", ".jsonl", "no rows"),
        ('{"id": "a"\n', ".jsonl", "line 1 is not JSON"),
        ("x", ".txt", "expected a .jsonl or .csv file"),
    ],
)
def test_evaluate_command_refuses_bad_files(tmp_path, capsys, content, suffix, message):
    from modeling_gaze2report import cli

    path = tmp_path / f"reports{suffix}"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", str(path), "--clinical-metrics", "none"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
