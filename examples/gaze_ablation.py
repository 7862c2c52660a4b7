"""Does gaze help? Trains the demo (`gaze2report demo`: its backbones, data and budget) in model variants that differ
only in what reaches the language model, with the same seeds, and compares the reports they write for the held-out
studies:

    no_gaze           use_gaze=False: the same number of visual tokens, from patch features and fixed grid nodes
    gaze              the paper's path: the graph is built on the scanpath (recorded in training, predicted at
                      inference) and its tokens are all the language model gets from the image
    gaze_aligned      gaze, plus the fixation-node head: each fixation node learns the findings dictated while the
                      radiologist looked there (use_fixation_findings); the demo preset as shipped

Each seed draws its own synthetic studies (the same for every variant of that seed) and seeds training. The study
resumes: a (variant, seed) run already in the results file is skipped, so it can span sessions; the results file is
rewritten after every run. Each run records the budget it ran with, and a results file whose runs ran with another
budget (--num-studies, --steps) is refused: their numbers would not be comparable.

    nice -n 10 python examples/gaze_ablation.py                                 # 3 variants x seeds 0 1 2
    python examples/gaze_ablation.py --preset tiny --num-studies 20 --steps 2 --seeds 0 --variants no_gaze gaze \\
        --output outputs/ablation-smoke --results outputs/ablation-smoke/ablation.json

Writes --results (a .json file: per run the headline metrics, budget, timings and the run's folder; per variant mean
and sample standard deviation) and, beside it, the same tables as Markdown (ablation.md for ablation.json); each
run's demo folder (model/, reports.jsonl, metrics.json, overlays/) lies under --output/<variant>-seed<seed>/.
"""

import argparse
import dataclasses
import json
import logging
import platform
import statistics
import sys
from pathlib import Path

import torch

from modeling_gaze2report.cli import run_command
from modeling_gaze2report.demo.run import BUDGETS, demo_budget, run_demo
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.presets import load_preset

logger = logging.getLogger(__name__)

VARIANTS = {
    "no_gaze": {"use_gaze": False, "use_fixation_findings": False},
    "gaze": {"use_gaze": True, "use_fixation_findings": False},
    "gaze_aligned": {"use_gaze": True, "use_fixation_findings": True},
}
REPORTED_METRICS = (
    "chexpert_micro_f1",
    "chexpert_exact_match",
    "laterality_accuracy",
    "bleu_4",
    "distinct_report_fraction",
    "lm_loss_own_image",
    "lm_loss_swapped_image",
    "visual_attention_share",
)


def shipped_variant(preset: str) -> str | None:
    """The variant the preset builds as it ships (None when it matches none)."""
    config = load_preset(preset)["config"]
    shipped = {flag: config.get(flag, flag == "use_gaze") for flag in VARIANTS["gaze"]}
    return next((name for name, flags in VARIANTS.items() if flags == shipped), None)


def summarize(runs: list[dict], variants: list[str]) -> dict:
    """Per variant and metric: mean, sample standard deviation (None with one value), the number of runs where the
    metric was defined (laterality accuracy is None when no finding was positive and sided in both reports) and the
    number where it was not."""
    summary = {}
    for variant in variants:
        variant_runs = [run for run in runs if run["variant"] == variant]
        summary[variant] = {}
        for metric in REPORTED_METRICS:
            values = [run["headline"][metric] for run in variant_runs if run["headline"].get(metric) is not None]
            summary[variant][metric] = {
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "num_runs": len(values),
                "num_undefined": len(variant_runs) - len(values),
            }
    return summary


def format_spread(entry: dict) -> str:
    if entry["mean"] is None:
        return "n/a"
    spread = f" ± {entry['std']:.3f}" if entry["std"] is not None else ""
    missing = f" (n={entry['num_runs']})" if entry["num_undefined"] else ""
    return f"{entry['mean']:.3f}{spread}{missing}"


def ablation_table(study: dict) -> str:
    """Markdown: mean ± std per variant, then every run's numbers."""
    seeds = sorted({run["seed"] for run in study["runs"]})
    lines = [
        f"Mean ± sample standard deviation over the seeds run ({', '.join(map(str, seeds))}); held-out test studies "
        "of each seed; reports generated from the image alone (greedy).",
        "",
        "| variant | runs | " + " | ".join(REPORTED_METRICS) + " |",
        "|---" * (len(REPORTED_METRICS) + 2) + "|",
    ]
    for variant, metrics in study["summary"].items():
        count = sum(run["variant"] == variant for run in study["runs"])
        lines.append(
            f"| {variant} | {count} | " + " | ".join(format_spread(metrics[name]) for name in REPORTED_METRICS) + " |"
        )
    lines += ["", "| variant | seed | " + " | ".join(REPORTED_METRICS) + " | minutes |"]
    lines.append("|---" * (len(REPORTED_METRICS) + 3) + "|")
    for run in study["runs"]:
        values = " | ".join(
            "n/a" if run["headline"].get(name) is None else f"{run['headline'][name]:.3f}" for name in REPORTED_METRICS
        )
        lines.append(f"| {run['variant']} | {run['seed']} | {values} | {run['timings']['total_s'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


RUN_FIELDS = ("variant", "seed", "headline", "timings")  # what the summary and the tables read of a run


def load_study(path: Path, preset: str, budget: dict) -> dict:
    """The results written so far (an empty study when `path` does not exist). A ValueError names a file that is not
    a study's JSON (or whose run lacks a field of RUN_FIELDS), or that holds runs of another preset or of another
    budget (a run without its own budget ran with the study's): its runs would not be comparable."""
    if not path.exists():
        return {"preset": preset, "runs": []}
    try:
        study = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); repair it or choose another --results") from error
    if not isinstance(study, dict) or not isinstance(study.get("runs"), list):
        raise ValueError(f"{path} is not an ablation results file (no list of runs); choose another --results")
    if study.get("preset") != preset:
        raise ValueError(
            f"{path} holds runs of preset {study.get('preset')!r}, not {preset!r}; choose another --results"
        )
    for index, run in enumerate(study["runs"]):
        missing = [field for field in RUN_FIELDS if not isinstance(run, dict) or field not in run]
        if missing:
            raise ValueError(f"{path}: runs[{index}] lacks {', '.join(missing)}; repair it or choose another --results")
        run_budget = run.get("budget", study.get("budget"))
        if run_budget != budget:
            differences = ", ".join(
                f"{name} {(run_budget or {}).get(name)!r} there, {value!r} here"
                for name, value in budget.items()
                if (run_budget or {}).get(name) != value
            )
            raise ValueError(
                f"{path} holds runs with another budget ({differences}); resume with the budget they ran with "
                "(--num-studies, --steps) or choose another --results"
            )
    return study


def write_study(path: Path, study: dict) -> None:
    variants = [name for name in VARIANTS if any(run["variant"] == name for run in study["runs"])]
    study["summary"] = summarize(study["runs"], variants)
    write_text_atomically(path, json.dumps(study, indent=2, default=str) + "\n")
    write_text_atomically(path.with_suffix(".md"), ablation_table(study))


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo-smollm2", choices=list(BUDGETS), help="The demo preset and budget.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--num-studies", type=int, default=None, help="Synthetic studies (default: the budget's).")
    parser.add_argument("--steps", type=int, default=None, help="Report-generation steps (default: the budget's).")
    parser.add_argument("--output", default="outputs/ablation", help="Folder of the runs' demo folders.")
    parser.add_argument(
        "--results", default="benchmarks/results/ablation.json", help="The results file (JSON, named *.json)."
    )
    arguments = parser.parse_args(argv)
    if Path(arguments.results).suffix != ".json":
        parser.error(f"--results must name a .json file (the Markdown table goes beside it), got {arguments.results}")
    if min(arguments.seeds) < 0:
        parser.error(f"--seeds must be non-negative, got {arguments.seeds}")
    for option in ("seeds", "variants"):
        values = getattr(arguments, option)
        if len(set(values)) != len(values):
            parser.error(f"--{option} repeats a value: {values}")
    return arguments


def main(argv=None) -> dict:
    """Runs the (variant, seed) pairs not yet in the results file, seed by seed; returns the study."""
    arguments = parse_arguments(argv)
    results = Path(arguments.results)
    budget = dataclasses.asdict(demo_budget(arguments.preset, arguments.num_studies, arguments.steps))
    study = load_study(results, arguments.preset, budget)
    study.update(
        language_model=load_preset(arguments.preset).get("language_model", "random (the preset's text_config)"),
        shipped_variant=shipped_variant(arguments.preset),
        variants={name: VARIANTS[name] for name in VARIANTS},
        budget=budget,
    )
    done = {(run["variant"], run["seed"]) for run in study["runs"]}
    for seed in arguments.seeds:
        for variant in arguments.variants:
            if (variant, seed) in done:
                logger.info(f"{variant}, seed {seed}: already in {results}, skipped")
                continue
            logger.info(f"{variant}, seed {seed}: running")
            folder = Path(arguments.output) / f"{variant}-seed{seed}"
            summary = run_demo(
                folder,
                preset=arguments.preset,
                seed=seed,
                num_studies=arguments.num_studies,
                report_steps=arguments.steps,
                model_variant=VARIANTS[variant],
            )
            study["runs"].append(
                {
                    "variant": variant,
                    "seed": seed,
                    "headline": summary["headline"],
                    "budget": summary["budget"],
                    "num_test_studies": summary["metrics"]["num_studies"],
                    "language_model_dtype": summary["language_model_dtype"]["dtype"],
                    "timings": summary["timings"],
                    "machine": f"{platform.processor() or platform.machine()}, "
                    f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads",
                    "command": "python examples/gaze_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "folder": str(folder),
                }
            )
            write_study(results, study)
    if not study["runs"]:
        raise ValueError("No run was asked for")
    write_study(results, study)
    return study


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    run_command(main, Path(__file__).name, sys.argv[1:])
