"""benchmarks.scanpath_regions: how often predicted and recorded fixations fall in the labelled finding regions."""

import json

import pytest

from benchmarks import scanpath_regions
from modeling_gaze2report.demo import BUDGETS
from modeling_gaze2report.demo.run import demo_dataset

# one study's labelled regions on a 100 x 100 image, each 4% of it
REGIONS = [
    {"label": "Pleural Effusion", "x0": 0, "y0": 0, "x1": 20, "y1": 20, "certainty": 5},
    {"label": "Cardiomegaly", "x0": 40, "y0": 40, "x1": 60, "y1": 60, "certainty": 5},
]


def test_region_hits_count_fixations_inside_each_region_against_its_area():
    record = {
        "id": "s1",
        "image_size": [100, 100],
        "predicted_scanpath": [{"x": 10, "y": 10, "duration": 0.3}, {"x": 50, "y": 50, "duration": 0.3}],
        "recorded_fixations": [{"x": 5, "y": 5, "duration": 0.2}, {"x": 20, "y": 20, "duration": 0.2},
                               {"x": 90, "y": 90, "duration": 0.2}],
    }  # fmt: skip
    hits = scanpath_regions.region_hits([record], [{"id": "s1", "regions": REGIONS}])
    assert hits["Pleural Effusion"]["predicted_inside_rate"] == 0.5
    assert hits["Pleural Effusion"]["recorded_inside_rate"] == pytest.approx(2 / 3)  # an edge counts as inside
    assert hits["Cardiomegaly"]["recorded_inside_rate"] == 0.0
    assert hits["all"]["regions"] == 2 and hits["all"]["predicted_fixations"] == 4
    assert hits["all"]["predicted_inside_rate"] == 0.5 and hits["all"]["recorded_inside_rate"] == pytest.approx(1 / 3)
    assert hits["all"]["chance"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="study 'elsewhere' is not among the demo's held-out studies"):
        scanpath_regions.region_hits([dict(record, id="elsewhere")], [{"id": "s1", "regions": REGIONS}])


def test_the_script_reads_a_demo_folder_and_writes_its_figures(tmp_path):
    budget = BUDGETS["tiny"]
    held_out = demo_dataset(budget, 0, budget.num_studies)["test"]
    with_regions = [example for example in held_out if example["regions"]]
    assert with_regions, "the tiny demo's held-out studies hold labelled regions"
    records = [
        {"id": example["id"], "image_size": [budget.image_size] * 2, "recorded_fixations": example["fixations"],
         "predicted_scanpath": [{"x": 1.0, "y": 1.0, "duration": 0.2}]}
        for example in held_out
    ]  # fmt: skip
    demo_output = tmp_path / "demo"
    demo_output.mkdir()
    (demo_output / "metrics.json").write_text(json.dumps({"preset": "tiny", "seed": 0, "budget": budget.__dict__}))
    (demo_output / "reports.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    result = scanpath_regions.main(["--demo-output", str(demo_output), "--output", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text()) == result
    assert result["studies"] == len(held_out)
    assert {region["label"] for example in with_regions for region in example["regions"]} | {"all"} == set(
        result["by_label"]
    )
    assert result["by_label"]["all"]["recorded_inside_rate"] > 0  # the simulated reader looks at what it reports
    with pytest.raises(SystemExit):
        scanpath_regions.main(["--demo-output", str(tmp_path / "missing"), "--output", str(tmp_path / "x.json")])


def test_grounding_hits_score_the_fixations_of_sentences_that_name_a_present_finding():
    record = {
        "id": "s1",
        "image_size": [100, 100],
        "predicted_scanpath": [{"x": 10, "y": 10, "duration": 0.3}, {"x": 50, "y": 50, "duration": 0.3},
                               {"x": 90, "y": 90, "duration": 0.3}],
        "grounding": [
            {"sentence": "Small pleural effusion.", "fixations": [0, 2]},  # 1 of 2 inside the effusion's region
            {"sentence": "No pneumothorax.", "fixations": []},  # names nothing present: not scored
            {"sentence": "Lung nodule.", "fixations": [1]},  # a finding the study has no region of: not scored
            {"sentence": "The heart is enlarged.", "fixations": [1]},  # inside the cardiomegaly region
        ],
    }  # fmt: skip
    hits = scanpath_regions.grounding_hits([record], [{"id": "s1", "regions": REGIONS}])
    assert hits["Pleural Effusion"] == {"sentences": 1, "fixations": 2, "inside_rate": 0.5, "chance": 0.04}
    assert hits["Cardiomegaly"]["inside_rate"] == 1.0
    assert hits["all"]["sentences"] == 2 and hits["all"]["inside_rate"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="study 's1' has no grounding"):
        scanpath_regions.grounding_hits(
            [{k: v for k, v in record.items() if k != "grounding"}], [{"id": "s1", "regions": REGIONS}]
        )
