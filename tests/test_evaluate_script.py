"""examples/evaluate_models.py: several trained models on one split -> results.json, results.md, per-study records."""

import json
import shutil

import pytest
from transformers import TrainingArguments

from modeling_gaze2report.data import make_synthetic_dataset
from modeling_gaze2report.reporting import score_records
from modeling_gaze2report.training import DataArguments, ModelArguments, RecipeArguments, run_training

from .conftest import load_script

DATA_OPTIONS = [
    "--data_source",
    "synthetic",
    "--num_synthetic_studies",
    "20",
    "--synthetic_image_size",
    "64",
    "--synthetic_seed",
    "0",
]


@pytest.fixture(scope="module")
def evaluate():
    return load_script("examples/evaluate_models.py")


@pytest.fixture(scope="module")
def two_model_dirs(tmp_path_factory):
    """A tiny model trained for a few steps, saved twice under different run names."""
    root = tmp_path_factory.mktemp("runs")
    dataset = make_synthetic_dataset(num_studies=20, seed=0, image_size=64)
    run_training(
        "tiny",
        ModelArguments(lora_r=4, lora_alpha=8),
        DataArguments(num_synthetic_studies=20, synthetic_image_size=64, max_report_tokens=48),
        RecipeArguments(scanpath_max_steps=2),
        TrainingArguments(
            output_dir=str(root / "gaze"),
            max_steps=3,
            per_device_train_batch_size=4,
            learning_rate=1e-3,
            save_strategy="no",
            report_to=[],
            seed=0,
            use_cpu=True,
        ),
        dataset=dataset,
    )
    shutil.copytree(root / "gaze" / "model", root / "gaze_copy" / "model")
    return [root / "gaze" / "model", root / "gaze_copy" / "model"]


@pytest.fixture(scope="module")
def evaluation(evaluate, two_model_dirs, tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluation")
    argv = [
        "--model",
        *map(str, two_model_dirs),
        *DATA_OPTIONS,
        "--split",
        "test",
        "--max_new_tokens",
        "6",
        "--batch_size",
        "2",
        "--output",
        str(output),
    ]
    return evaluate.main(argv), output


def test_writes_one_table_row_per_model_and_per_study_records(evaluation):
    returned, output = evaluation
    results = json.loads((output / "results.json").read_text())
    assert list(results) == ["gaze", "gaze_copy"] and list(returned) == list(results)
    for name, entry in results.items():
        assert entry["dataset"]["data_source"] == "synthetic" and entry["dataset"]["split"] == "test"
        assert entry["dataset"]["num_studies_evaluated"] == 2
        assert entry["decoding"] == {"max_new_tokens": 6, "num_beams": 1, "batch_size": 2, "do_sample": False}
        assert entry["protocol"]["report_nlg"]["normalization"] == "r2gen"
        assert entry["protocol"]["clinical_efficacy"]["uncertain_as"] == 0
        records = [json.loads(line) for line in (output / entry["per_study"]).read_text().splitlines()]
        assert [record["id"] for record in records] == ["synthetic-0-00018", "synthetic-0-00019"]
        assert all(record["predicted_scanpath"] for record in records)
    table = (output / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| gaze")]
    assert len(rows) == 2 and "chexpert_micro_f1" in table and "laterality_accuracy" in table
    assert "Clinical efficacy: labeler" in table
    # the literature's table of `gaze2report evaluate`, with intervals, per model; the copy compared with the first
    interval_rows = [line for line in table.splitlines() if line.startswith("| 95% interval |")]
    assert len(interval_rows) == 2 and "### gaze_copy against gaze" in table
    for entry in results.values():
        bleu = entry["table"]["columns"]["BLEU-4"]
        assert bleu["value"] == entry["metrics"]["report_nlg"]["bleu_4"]
        assert bleu["low"] <= bleu["value"] <= bleu["high"]
    same = results["gaze_copy"]["comparison_with_first"]["columns"]["Offline labeler micro-F1 (14)"]
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_metrics_equal_score_records_on_the_same_records(evaluation):
    _, output = evaluation
    results = json.loads((output / "results.json").read_text())
    entry = results["gaze"]
    records = [json.loads(line) for line in (output / entry["per_study"]).read_text().splitlines()]
    expected = json.loads(json.dumps(score_records(records), default=str))
    assert entry["metrics"] == expected
    # The copy is the same model: identical reports, identical numbers.
    assert results["gaze_copy"]["metrics"] == expected


def test_missing_model_dir_and_data_path_are_named(evaluate, two_model_dirs, tmp_path):
    missing = tmp_path / "no_such_run"
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        evaluate.main(["--model", str(two_model_dirs[0]), str(missing), *DATA_OPTIONS, "--output", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="not a saved model"):
        evaluate.main(["--model", str(tmp_path), *DATA_OPTIONS, "--output", str(tmp_path / "out")])
    with pytest.raises(FileNotFoundError, match="absent.json"):
        evaluate.main(
            [
                "--model",
                str(two_model_dirs[0]),
                "--data_source",
                "iu-xray",
                "--data_path",
                str(tmp_path / "absent.json"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
    with pytest.raises(ValueError, match="--split 'dev'"):
        evaluate.main(
            ["--model", str(two_model_dirs[0]), *DATA_OPTIONS, "--split", "dev", "--output", str(tmp_path / "out")]
        )
    assert not (tmp_path / "out").exists()
