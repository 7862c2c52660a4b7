"""examples/gaze_ablation.py, the research setting: budgets x variants x seeds on 200 held-out studies per seed, the
paired comparisons computed from the committed per-study files, worker processes merged into one results file; and
what it relies on in the demo (test studies beyond the demo's, image reliance per study)."""

import dataclasses
import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from modeling_gaze2report.data.collator import Gaze2ReportCollator
from modeling_gaze2report.demo import image_reliance
from modeling_gaze2report.demo import run as demo_run
from modeling_gaze2report.reporting import write_jsonl

from .conftest import REPOSITORY_ROOT, load_script

REPORTS = (
    "Small left pleural effusion. No pneumothorax.",
    "Mild cardiomegaly. There is no pleural effusion.",
    "Large right pneumothorax is present. No cardiomegaly.",
    "No acute cardiopulmonary process.",
)


@pytest.fixture(scope="module")
def gaze_ablation():
    return load_script("examples/gaze_ablation.py")


@pytest.fixture
def without_java(monkeypatch):
    """A PATH without `java`, here and in the worker processes: no METEOR jar starts (its start takes seconds), METEOR
    is None in the runs' metrics, and no comparison reads it."""
    folders = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv("PATH", os.pathsep.join(folder for folder in folders if not (Path(folder) / "java").exists()))


def research_arguments(tmp_path, *extra):
    return ["--setting", "research", "--preset", "tiny", "--output", str(tmp_path / "runs")] + [
        "--results",
        str(tmp_path / "ablation_research.json"),
        *extra,
    ]


def stored_run(gaze_ablation, tmp_path, variant, seed, steps, generated, reliance=0.1):
    """A finished run of the tiny research setting as the results file records it, with its per-study file."""
    arguments = gaze_ablation.parse_arguments(research_arguments(tmp_path))
    budget = demo_run.demo_budget("tiny", arguments.num_studies, steps, arguments.test_studies)
    name = gaze_ablation.run_name((variant, seed, steps))
    rows = [
        {
            "id": f"synthetic-{seed}-{index:05d}",
            "reference_report": REPORTS[index % len(REPORTS)],
            "generated_report": text,
            "lm_loss_own_image": 1.0,
            "lm_loss_swapped_image": 1.0 + reliance * (index % 2),
        }
        for index, text in enumerate(generated)
    ]
    write_jsonl(tmp_path / "ablation_research" / f"{name}.jsonl", rows)
    return {
        "variant": variant,
        "seed": seed,
        "headline": dict.fromkeys(gaze_ablation.REPORTED_METRICS, 0.5),
        "budget": dataclasses.asdict(budget),
        "num_test_studies": len(rows),
        "timings": {"total_s": 60.0},
        "per_study": f"ablation_research/{name}.jsonl",
    }


def test_the_research_setting_runs_the_largest_budget_first_on_200_test_studies_beside_the_demo_training_set(
    gaze_ablation,
):
    arguments = gaze_ablation.parse_arguments(["--setting", "research"])
    plan = gaze_ablation.planned_runs(arguments)
    variants = ("gaze_aligned", "no_gaze", "study_findings", "plain_tokens", "gaze")
    assert plan[:5] == [(variant, 0, 1200) for variant in variants]
    assert [key[1:] for key in plan[5:15:5]] == [(1, 1200), (2, 1200)], "then the other seeds at the largest budget"
    assert [steps for _, _, steps in plan[15::15]] == [600, 300, 150] and len(plan) == 5 * 3 * 4
    assert arguments.results == "benchmarks/results/ablation_research.json"
    budget = demo_run.demo_budget("demo-smollm2", arguments.num_studies, 1200, arguments.test_studies)
    demo = demo_run.demo_budget("demo-smollm2")
    assert demo_run.held_out_counts(budget) == (40, 200)
    assert budget.num_studies - 240 == demo.num_studies - 80, "the demo's training studies"
    demo_setting = gaze_ablation.parse_arguments([])
    assert demo_setting.variants == ["no_gaze", "gaze", "gaze_aligned"] and demo_setting.steps == [150]
    assert demo_setting.results == "benchmarks/results/ablation.json" and demo_setting.num_studies == 1000


def test_more_test_studies_keep_the_demo_training_studies(tmp_path):
    budget = demo_run.demo_budget("tiny")
    wider = demo_run.demo_budget("tiny", num_studies=42, test_studies=6)
    demo, research = (demo_run.demo_dataset(b, 5, b.num_studies) for b in (budget, wider))
    assert research["train"]["id"] == demo["train"]["id"] and len(research["test"]) == 6
    assert research["validation"]["id"] == demo["validation"]["id"]
    assert research["test"]["id"][:4] == demo["test"]["id"]
    with pytest.raises(ValueError, match="36 test and 4 validation studies leave no training study of 40"):
        demo_run.demo_budget("tiny", num_studies=40, test_studies=36)
    with pytest.raises(ValueError, match="test studies must be an integer >= 2"):
        demo_run.demo_budget("tiny", test_studies=1)
    with pytest.raises(ValueError, match=r"sets visual_tokens, which it cannot: it sets .*visual_tokens \(str\) alone"):
        demo_run.run_demo(tmp_path / "out", preset="tiny", model_variant={"visual_tokens": 1})
    assert not (tmp_path / "out").exists()


def test_image_reliance_gives_each_study_its_losses_and_they_pool_to_the_model_loss(tiny_model, tiny_processor, xray):
    studies = [
        {"image": np.roll(xray, 11 * index, axis=0), "report": "No pleural effusion.", "fixations": []}
        for index in range(5)
    ]
    reliance = image_reliance(tiny_model, tiny_processor, studies, num_studies=5, batch_size=4)
    own, swapped = reliance["per_study"]["lm_loss_own_image"], reliance["per_study"]["lm_loss_swapped_image"]
    assert len(own) == len(swapped) == 5
    assert reliance["lm_loss_own_image"] == pytest.approx(np.mean(own))
    assert reliance["image_reliance"] == pytest.approx(np.mean(swapped) - np.mean(own))
    # reports of one length: the model's loss over the batch is the mean of the studies' losses
    batch = Gaze2ReportCollator(tiny_processor, gaze_source="predicted")(studies)
    assert float(tiny_model(**batch).lm_loss) == pytest.approx(np.mean(own), rel=1e-5)


def test_comparisons_pair_the_same_studies_over_the_seeds_and_read_only_committed_files(
    gaze_ablation, tmp_path, without_java
):
    perfect = [REPORTS[index % len(REPORTS)] for index in range(12)]
    template = [REPORTS[3]] * 12
    runs = [
        stored_run(gaze_ablation, tmp_path, variant, seed, 2, generated, reliance)
        for seed in (0, 1)
        for variant, generated, reliance in (("gaze_aligned", perfect, 0.3), ("no_gaze", template, 0.0))
    ]
    runs.append(stored_run(gaze_ablation, tmp_path, "plain_tokens", 1, 2, template))
    runs.append(stored_run(gaze_ablation, tmp_path, "study_findings", 0, 2, perfect))
    runs.append(stored_run(gaze_ablation, tmp_path, "gaze", 1, 2, perfect))
    runs.append(stored_run(gaze_ablation, tmp_path, "gaze_aligned", 0, 1, template))  # no baseline at 1 step
    study = {"setting": "research", "preset": "tiny", "runs": runs}
    results = tmp_path / "ablation_research.json"
    gaze_ablation.write_study(results, study)
    written = json.loads(results.read_text())
    assert [(c["variant"], c["baseline"], c["seeds"]) for c in written["comparisons"]] == [
        ("gaze_aligned", "no_gaze", [0, 1]),
        ("gaze_aligned", "study_findings", [0]),
        ("gaze_aligned", "plain_tokens", [1]),
        ("gaze", "plain_tokens", [1]),
    ]
    pooled = written["comparisons"][0]
    assert pooled["num_studies"] == 24 and pooled["report_steps"] == 2
    exact = pooled["metrics"]["chexpert_exact_match"]
    # the template is right on every fourth study (the normal one) and the perfect reports on all
    assert (exact["variant"], exact["baseline"]) == (1.0, 0.25)
    assert exact["difference"] == pytest.approx(0.75) and 0 < exact["low"] <= 0.75 <= exact["high"]
    assert exact["p_value"] < 0.001
    reliance = pooled["metrics"]["image_reliance"]
    assert reliance["difference"] == pytest.approx(0.15) and reliance["baseline"] == 0.0
    assert pooled["metrics"]["distinct_report_fraction"]["variant"] == pytest.approx(4 / 24)
    assert [comparison["num_studies"] for comparison in written["comparisons"][1:]] == [12, 12, 12]
    same = written["comparisons"][1]["metrics"]["chexpert_exact_match"]
    assert same["difference"] == 0 and same["low"] == same["high"] == 0, "the same reports: no difference"
    table = (tmp_path / "ablation_research.md").read_text()
    assert "### `gaze_aligned` − `no_gaze`, 2 steps, 24 studies (seeds 0, 1)" in table
    assert "`chexpert_exact_match`: 1.000 against 0.250, difference +0.750" in table
    assert "the interval lies above 0: gaze_aligned is higher" in table
    assert "### `gaze` − `plain_tokens`, 2 steps, 12 studies (seeds 1)" in table
    assert "- `gaze_aligned` micro-F1 0.500 (1), 0.500 (2)" in table, "the learning curve over budgets"

    # the statistics come from the per-study files alone: the same numbers when recomputed from what was written
    assert gaze_ablation.compare_variants(written, results) == written["comparisons"]
    baseline_file = tmp_path / "ablation_research" / "no_gaze-seed1-steps2.jsonl"
    rows = [json.loads(line) for line in baseline_file.read_text().splitlines()]
    write_jsonl(baseline_file, rows[::-1])
    with pytest.raises(ValueError, match="not scored on the same held-out studies in the same order"):
        gaze_ablation.write_study(results, study)
    baseline_file.unlink()
    with pytest.raises(ValueError, match="no_gaze-seed1-steps2.jsonl, the per-study file of no_gaze-seed1-steps2"):
        gaze_ablation.write_study(results, study)


@pytest.mark.parametrize(
    "difference, low, high, says",
    [
        (0.2, 0.1, 0.3, "the interval lies above 0: gaze_aligned is higher"),
        (-0.2, -0.3, -0.1, "the interval lies below 0: gaze_aligned is lower"),
        (0.05, -0.02, 0.1, "the interval includes 0: these studies show no difference"),
        (-0.3, -0.15, -0.11, "the difference lies outside its bootstrap interval"),  # the distinct reports' resamples
        (None, None, None, "undefined on these studies"),
    ],
)
def test_what_a_comparison_shows_is_read_from_its_interval(gaze_ablation, difference, low, high, says):
    result = {"difference": difference, "low": low, "high": high}
    assert gaze_ablation.verdict(result, "gaze_aligned").startswith(says)


def test_a_stopped_parallel_study_is_merged_at_the_next_start_and_another_setting_is_refused(
    gaze_ablation, tmp_path, monkeypatch, without_java
):
    monkeypatch.setattr(gaze_ablation, "run_demo", lambda *a, **k: pytest.fail("a run started"))
    workers = tmp_path / "runs" / "workers"
    header = {"setting": "research", "preset": "tiny"}
    late = stored_run(gaze_ablation, tmp_path, "no_gaze", 0, 2, REPORTS)
    early = stored_run(gaze_ablation, tmp_path, "gaze_aligned", 0, 2, REPORTS)
    workers.mkdir(parents=True)
    (workers / "worker-0.json").write_text(json.dumps({**header, "runs": [late]}))
    (workers / "worker-1.json").write_text(json.dumps({**header, "runs": [early]}))
    arguments = research_arguments(tmp_path, "--seeds", "0", "--steps", "2", "--variants", "gaze_aligned", "no_gaze")
    study = gaze_ablation.main(arguments)
    assert [run["variant"] for run in study["runs"]] == ["gaze_aligned", "no_gaze"], "in plan order"
    assert not list(workers.glob("worker-*.json")), "merged, then removed"
    assert json.loads((tmp_path / "ablation_research.json").read_text())["runs"] == study["runs"]

    (workers / "worker-0.json").write_text(json.dumps({**header, "runs": [{**late, "budget": {}}]}))
    with pytest.raises(ValueError, match=r"worker-0.json holds runs with another budget \(num_studies None there"):
        gaze_ablation.main(arguments)
    with pytest.raises(ValueError, match="holds runs of the 'research' setting, not 'demo'"):
        gaze_ablation.main(arguments[2:])
    demo_results = tmp_path / "ablation.json"
    demo_results.write_text(json.dumps({"preset": "tiny", "runs": []}))  # a file without a setting: the demo's
    with pytest.raises(ValueError, match="holds runs of the 'demo' setting, not 'research'"):
        gaze_ablation.main(arguments + ["--results", str(demo_results)])


@pytest.mark.slow
def test_the_dry_run_shares_its_runs_among_worker_processes_and_merges_them_into_one_results_file(
    gaze_ablation, tmp_path, monkeypatch, without_java
):
    """The GPU command's path at tiny shapes on the CPU: two worker processes, one results file; gaze_aligned and its
    control without gaze (study_findings) run to the end."""
    variants = ["--variants", "gaze_aligned", "study_findings"]
    arguments = research_arguments(tmp_path, "--seeds", "0", "--steps", "1", *variants)
    study = gaze_ablation.main(arguments + ["--workers", "2"])
    assert [gaze_ablation.run_key(run) for run in study["runs"]] == [("gaze_aligned", 0, 1), ("study_findings", 0, 1)]
    workers = tmp_path / "runs" / "workers"
    assert sorted(path.name for path in workers.glob("worker-*")) == ["worker-0.log", "worker-1.log"]
    logs = "".join(path.read_text() for path in workers.glob("worker-*.log"))
    assert logs.count(": running") == 2, "each run ran once"
    written = json.loads((tmp_path / "ablation_research.json").read_text())
    assert written["runs"] == study["runs"] and written["summary"]["1"].keys() == {"study_findings", "gaze_aligned"}
    [comparison] = written["comparisons"]
    assert comparison["num_studies"] == 6, "the tiny research setting's test studies"
    assert all(result["p_value"] is None or 0 < result["p_value"] <= 1 for result in comparison["metrics"].values())
    for run in study["runs"]:
        assert run["num_test_studies"] == 6 and (tmp_path / run["per_study"]).is_file()
    # resumed one process at a time: nothing left to run
    monkeypatch.setattr(gaze_ablation, "run_demo", lambda *a, **k: pytest.fail("a run started"))
    assert gaze_ablation.main(arguments)["runs"] == study["runs"]


STAND_IN_PYTHON = """#!/bin/bash
[ "$1" = -c ] && exit 0  # the script's check that torch sees a GPU
printf '%s\\n' "$@" > "$ARGUMENTS_FILE"
while [ $# -gt 0 ]; do case $1 in --results) results=$2;; --output) output=$2;; esac; shift; done
mkdir -p "${results%.json}" "$output/workers"
echo '{"runs": []}' > "$results" && echo table > "${results%.json}.md"
echo row > "${results%.json}/gaze_aligned-seed0-steps1200.jsonl" && echo log > "$output/workers/worker-0.log"
sleep "$SLEEP_S"
"""


@pytest.mark.parametrize("time_limit, exit_code", [("", 0), ("1", 124)])
def test_the_gpu_command_runs_the_research_setting_in_workers_and_collects_its_files(tmp_path, time_limit, exit_code):
    python = tmp_path / "python"
    python.write_text(STAND_IN_PYTHON)
    python.chmod(0o755)
    study, output = tmp_path / "study", tmp_path / "out"
    environment = {"PYTHON": str(python), "WORKERS": "3", "STUDY_FOLDER": str(study), "TIME_LIMIT_S": time_limit}
    environment |= {"ARGUMENTS_FILE": str(tmp_path / "arguments"), "SLEEP_S": "60" if time_limit else "0"}
    completed = subprocess.run(
        ["bash", "examples/gaze_ablation_gpu.sh", str(output), "--seeds", "0"],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == exit_code, completed.stderr
    assert (tmp_path / "arguments").read_text().split() == [
        "examples/gaze_ablation.py",
        "--setting",
        "research",
        "--workers",
        "3",
        "--output",
        f"{study}/runs",
        "--results",
        f"{study}/ablation_research.json",
        "--seeds",
        "0",
    ]
    # stopped at its time limit or not, what the study wrote comes back
    assert sorted(path.name for path in output.iterdir()) == [
        "ablation_research.json",
        "ablation_research.md",
        "ablation_research.tar.gz",
        "workers.tar.gz",
    ]
    with tarfile.open(output / "ablation_research.tar.gz") as archive:
        assert archive.getnames() == ["ablation_research", "ablation_research/gaze_aligned-seed0-steps1200.jsonl"]
    with tarfile.open(output / "workers.tar.gz") as archive:
        assert "workers/worker-0.log" in archive.getnames()
