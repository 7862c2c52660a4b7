"""`gaze2report evaluate` on small files: the literature's table with intervals, references joined from a file, an
R2Gen annotation.json or a saved dataset, the paired comparison of two models, and the refusals."""

import json

import datasets
import pytest

from modeling_gaze2report import cli

REFERENCES = {
    "s1": "Small left pleural effusion.",
    "s2": "Mild cardiomegaly. No pneumothorax.",
    "s3": "Right lower lobe consolidation. Heart size is normal.",
    "s4": "There is a 2.2 cm mass in the right lower lobe.",
}
MODEL_A = {
    "s1": "Small left pleural effusion. No pneumothorax.",
    "s2": "Mild cardiomegaly.",
    "s3": "Right lower lobe consolidation.",
    "s4": "There is a 2.2 cm mass in the right lower lobe.",
}
ROW = {"id": "s1", "generated_report": "x", "reference_report": "y"}
MODEL_B = {study: "The lungs are clear. No acute cardiopulmonary process." for study in REFERENCES}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def reports_file(path, reports, with_references=False):
    rows = [
        {"id": study, "generated_report": report} | ({"reference_report": REFERENCES[study]} if with_references else {})
        for study, report in reports.items()
    ]
    return write_jsonl(path, rows)


def evaluate(*arguments):
    cli.main(["evaluate", *arguments, "--clinical-metrics", "none", "--num-resamples", "200"])


def test_the_table_has_the_literatures_columns_each_with_its_interval(tmp_path, capsys):
    output = tmp_path / "results.json"
    evaluate(reports_file(tmp_path / "a.jsonl", MODEL_A, with_references=True), "--output", str(output))
    printed = capsys.readouterr().out
    header, _, values, intervals = printed.splitlines()[:4]
    for column in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "Offline labeler micro-F1 (14)"):
        assert column in header
    assert values.startswith("| value |") and intervals.startswith("| 95% interval |")
    assert "4 studies" in printed and "offline labeler" in printed
    results = json.loads(output.read_text())
    assert results["num_studies"] == 4 and results["interval"]["num_resamples"] == 200
    for column, cell in results["columns"].items():
        if cell["value"] is not None:
            assert cell["low"] <= cell["value"] <= cell["high"], column
    assert results["columns"]["BLEU-4"]["value"] == results["report_nlg"]["bleu_4"]
    assert results["columns"]["Offline labeler micro-F1 (14)"]["value"] == results["offline_labeler"]["micro_f1"]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "annotation", "dataset", "dataset_dict"])
def test_references_are_joined_by_id_from_a_file_or_a_dataset(tmp_path, capsys, kind):
    extra = {"s5": "No acute cardiopulmonary process."}  # a reference without a report: counted, not scored
    references = REFERENCES | extra
    if kind == "jsonl":
        path = write_jsonl(tmp_path / "refs.jsonl", [{"id": k, "reference_report": v} for k, v in references.items()])
    elif kind == "csv":
        path = tmp_path / "refs.csv"
        path.write_text("id,reference_report\n" + "".join(f'{k},"{v}"\n' for k, v in references.items()))
    elif kind == "annotation":
        path = tmp_path / "annotation.json"
        entries = [{"id": k, "report": v, "image_path": [f"{k}.jpg"], "split": "test"} for k, v in references.items()]
        path.write_text(json.dumps({"train": [{"id": "t", "report": "x"}], "val": [], "test": entries}))
    else:
        dataset = datasets.Dataset.from_dict({"id": list(references), "report": list(references.values())})
        if kind == "dataset_dict":
            dataset = datasets.DatasetDict({"test": dataset})
        path = tmp_path / "saved"
        dataset.save_to_disk(str(path))
    joined = tmp_path / "joined.json"
    evaluate(reports_file(tmp_path / "a.jsonl", MODEL_A), "--references", str(path), "--output", str(joined))
    inline = tmp_path / "inline.json"
    evaluate(reports_file(tmp_path / "b.jsonl", MODEL_A, with_references=True), "--output", str(inline))
    assert "1 references of" in capsys.readouterr().out
    assert json.loads(joined.read_text())["columns"] == json.loads(inline.read_text())["columns"]
    assert json.loads(joined.read_text())["references_without_report"] == 1


def test_compare_gives_paired_differences_with_intervals_and_p_values(tmp_path, capsys):
    output = tmp_path / "comparison.json"
    a = reports_file(tmp_path / "model_a.jsonl", MODEL_A, with_references=True)
    b = reports_file(tmp_path / "model_b.jsonl", dict(reversed(MODEL_B.items())), with_references=True)  # other order
    evaluate("--compare", a, b, "--output", str(output))
    printed = capsys.readouterr().out
    assert printed.startswith("| column | model_a | model_b | difference | 95% interval | p (permutation) |")
    results = json.loads(output.read_text())
    micro = results["columns"]["Offline labeler micro-F1 (14)"]
    assert micro["difference"] == pytest.approx(micro["a"] - micro["b"]) and micro["difference"] > 0
    assert micro["low"] <= micro["difference"] <= micro["high"]
    assert 0 < micro["p_value"] <= 1
    assert results["num_studies"] == 4 and results["files"] == {"a": a, "b": b}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda tmp: [reports_file(tmp / "a.jsonl", MODEL_A)], "has no string reference_report"),
        (
            lambda tmp: [
                reports_file(tmp / "a.jsonl", MODEL_A | {"s9": "x"}),
                "--references",
                write_jsonl(tmp / "r.jsonl", [{"id": k, "reference_report": v} for k, v in REFERENCES.items()]),
            ],
            "1 report ids have no reference",
        ),
        (
            lambda tmp: [write_jsonl(tmp / "a.jsonl", [ROW, ROW])],
            "repeats id 's1'",
        ),
        (
            lambda tmp: [
                "--compare",
                reports_file(tmp / "a.jsonl", MODEL_A, with_references=True),
                reports_file(tmp / "b.jsonl", {"s1": "x"}, with_references=True),
            ],
            "needs the same studies in both files",
        ),
        (lambda tmp: [], "give one reports file, or --compare A B"),
        (
            lambda tmp: [
                reports_file(tmp / "a.jsonl", MODEL_A),
                "--references",
                str(_annotation(tmp)),
                "--split",
                "validation",
            ],
            "no list of entries under split 'validation'",
        ),
    ],
)
def test_bad_files_are_refused_with_a_clear_error(tmp_path, capsys, setup, message):
    with pytest.raises(SystemExit) as exit_info:
        evaluate(*setup(tmp_path))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # argparse's own errors print the usage first
    assert error.startswith("gaze2report: error: ") and message in error


def _annotation(tmp_path):
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps({"test": [{"id": k, "report": v} for k, v in REFERENCES.items()]}))
    return path
