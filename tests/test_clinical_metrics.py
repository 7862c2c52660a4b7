"""The clinical-metrics wrapper against the packages' own functions, offline: same-architecture checkpoints with random
weights (tiny sizes) are written into a temporary Hugging Face Hub cache and the packages' cache folders, in the layout
the packages look them up in, and a fresh interpreter (the packages read their cache folders at import) scores the same
reports through the wrapper and through each package."""

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("f1chexbert")
pytest.importorskip("bert_score")

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
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_snapshot(hub, repo_id):
    """The snapshot folder of `repo_id` at COMMIT, with refs/main pointing at it (the Hub cache's layout)."""
    repository = hub / f"models--{repo_id.replace('/', '--')}"
    (repository / "refs").mkdir(parents=True)
    (repository / "refs" / "main").write_text(COMMIT)
    snapshot = repository / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def write_chexbert(hub, cache):
    """bert-base-uncased's tokenizer and (tiny) configuration in the Hub cache, and f1chexbert's chexbert.pth (a
    DataParallel state dict of its bert_labeler, random weights) in its cache folder; returns the checkpoint's path."""
    from transformers import BertConfig, BertModel, BertTokenizer

    snapshot = hub_snapshot(hub, "bert-base-uncased")
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


SCORE_BOTH_WAYS = """
import json, sys
import bert_score
from f1chexbert import F1CheXbert
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
if "bertscore" in wrapped["scores"]:
    precision, recall, f1 = bert_score.score(generated, references, model_type="roberta-large")
    package["bertscore"] = {
        "bertscore_precision": precision.mean().item(),
        "bertscore_recall": recall.mean().item(),
        "bertscore_f1": f1.mean().item(),
    }
print(json.dumps({"wrapped": wrapped, "package": package}))
"""


def score_offline(tmp_path, generated, references):
    """The wrapper's and the packages' results in a fresh interpreter reading only the temporary caches, offline."""
    environment = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(tmp_path / "hub"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    completed = subprocess.run(
        [sys.executable, "-c", SCORE_BOTH_WAYS, json.dumps([generated, references])],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def offline_scores(tmp_path_factory):
    """(the wrapper's and the packages' results on GENERATED / REFERENCES with every weight in the temporary caches,
    the CheXbert checkpoint's path)."""
    cache_root = tmp_path_factory.mktemp("caches")
    checkpoint = write_chexbert(cache_root / "hub", cache_root / "cache")
    write_roberta_large(cache_root / "hub")
    return score_offline(cache_root, GENERATED, REFERENCES), checkpoint


def test_wrapper_equals_the_packages_own_functions_offline(offline_scores):
    result, _ = offline_scores
    scores = result["wrapped"]["scores"]

    for name in ("chexbert", "bertscore"):
        assert {key: value for key, value in scores[name].items() if key != "protocol"} == result["package"][name]
    assert len(scores["chexbert"]) == 6  # 5 scores and the protocol
    assert scores["chexbert"]["chexbert_14_micro_f1"] < 1  # the random labels disagree somewhere: not a vacuous match


def test_protocol_names_the_weights_loaded(offline_scores):
    result, checkpoint = offline_scores
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


def test_missing_weights_are_named_with_the_fetch_command_and_other_metrics_still_computed(tmp_path):
    write_roberta_large(tmp_path / "hub")  # BERTScore's weights only

    wrapped = score_offline(tmp_path, GENERATED, REFERENCES)["wrapped"]

    assert set(wrapped["scores"]) == {"bertscore"}
    assert set(wrapped["unavailable"]) == {"chexbert"}
    assert str(tmp_path / "cache" / "chexbert" / "chexbert.pth") in wrapped["unavailable"]["chexbert"]
    assert clinical_metrics.FETCH_WEIGHTS_COMMAND in wrapped["unavailable"]["chexbert"]


def test_missing_hub_files_are_named(tmp_path):
    write_chexbert(tmp_path / "hub", tmp_path / "cache")  # CheXbert's weights only

    wrapped = score_offline(tmp_path, GENERATED, REFERENCES)["wrapped"]

    assert set(wrapped["scores"]) == {"chexbert"}
    reason = wrapped["unavailable"]["bertscore"]
    assert "config.json" in reason and "roberta-large" in reason and clinical_metrics.FETCH_WEIGHTS_COMMAND in reason


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one reference each"):
        clinical_metrics.score_clinical_metrics(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown clinical metric 'rouge'"):
        clinical_metrics.score_clinical_metrics(["a"], ["a"], metrics=("rouge",))
    with pytest.raises(ValueError, match="generated must be a list of report strings"):
        clinical_metrics.score_clinical_metrics("a", ["a"])


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

    from modeling_gaze2report import cli

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(f1chexbert, "CACHE_DIR", str(tmp_path / "empty-chexbert"))
    output = tmp_path / "metrics.json"

    cli.main(["evaluate", str(write_pairs_jsonl(tmp_path / "reports.jsonl")), "--output", str(output)])

    printed = capsys.readouterr().out
    header = printed.splitlines()[0]
    for column in ("BLEU-4", "ROUGE-L", "CIDEr", "Offline labeler micro-F1 (14)", "CheXbert micro-F1 (5)", "BERTScore"):
        assert column in header
    assert f"n/a chexbert: CheXbert's checkpoint {tmp_path / 'empty-chexbert' / 'chexbert.pth'}" in printed
    assert "n/a bertscore: the Hugging Face Hub cache has no config.json" in printed
    assert clinical_metrics.FETCH_WEIGHTS_COMMAND == "gaze2report evaluate --fetch-weights"
    results = json.loads(output.read_text())
    assert results["num_studies"] == 4
    assert 0 <= results["table"]["BLEU-4"] <= 1 and results["table"]["CheXbert micro-F1 (14)"] is None
    assert set(results["clinical_metrics"]["unavailable"]) == {"chexbert", "bertscore"}


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"id": "a", "generated_report": "x"}\n', ".jsonl", "row 1 has no string reference_report"),
        ("id,generated_report\na,x\n", ".csv", "row 1 has no string reference_report"),
        ("", ".jsonl", "no report pairs"),
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
