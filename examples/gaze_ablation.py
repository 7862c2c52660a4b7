"""Does gaze help? Trains the demo (`gaze2report demo`: its backbones, data and recipe) in model variants that differ
only in what reaches the language model, with the same seeds, and compares the reports they write for the held-out
studies:

    no_gaze           use_gaze=False: the same number of visual tokens, from patch features and fixed grid nodes
    study_findings    no_gaze, plus the fixation-node head on its gaze-free nodes, each learning the study's findings
                      (its report's labels): gaze_aligned's supervision of what is seen, without where or when
    plain_tokens      no graph network: the patch features pooled to the same token count, then the projector (the
                      LLaVA recipe)
    gaze              the paper's path: the graph is built on the scanpath (recorded in training, predicted at
                      inference) and its tokens are all the language model gets from the image
    gaze_aligned      gaze, plus the fixation-node head: each fixation node learns the findings dictated while the
                      radiologist looked there (use_fixation_findings); the demo preset as shipped

Two settings, each with its own results file (SETTINGS):

    demo              the demo's budget (its stage-2 steps and test studies); no_gaze, gaze, gaze_aligned
    research          stage-2 budgets of 1200, 600, 300 and 150 steps (a learning curve over reports seen) and 200
                      test studies per seed (after the demo's training and validation studies); all five variants

A run is a (variant, seed, stage-2 steps) triple. Each seed draws its own synthetic studies (the same for every
variant and budget of that seed) and seeds training. Runs go budget by budget (largest first), seed by seed, variant
by variant (in --variants' order), so a stopped study holds the most useful runs. The study resumes: a run already in
the results file is skipped, so it can span sessions; the results file is rewritten after every run. A results file
of another setting or preset, or whose runs ran with another budget than this command's (their stage-2 steps aside:
--num-studies, --test-studies), is refused: their numbers would not be comparable.

    nice -n 10 python examples/gaze_ablation.py                          # the demo setting: 3 variants x seeds 0 1 2
    nice -n 10 python examples/gaze_ablation.py --setting research       # the research setting, one run at a time
    python examples/gaze_ablation.py --setting research --workers 8      # 8 runs side by side (one GPU)
    python examples/gaze_ablation.py --preset tiny --num-studies 20 --steps 2 --seeds 0 --variants no_gaze gaze \\
        --output outputs/ablation-smoke --results outputs/ablation-smoke/ablation.json

With --workers N, N processes of this script (the same command line and --worker-index) share the runs not yet in
the results file, each taking the next run no other has taken, with its share of the CPUs. Each writes its finished
runs to its own file under --output/workers/ (its log beside it); they are merged into the results file when all
have ended, and at the next start when an invocation was stopped.

Writes --results (a .json file): per run the headline metrics, budget, timings, the run's folder and its per-study
file; per stage-2 budget, variant and metric the mean and sample standard deviation over seeds (`summary`); per
budget the paired comparisons of COMPARISONS over the same held-out studies, seeds pooled (`comparisons`: each
metric's difference, 95% bootstrap interval and paired permutation p-value). Beside it: the same as Markdown
(ablation.md for ablation.json) and a folder of the results file's name holding one JSONL file per run, a line per
held-out study (PER_STUDY_FIELDS), from which the comparisons are computed. Each run's demo folder (model/,
reports.jsonl, metrics.json, overlays/) lies under --output/<variant>-seed<seed>-steps<steps>/.
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from modeling_gaze2report import Gaze2ReportConfig
from modeling_gaze2report.cli import run_command
from modeling_gaze2report.demo.run import BUDGETS, demo_budget, held_out_counts, run_demo
from modeling_gaze2report.evaluation.intervals import mean_statistics, paired_comparison
from modeling_gaze2report.evaluation.report_statistics import REPORT_METRICS, report_statistics
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.presets import load_preset, resolve_language_model
from modeling_gaze2report.reporting import write_jsonl

logger = logging.getLogger(__name__)

VARIANTS = {
    "no_gaze": {"use_gaze": False, "use_fixation_findings": False},
    "study_findings": {"use_gaze": False, "use_fixation_findings": True},
    "plain_tokens": {"visual_tokens": "pooled_patches", "use_gaze": False, "use_fixation_findings": False},
    "gaze": {"use_gaze": True, "use_fixation_findings": False},
    "gaze_aligned": {"use_gaze": True, "use_fixation_findings": True},
}
COMPARISONS = (  # (variant, baseline)
    ("gaze_aligned", "no_gaze"),
    ("gaze_aligned", "study_findings"),  # does gaze help beyond the findings its head learns?
    ("gaze_aligned", "plain_tokens"),
    ("gaze", "plain_tokens"),  # the paper's path without the head against LLaVA's pooled patches
)
REPORTED_METRICS = (
    "chexpert_micro_f1",
    "chexpert_macro_f1",
    "chexpert_exact_match",
    "laterality_accuracy",
    "bleu_4",
    "distinct_report_fraction",
    "image_reliance",
    "lm_loss_own_image",
    "visual_attention_share",
)
COMPARED_METRICS = REPORTED_METRICS[:7]
NUM_RESAMPLES = 10000  # bootstrap resamples and permutations of each paired comparison
PER_STUDY_FIELDS = ("id", "reference_report", "generated_report", "lm_loss_own_image", "lm_loss_swapped_image")
RUN_FIELDS = ("variant", "seed", "headline", "timings")  # what the summary and the tables read of a run


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a setting runs unless the command line says otherwise."""

    variants: tuple[str, ...]  # in the order they run within a budget and seed
    report_steps: dict[str, tuple[int, ...]]  # per preset, the stage-2 budgets; a preset not named runs its demo's
    test_studies: dict[str, int]  # per preset, the test studies of a seed; a preset not named has its demo's
    results: str
    output: str


SETTINGS = {
    "demo": Setting(
        variants=("no_gaze", "gaze", "gaze_aligned"),
        report_steps={},
        test_studies={},
        results="benchmarks/results/ablation.json",
        output="outputs/ablation",
    ),
    # the comparisons' variants first: a study stopped in the largest budget's first seed has them
    "research": Setting(
        variants=("gaze_aligned", "no_gaze", "study_findings", "plain_tokens", "gaze"),
        report_steps={"demo-smollm2": (1200, 600, 300, 150), "tiny": (2, 1)},
        test_studies={"demo-smollm2": 200, "tiny": 6},
        results="benchmarks/results/ablation_research.json",
        output="outputs/ablation-research",
    ),
}


def shipped_variant(preset: str) -> str | None:
    """The variant the preset builds as it ships (None when it matches none)."""
    config, defaults = load_preset(preset)["config"], Gaze2ReportConfig()
    fields = {name for flags in VARIANTS.values() for name in flags}
    default = {name: getattr(defaults, name) for name in fields}
    built = {name: config.get(name, default[name]) for name in fields}
    return next((name for name, flags in VARIANTS.items() if built == default | flags), None)


def default_num_studies(preset: str, test_studies: int | None) -> int:
    """The preset's demo studies with `test_studies` in test in place of its own (None: its own), so that the
    training and validation studies stay the demo's."""
    budget = BUDGETS[preset]
    own_test = held_out_counts(budget)[1]
    return budget.num_studies - own_test + (own_test if test_studies is None else test_studies)


def run_key(run: dict) -> tuple[str, int, int]:
    return run["variant"], run["seed"], run["budget"]["report_steps"]


def run_name(key: tuple[str, int, int]) -> str:
    variant, seed, steps = key
    return f"{variant}-seed{seed}-steps{steps}"


def planned_runs(arguments: argparse.Namespace) -> list[tuple[str, int, int]]:
    """The runs asked for, in the order they run: budget by budget (largest first), seed by seed, variant by
    variant."""
    return [
        (variant, seed, steps)
        for steps in sorted(arguments.steps, reverse=True)
        for seed in arguments.seeds
        for variant in arguments.variants
    ]


def spread(values: list, num_runs: int) -> dict:
    """Mean, sample standard deviation (None with one value), and the number of runs where the value was defined
    (laterality accuracy is None when no finding was positive and sided in both reports) and where it was not."""
    defined = [value for value in values if value is not None]
    return {
        "mean": statistics.fmean(defined) if defined else None,
        "std": statistics.stdev(defined) if len(defined) > 1 else None,
        "num_runs": len(defined),
        "num_undefined": num_runs - len(defined),
    }


def summarize(runs: list[dict]) -> dict:
    """Per stage-2 budget (largest first, keyed by its steps as a string), variant (VARIANTS' order) and metric of
    REPORTED_METRICS: the `spread` of the metric over the seeds run."""
    summary = {}
    for steps in sorted({run["budget"]["report_steps"] for run in runs}, reverse=True):
        summary[str(steps)] = {}
        for variant in VARIANTS:
            variant_runs = [run for run in runs if run_key(run)[::2] == (variant, steps)]
            if variant_runs:
                summary[str(steps)][variant] = {
                    metric: spread([run["headline"].get(metric) for run in variant_runs], len(variant_runs))
                    for metric in REPORTED_METRICS
                }
    return summary


def read_per_study(results: Path, run: dict) -> list[dict]:
    """The per-study rows of `run` (its `per_study` file, relative to the results file's folder); a ValueError names
    a file that is missing or a line that lacks a field of PER_STUDY_FIELDS."""
    path = results.parent / run["per_study"]
    if not path.is_file():
        raise ValueError(f"{path}, the per-study file of {run_name(run_key(run))} in {results}, does not exist")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, start=1):
        missing = [field for field in PER_STUDY_FIELDS if field not in row]
        if missing:
            raise ValueError(f"{path}: line {number} lacks {', '.join(missing)}")
    return rows


def study_statistics(rows: list[dict]) -> dict:
    """The StudyStatistics of COMPARED_METRICS over `rows`."""
    predictions = [row["generated_report"] for row in rows]
    references = [row["reference_report"] for row in rows]
    report_metrics = report_statistics(
        predictions, references, metrics=[m for m in COMPARED_METRICS if m in REPORT_METRICS]
    )
    reliance = [row["lm_loss_swapped_image"] - row["lm_loss_own_image"] for row in rows]
    return {**report_metrics, "image_reliance": mean_statistics(reliance)}


def defined(value: float) -> float | None:
    return None if math.isnan(value) else value


def paired_metrics(variant_rows: list[dict], baseline_rows: list[dict]) -> dict:
    """Per metric of COMPARED_METRICS: the variant's and the baseline's value over all the rows and
    `intervals.paired_comparison` of the two (row i of both is the same study)."""
    variant, baseline = study_statistics(variant_rows), study_statistics(baseline_rows)
    return {
        metric: {
            "variant": defined(variant[metric].value()),
            "baseline": defined(baseline[metric].value()),
            **paired_comparison(variant[metric], baseline[metric], num_resamples=NUM_RESAMPLES),
        }
        for metric in COMPARED_METRICS
    }


def compare_variants(study: dict, results: Path) -> list[dict]:
    """Per stage-2 budget (largest first) and pair of COMPARISONS run with at least one common seed: the paired
    comparison over the held-out studies of those seeds, pooled (each study a unit); `not_computed` says why where a
    run has no per-study file (runs of an older version of this script)."""
    runs = {run_key(run): run for run in study["runs"]}
    comparisons = []
    for steps in sorted({key[2] for key in runs}, reverse=True):
        for variant, baseline in COMPARISONS:
            seeds = sorted(
                seed
                for name, seed, run_steps in runs
                if (name, run_steps) == (variant, steps) and (baseline, seed, steps) in runs
            )
            if not seeds:
                continue
            pairs = [(runs[variant, seed, steps], runs[baseline, seed, steps]) for seed in seeds]
            entry = {"report_steps": steps, "variant": variant, "baseline": baseline, "seeds": seeds}
            without = [run_name(run_key(run)) for pair in pairs for run in pair if "per_study" not in run]
            if without:
                entry["not_computed"] = f"runs without a per-study file: {', '.join(without)}"
            else:
                variant_rows = [row for run, _ in pairs for row in read_per_study(results, run)]
                baseline_rows = [row for _, run in pairs for row in read_per_study(results, run)]
                if [row["id"] for row in variant_rows] != [row["id"] for row in baseline_rows]:
                    raise ValueError(
                        f"{results}: {variant} and {baseline} at {steps} steps (seeds {seeds}) were not scored on the "
                        "same held-out studies in the same order; their per-study files differ in ids"
                    )
                entry["num_studies"] = len(variant_rows)
                entry["metrics"] = paired_metrics(variant_rows, baseline_rows)
            comparisons.append(entry)
    return comparisons


def format_spread(entry: dict) -> str:
    if entry["mean"] is None:
        return "n/a"
    deviation = f" ± {entry['std']:.3f}" if entry["std"] is not None else ""
    missing = f" (n={entry['num_runs']})" if entry["num_undefined"] else ""
    return f"{entry['mean']:.3f}{deviation}{missing}"


def format_value(value, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"


def verdict(result: dict, variant: str) -> str:
    """What a paired comparison shows, from its interval."""
    if result["low"] is None or result["difference"] is None:
        return "undefined on these studies"
    if not result["low"] - 1e-12 <= result["difference"] <= result["high"] + 1e-12:
        return "the difference lies outside its bootstrap interval (resampling biases this metric): read the p-value"
    if result["low"] > 0:
        return f"the interval lies above 0: {variant} is higher"
    if result["high"] < 0:
        return f"the interval lies below 0: {variant} is lower"
    return "the interval includes 0: these studies show no difference"


def comparison_lines(comparison: dict) -> list[str]:
    """Markdown bullets, one per metric, of a computed comparison."""
    lines = []
    for metric, result in comparison["metrics"].items():
        p_value = "n/a" if result["p_value"] is None else f"{result['p_value']:.2g}"
        lines.append(
            f"- `{metric}`: {format_value(result['variant'])} against {format_value(result['baseline'])}, difference "
            f"{format_value(result['difference'], True)} (95% interval {format_value(result['low'], True)} to "
            f"{format_value(result['high'], True)}, p = {p_value}): {verdict(result, comparison['variant'])}."
        )
    return lines


def learning_curve_lines(summary: dict) -> list[str]:
    """Markdown bullets: per variant run at two budgets or more, micro-F1 and distinct reports by budget and whether
    the last step up raised micro-F1 by more than its seed spread at the largest budget."""
    budgets = sorted(map(int, summary))
    lines = []
    for variant in VARIANTS:
        curve = [(steps, summary[str(steps)][variant]) for steps in budgets if variant in summary[str(steps)]]
        if len(curve) < 2:
            continue
        micro = [(steps, metrics["chexpert_micro_f1"]["mean"]) for steps, metrics in curve]
        distinct = [(steps, metrics["distinct_report_fraction"]["mean"]) for steps, metrics in curve]
        (previous_steps, previous), (largest, last) = micro[-2], micro[-1]
        line = (
            f"- `{variant}` micro-F1 "
            + ", ".join(f"{format_value(value)} ({steps})" for steps, value in micro)
            + "; distinct reports "
            + ", ".join(f"{format_value(value)} ({steps})" for steps, value in distinct)
            + "."
        )
        deviation = summary[str(largest)][variant]["chexpert_micro_f1"]["std"]
        if previous is not None and last is not None and deviation is not None:
            rise = last - previous
            relation = "more" if rise > deviation else "no more"
            line += (
                f" From {previous_steps} to {largest} steps micro-F1 changed by {rise:+.3f}, {relation} than its "
                f"seed spread at {largest} steps ({deviation:.3f})."
            )
        lines.append(line)
    return lines


def ablation_table(study: dict) -> str:
    """Markdown: what was run, mean ± std per budget and variant, the paired comparisons with what each shows, the
    learning curves, then every run's numbers."""
    runs = study["runs"]
    seeds = sorted({run["seed"] for run in runs})
    test_studies = sorted({run["num_test_studies"] for run in runs if "num_test_studies" in run})
    lines = [
        f"Setting `{study['setting']}`, preset `{study['preset']}`, seeds {', '.join(map(str, seeds))}; "
        f"{' or '.join(map(str, test_studies)) or 'the'} held-out test studies per seed, the same for every variant "
        "and budget of a seed; reports generated from the image alone (greedy). Mean ± sample standard deviation "
        "over the seeds run; `(n=2)`: the metric was defined in 2 of the runs.",
        "",
        "| stage-2 steps | reports seen | variant | runs | " + " | ".join(REPORTED_METRICS) + " |",
        "|---" * (len(REPORTED_METRICS) + 4) + "|",
    ]
    for steps, variants in study["summary"].items():
        for variant, metrics in variants.items():
            variant_runs = [run for run in runs if run_key(run)[::2] == (variant, int(steps))]
            reports_seen = variant_runs[0]["budget"]["batch_size"] * int(steps)
            lines.append(
                f"| {steps} | {reports_seen} | {variant} | {len(variant_runs)} | "
                + " | ".join(format_spread(metrics[name]) for name in REPORTED_METRICS)
                + " |"
            )
    computed = [comparison for comparison in study["comparisons"] if "metrics" in comparison]
    if computed:
        lines += [
            "",
            "## Paired comparisons",
            "",
            f"Each variant against its baseline over the same held-out studies, the seeds' studies pooled (each study "
            f"a unit): the metric on all of them, the difference, its 95% percentile bootstrap interval and the "
            f"two-sided paired permutation p-value ({NUM_RESAMPLES} resamples each).",
        ]
        for comparison in computed:
            lines += [
                "",
                f"### `{comparison['variant']}` − `{comparison['baseline']}`, {comparison['report_steps']} steps, "
                f"{comparison['num_studies']} studies (seeds {', '.join(map(str, comparison['seeds']))})",
                "",
                *comparison_lines(comparison),
            ]
    for comparison in study["comparisons"]:
        if "not_computed" in comparison:
            lines += [
                "",
                f"`{comparison['variant']}` − `{comparison['baseline']}` at {comparison['report_steps']} steps: not "
                f"computed ({comparison['not_computed']}).",
            ]
    curves = learning_curve_lines(study["summary"])
    if curves:
        lines += ["", "## Learning curves (mean over seeds; stage-2 steps in brackets)", "", *curves]
    lines += ["", "## Runs", "", "| stage-2 steps | variant | seed | " + " | ".join(REPORTED_METRICS) + " | minutes |"]
    lines.append("|---" * (len(REPORTED_METRICS) + 4) + "|")
    for run in runs:
        values = " | ".join(format_value(run["headline"].get(name)) for name in REPORTED_METRICS)
        lines.append(
            f"| {run['budget']['report_steps']} | {run['variant']} | {run['seed']} | {values} | "
            f"{run['timings']['total_s'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def load_study(path: Path, setting: str, preset: str, budget: dict) -> dict:
    """The results written so far (an empty study when `path` does not exist). A ValueError names a file that is not
    a study's JSON (or whose run lacks a field of RUN_FIELDS), or that holds runs of another setting (a file without
    one holds the demo setting's), of another preset, or of another budget than `budget`, stage-2 steps aside (a run
    without its own budget ran with the study's, which it gets): its runs would not be comparable."""
    if not path.exists():
        return {"setting": setting, "preset": preset, "runs": []}
    try:
        study = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); repair it or choose another --results") from error
    if not isinstance(study, dict) or not isinstance(study.get("runs"), list):
        raise ValueError(f"{path} is not an ablation results file (no list of runs); choose another --results")
    study.setdefault("setting", "demo")
    if study["setting"] != setting:
        raise ValueError(
            f"{path} holds runs of the {study['setting']!r} setting, not {setting!r}; choose another --results"
        )
    if study.get("preset") != preset:
        raise ValueError(
            f"{path} holds runs of preset {study.get('preset')!r}, not {preset!r}; choose another --results"
        )
    for index, run in enumerate(study["runs"]):
        missing = [field for field in RUN_FIELDS if not isinstance(run, dict) or field not in run]
        if missing:
            raise ValueError(f"{path}: runs[{index}] lacks {', '.join(missing)}; repair it or choose another --results")
        run_budget = run.setdefault("budget", study.get("budget")) or {}
        differences = ", ".join(
            f"{name} {run_budget.get(name)!r} there, {value!r} here"
            for name, value in budget.items()
            if name != "report_steps" and run_budget.get(name) != value
        )
        if differences or "report_steps" not in run_budget:
            raise ValueError(
                f"{path} holds runs with another budget ({differences or 'no report_steps there'}); resume with the "
                "budget they ran with (--num-studies, --test-studies) or choose another --results"
            )
    study.pop("budget", None)  # each run holds its own
    return study


def write_study(path: Path, study: dict) -> None:
    """The results file with its summary and comparisons, and the Markdown beside it."""
    study["summary"] = summarize(study["runs"])
    study["comparisons"] = compare_variants(study, path)
    write_text_atomically(path, json.dumps(study, indent=2, default=str) + "\n")
    write_text_atomically(path.with_suffix(".md"), ablation_table(study))


def machine() -> str:
    cpu = f"{platform.processor() or platform.machine()}, {torch.backends.cpu.get_cpu_capability()}"
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}"


def run_one(arguments: argparse.Namespace, argv: list[str], key: tuple[str, int, int]) -> dict:
    """Runs the demo of one (variant, seed, stage-2 steps), writes its per-study file and returns its record."""
    variant, seed, steps = key
    results, folder = Path(arguments.results), Path(arguments.output) / run_name(key)
    summary = run_demo(
        folder,
        preset=arguments.preset,
        seed=seed,
        num_studies=arguments.num_studies,
        report_steps=steps,
        model_variant=VARIANTS[variant],
        test_studies=arguments.test_studies,
        compile_decoder_layers=arguments.compile_decoder_layers,
    )
    records = [json.loads(line) for line in (folder / "reports.jsonl").read_text().splitlines()]
    losses = summary["image_reliance"]["per_study"]
    per_study = f"{results.stem}/{run_name(key)}.jsonl"
    rows = [
        {field: record[field] for field in PER_STUDY_FIELDS[:3]}
        | {"lm_loss_own_image": own, "lm_loss_swapped_image": swapped}
        for record, own, swapped in zip(
            records, losses["lm_loss_own_image"], losses["lm_loss_swapped_image"], strict=True
        )
    ]
    write_jsonl(results.parent / per_study, rows)
    return {
        "variant": variant,
        "seed": seed,
        "headline": summary["headline"],
        "budget": summary["budget"],
        "reports_seen": steps * summary["budget"]["batch_size"],
        "num_test_studies": summary["metrics"]["num_studies"],
        "language_model_dtype": summary["language_model_dtype"]["dtype"],
        "timings": summary["timings"],
        "machine": machine(),
        "command": "python examples/gaze_ablation.py " + " ".join(argv),
        "folder": str(folder),
        "per_study": per_study,
    }


def run_pending(arguments, argv, study: dict, done: set, claim, save) -> None:
    """Runs the planned runs not in `done` that `claim(key)` grants, in plan order, adding each to `study` and
    calling `save(study)` after each."""
    for key in planned_runs(arguments):
        if key in done:
            logger.info(f"{run_name(key)}: already in {arguments.results}, skipped")
        elif claim(key):
            logger.info(f"{run_name(key)}: running")
            study["runs"].append(run_one(arguments, argv, key))
            save(study)


def claim_in(folder: Path):
    """A claim on runs shared by processes: the first to create `folder/<run name>` gets the run."""
    folder.mkdir(parents=True, exist_ok=True)

    def claim(key) -> bool:
        try:
            os.close(os.open(folder / run_name(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            logger.info(f"{run_name(key)}: taken by another worker")
            return False
        return True

    return claim


def merge_worker_results(arguments, study: dict, budget: dict) -> None:
    """Adds the runs in the workers' files under --output/workers/ that `study` lacks (in plan order), writes the
    results file and then removes the workers' files."""
    paths = sorted((Path(arguments.output) / "workers").glob("worker-*.json"))
    if not paths:
        return
    done = {run_key(run) for run in study["runs"]}
    added = []
    for path in paths:
        for run in load_study(path, arguments.setting, arguments.preset, budget)["runs"]:
            if run_key(run) not in done:
                done.add(run_key(run))
                added.append(run)
    position = {key: index for index, key in enumerate(planned_runs(arguments))}
    study["runs"] += sorted(added, key=lambda run: position.get(run_key(run), len(position)))
    write_study(Path(arguments.results), study)
    for path in paths:
        path.unlink()
    logger.info(f"{len(added)} runs of {len(paths)} workers merged into {arguments.results}")


def run_workers(arguments, argv: list[str]) -> list[str]:
    """Runs this command line in `arguments.workers` processes (--worker-index 0, 1, ...), each with its share of the
    CPUs (unless OMP_NUM_THREADS is set) and its log under --output/workers/, and waits for them; returns the logs of
    those that failed. Stopped meanwhile, it stops them."""
    folder = Path(arguments.output) / "workers"
    shutil.rmtree(folder / "claims", ignore_errors=True)  # claims of a stopped invocation: their runs are not done
    folder.mkdir(parents=True, exist_ok=True)
    language_model = load_preset(arguments.preset).get("language_model")
    if language_model is not None:
        resolve_language_model(language_model)  # converted here once, not by every worker at the same time
    threads = max(1, len(os.sched_getaffinity(0)) // arguments.workers)
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    processes = []
    for index in range(arguments.workers):
        log = folder / f"worker-{index}.log"
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker-index", str(index)]
        with open(log, "w") as stream:
            processes.append((log, subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=environment)))
    logger.info(f"{arguments.workers} workers started; their logs: {folder}/worker-*.log")
    try:
        return [str(log) for log, process in processes if process.wait() != 0]
    finally:  # stopped (SIGTERM, Ctrl-C): the workers stop too, their finished runs kept in their files
        for _, process in processes:
            if process.poll() is None:
                process.terminate()
        for _, process in processes:
            process.wait()


def run_as_worker(arguments, argv: list[str], study: dict, budget: dict) -> dict:
    """One of --workers' processes: runs what it claims of the runs neither in `study` nor in its own file
    (--output/workers/worker-<index>.json), which it rewrites after each run; returns its runs' study."""
    workers = Path(arguments.output) / "workers"
    path = workers / f"worker-{arguments.worker_index}.json"
    own = load_study(path, arguments.setting, arguments.preset, budget) | {"variants": VARIANTS}
    done = {run_key(run) for run in study["runs"] + own["runs"]}

    def save(runs: dict) -> None:
        write_text_atomically(path, json.dumps(runs, indent=2, default=str) + "\n")

    run_pending(arguments, argv, own, done, claim_in(workers / "claims"), save)
    return own


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="demo", choices=list(SETTINGS), help="What runs by default (SETTINGS).")
    parser.add_argument("--preset", default="demo-smollm2", choices=list(BUDGETS), help="The demo preset and budget.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="Default: the setting's, in its order.")
    parser.add_argument("--steps", type=int, nargs="+", help="Stage-2 steps of each budget (default: the setting's).")
    parser.add_argument("--test-studies", type=int, help="Held-out test studies per seed (default: the setting's).")
    parser.add_argument(
        "--num-studies", type=int, help="Synthetic studies per seed (default: the demo's, with --test-studies in test)."
    )
    parser.add_argument(
        "--compile-decoder-layers",
        action="store_true",
        help="Run stage 2's decoder layers compiled: the same computation, faster per step once compiled.",
    )
    parser.add_argument("--workers", type=int, default=1, help="Processes running runs side by side (one GPU).")
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by --workers for its processes
    parser.add_argument("--output", help="Folder of the runs' demo folders (default: the setting's).")
    parser.add_argument("--results", help="The results file (JSON, named *.json; default: the setting's).")
    arguments = parser.parse_args(argv)
    setting = SETTINGS[arguments.setting]
    arguments.variants = arguments.variants or list(setting.variants)
    arguments.steps = arguments.steps or list(
        setting.report_steps.get(arguments.preset, (BUDGETS[arguments.preset].report_steps,))
    )
    if arguments.test_studies is None:
        arguments.test_studies = setting.test_studies.get(arguments.preset)
    if arguments.num_studies is None:
        arguments.num_studies = default_num_studies(arguments.preset, arguments.test_studies)
    arguments.output = arguments.output or setting.output
    arguments.results = arguments.results or setting.results
    if Path(arguments.results).suffix != ".json":
        parser.error(f"--results must name a .json file (the Markdown table goes beside it), got {arguments.results}")
    if min(arguments.seeds) < 0:
        parser.error(f"--seeds must be non-negative, got {arguments.seeds}")
    if min(arguments.steps) < 1:
        parser.error(f"--steps must be >= 1, got {arguments.steps}")
    if arguments.workers < 1:
        parser.error(f"--workers must be >= 1, got {arguments.workers}")
    if arguments.worker_index is not None and not 0 <= arguments.worker_index < arguments.workers:
        parser.error(f"--worker-index must lie in 0..{arguments.workers - 1}, got {arguments.worker_index}")
    for option in ("seeds", "variants", "steps"):
        values = getattr(arguments, option)
        if len(set(values)) != len(values):
            parser.error(f"--{option} repeats a value: {values}")
    return arguments


def main(argv=None) -> dict:
    """Runs the planned runs not yet in the results file (in --workers processes); returns the study (a worker: the
    runs it wrote)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = parse_arguments(argv)
    results = Path(arguments.results)
    budget = dataclasses.asdict(
        demo_budget(arguments.preset, arguments.num_studies, max(arguments.steps), arguments.test_studies)
    )
    study = load_study(results, arguments.setting, arguments.preset, budget)
    study.update(
        language_model=load_preset(arguments.preset).get("language_model", "random (the preset's text_config)"),
        shipped_variant=shipped_variant(arguments.preset),
        variants=VARIANTS,
    )
    if arguments.worker_index is not None:
        return run_as_worker(arguments, argv, study, budget)
    merge_worker_results(arguments, study, budget)  # the runs of a stopped invocation's workers
    if arguments.workers == 1:
        done = {run_key(run) for run in study["runs"]}
        run_pending(arguments, argv, study, done, lambda key: True, lambda study: write_study(results, study))
    else:
        write_study(results, study)  # what the workers read to skip the runs done
        try:
            failed = run_workers(arguments, argv)
        finally:
            merge_worker_results(arguments, study, budget)
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {arguments.workers} workers failed (the others' runs are in {results}); their "
                f"logs: {', '.join(failed)}"
            )
    if not study["runs"]:
        raise ValueError("No run was asked for")
    write_study(results, study)
    return study


def stop(signal_number, frame):
    """SIGTERM ends the program as an exception does, so that what it finished is kept (a worker's runs in its file,
    the workers' runs merged into the results file)."""
    raise SystemExit(128 + signal_number)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    signal.signal(signal.SIGTERM, stop)
    run_command(main, Path(__file__).name, sys.argv[1:])
