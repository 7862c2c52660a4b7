"""examples/gaze_ablation.py: variants x seeds trained on the synthetic world, summarised as mean ± std."""

import json

import pytest

from .conftest import load_script


@pytest.fixture(scope="module")
def gaze_ablation():
    return load_script("examples/gaze_ablation.py")


def test_two_variants_one_seed_write_the_summary_and_per_run_records(gaze_ablation, tmp_path):
    gaze_ablation.main(
        [
            "--seeds",
            "3",
            "--variants",
            "no_gaze",
            "recorded_gaze",
            "--preset",
            "tiny",
            "--num_studies",
            "20",
            "--steps",
            "3",
            "--scanpath_steps",
            "2",
            "--max_new_tokens",
            "5",
            "--output",
            str(tmp_path),
        ]
    )
    study = json.loads((tmp_path / "ablation.json").read_text())
    assert study["seeds"] == [3] and study["budget"]["report_steps"] == 3 and study["budget"]["preset"] == "tiny"
    assert study["variants"] == {
        "no_gaze": {"use_gaze": False, "gaze_source_in_training": None},
        "recorded_gaze": {"use_gaze": True, "gaze_source_in_training": "recorded"},
    }
    assert [(run["variant"], run["seed"]) for run in study["runs"]] == [("no_gaze", 3), ("recorded_gaze", 3)]
    for run in study["runs"]:
        records = [json.loads(line) for line in (tmp_path / run["records"]).read_text().splitlines()]
        assert len(records) == study["num_test_studies_per_seed"] == 2
        assert all(record["id"].startswith("synthetic-3-") for record in records)
        assert bool(records[0]["predicted_scanpath"]) == run["use_gaze"]
        assert run["training_losses"] and set(run["headline"]) >= set(gaze_ablation.REPORTED_METRICS)
    assert list(study["summary"]) == ["no_gaze", "recorded_gaze"]
    for variant, metrics in study["summary"].items():
        assert list(metrics) == list(gaze_ablation.REPORTED_METRICS)
        [run] = [run for run in study["runs"] if run["variant"] == variant]
        micro = metrics["chexpert_micro_f1"]
        expected = {"mean": run["headline"]["chexpert_micro_f1"], "std": None, "num_runs": 1, "num_undefined": 0}
        assert micro == expected
    table = (tmp_path / "ablation.md").read_text()
    assert "| no_gaze |" in table and "| recorded_gaze | 3 |" in table


def test_summary_is_mean_and_sample_std_over_seeds_and_counts_undefined_values(gaze_ablation):
    def run(seed, micro, laterality):
        headline = dict.fromkeys(gaze_ablation.REPORTED_METRICS, 0.5)
        headline.update(chexpert_micro_f1=micro, laterality_accuracy=laterality)
        return {"variant": "predicted_gaze", "seed": seed, "headline": headline}

    summary = gaze_ablation.summarize([run(0, 0.2, None), run(1, 0.4, 1.0), run(2, 0.6, 0.5)], ["predicted_gaze"])
    micro = summary["predicted_gaze"]["chexpert_micro_f1"]
    assert micro["mean"] == pytest.approx(0.4) and micro["std"] == pytest.approx(0.2) and micro["num_runs"] == 3
    laterality = summary["predicted_gaze"]["laterality_accuracy"]
    assert laterality["mean"] == pytest.approx(0.75)
    assert laterality["num_runs"] == 2 and laterality["num_undefined"] == 1


def test_unknown_variant_is_rejected(gaze_ablation, tmp_path):
    with pytest.raises(SystemExit):
        gaze_ablation.main(["--variants", "gaze_everywhere", "--output", str(tmp_path)])
