"""examples/gaze_ablation.py, the demo setting: model variants x seeds of the demo, resumable, summarised as mean ± std
and compared study by study."""

import json

import pytest

from .conftest import load_script


@pytest.fixture(scope="module")
def gaze_ablation():
    return load_script("examples/gaze_ablation.py")


def smoke_arguments(tmp_path, *variants):
    return ["--preset", "tiny", "--num-studies", "20", "--steps", "2", "--seeds", "3", "--variants", *variants] + [
        "--output",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "ablation.json"),
    ]


def test_runs_the_variants_of_the_demo_and_resumes_where_it_stopped(gaze_ablation, tmp_path):
    gaze_ablation.main(smoke_arguments(tmp_path, "no_gaze", "gaze_aligned"))
    first = json.loads((tmp_path / "ablation.json").read_text())
    assert [(run["variant"], run["seed"]) for run in first["runs"]] == [("no_gaze", 3), ("gaze_aligned", 3)]
    assert first["setting"] == "demo" and first["preset"] == "tiny"
    assert first["variants"]["gaze_aligned"]["use_fixation_findings"]
    for run in first["runs"]:
        folder = tmp_path / "runs" / f"{run['variant']}-seed3-steps2"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["model_variant"] == gaze_ablation.VARIANTS[run["variant"]]
        assert metrics["budget"]["num_studies"] == 20 and metrics["budget"]["report_steps"] == 2, "the budget that ran"
        assert run["budget"] == metrics["budget"] and run["reports_seen"] == 2 * metrics["budget"]["batch_size"]
        assert metrics["headline"]["chexpert_micro_f1"] == run["headline"]["chexpert_micro_f1"]
        assert set(run["headline"]) >= set(gaze_ablation.REPORTED_METRICS)
        # the per-study file beside the results holds what the comparisons need, study by study
        records = [json.loads(line) for line in (folder / "reports.jsonl").read_text().splitlines()]
        rows = [json.loads(line) for line in (tmp_path / run["per_study"]).read_text().splitlines()]
        assert run["per_study"] == f"ablation/{run['variant']}-seed3-steps2.jsonl"
        assert [row["id"] for row in rows] == [record["id"] for record in records] and len(rows) == 2
        assert [row["generated_report"] for row in rows] == [record["generated_report"] for record in records]
        assert metrics["image_reliance"]["per_study"]["lm_loss_own_image"] == [row["lm_loss_own_image"] for row in rows]
    aligned = tmp_path / "runs" / "gaze_aligned-seed3-steps2"
    records = [json.loads(line) for line in (aligned / "reports.jsonl").read_text().splitlines()]
    assert all("grounding" in record for record in records), "the head's runs ground their sentences"
    saved = json.loads((aligned / "model" / "config.json").read_text())
    assert saved["use_fixation_findings"]
    no_gaze = tmp_path / "runs" / "no_gaze-seed3-steps2"
    assert not json.loads((no_gaze / "model" / "config.json").read_text())["use_gaze"]
    [comparison] = first["comparisons"]
    assert (comparison["variant"], comparison["baseline"], comparison["seeds"]) == ("gaze_aligned", "no_gaze", [3])
    assert comparison["num_studies"] == 2 and set(comparison["metrics"]) == set(gaze_ablation.COMPARED_METRICS)

    gaze_ablation.main(smoke_arguments(tmp_path, "no_gaze", "gaze_aligned", "gaze"))
    second = json.loads((tmp_path / "ablation.json").read_text())
    assert second["runs"][:2] == first["runs"], "runs already in the results file are kept, not run again"
    assert [run["variant"] for run in second["runs"]] == ["no_gaze", "gaze_aligned", "gaze"]
    assert list(second["summary"]) == ["2"] and list(second["summary"]["2"]) == ["no_gaze", "gaze", "gaze_aligned"]
    assert "| 2 | 16 | gaze_aligned | 1 |" in (tmp_path / "ablation.md").read_text()


def test_summary_is_mean_and_sample_std_over_seeds_and_counts_undefined_values(gaze_ablation):
    def run(seed, micro, laterality, steps=150):
        headline = dict.fromkeys(gaze_ablation.REPORTED_METRICS, 0.5)
        headline.update(chexpert_micro_f1=micro, laterality_accuracy=laterality)
        return {"variant": "gaze", "seed": seed, "headline": headline, "budget": {"report_steps": steps}}

    runs = [run(0, 0.2, None), run(1, 0.4, 1.0), run(2, 0.6, 0.5), run(0, 0.9, 0.5, steps=600)]
    summary = gaze_ablation.summarize(runs)
    assert list(summary) == ["600", "150"], "budgets apart, the largest first"
    micro = summary["150"]["gaze"]["chexpert_micro_f1"]
    assert micro["mean"] == pytest.approx(0.4) and micro["std"] == pytest.approx(0.2) and micro["num_runs"] == 3
    laterality = summary["150"]["gaze"]["laterality_accuracy"]
    assert laterality["mean"] == pytest.approx(0.75)
    assert laterality["num_runs"] == 2 and laterality["num_undefined"] == 1
    assert summary["600"]["gaze"]["chexpert_micro_f1"] == {"mean": 0.9, "std": None, "num_runs": 1, "num_undefined": 0}


def test_the_demo_preset_ships_the_aligned_variant(gaze_ablation):
    assert gaze_ablation.shipped_variant("demo-smollm2") == "gaze_aligned"
    assert gaze_ablation.shipped_variant("tiny") == "gaze"


def test_results_of_another_preset_are_refused(gaze_ablation, tmp_path):
    (tmp_path / "ablation.json").write_text(json.dumps({"setting": "demo", "preset": "demo-smollm2", "runs": []}))
    with pytest.raises(ValueError, match="holds runs of preset 'demo-smollm2', not 'tiny'"):
        gaze_ablation.main(smoke_arguments(tmp_path, "gaze"))


def test_unknown_variant_is_rejected(gaze_ablation, tmp_path):
    with pytest.raises(SystemExit):
        gaze_ablation.main(["--variants", "gaze_everywhere", "--results", str(tmp_path / "a.json")])
