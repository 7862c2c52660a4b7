"""Does gaze help? Trains Gaze2Report on the synthetic world in three variants with the same budget and seeds:

    no_gaze         use_gaze=False: the same number of visual tokens, built from patch features alone
    predicted_gaze  the graph is built from the predicted scanpath; recorded gaze still supervises the predictor
    recorded_gaze   teacher forcing: the graph is built from the recorded gaze during training

Reports of held-out studies are always generated from the image alone (the gaze variants read their predicted
scanpath). Each seed draws its own synthetic dataset (the same for every variant of that seed) and seeds training.
Per variant, mean +- standard deviation over seeds of the CheXpert F1s, laterality accuracy, BLEU-4, ROUGE-L,
METEOR and CIDEr.

    nice -n 10 python examples/gaze_ablation.py --output outputs/ablation
    python examples/gaze_ablation.py --seeds 0 --variants no_gaze predicted_gaze --num_studies 40 --steps 20 \
        --output outputs/ablation-smoke

Writes under --output: ablation.json (budget, per-run metrics and training losses, per-variant summaries),
ablation.md (the table), runs/<variant>-seed<seed>.jsonl (per-study records) and train/ (Trainer outputs).
"""

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import TrainerCallback, TrainingArguments

from modeling_gaze2report.data import make_synthetic_dataset
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.reporting import (
    generate_records,
    headline_metrics,
    score_records,
    write_jsonl,
)
from modeling_gaze2report.training import DataArguments, ModelArguments, RecipeArguments, run_training

logger = logging.getLogger(__name__)

# (use_gaze, gaze_source during training; without gaze the graph always reads fixed, gaze-free fixation nodes)
VARIANTS = {
    "no_gaze": (False, "predicted"),
    "predicted_gaze": (True, "predicted"),
    "recorded_gaze": (True, "recorded"),
}
REPORTED_METRICS = (
    "chexpert_micro_f1",
    "chexpert_macro_f1",
    "chexpert_example_f1",
    "chexpert_exact_match",
    "laterality_accuracy",
    "bleu_4",
    "rouge_l",
    "meteor",
    "cider",
    "distinct_report_fraction",
)


@dataclass(frozen=True)
class AblationBudget:
    preset: str = "ablation"
    num_studies: int = 400
    image_size: int = 64
    scanpath_steps: int = 300
    report_steps: int = 250
    batch_size: int = 8
    learning_rate: float = 1e-3
    lora_r: int = 32
    max_report_tokens: int = 120
    max_new_tokens: int = 100


class LossRecorder(TrainerCallback):
    """Keeps the training losses the Trainer logs (stage 2: language model + weighted scanpath loss)."""

    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append({"step": state.global_step, "loss": float(logs["loss"])})


def train_and_evaluate(variant: str, seed: int, dataset, budget: AblationBudget, output: Path) -> dict:
    """Trains one variant with one seed, generates reports for the test split and scores them."""
    use_gaze, gaze_source = VARIANTS[variant]
    started = time.perf_counter()
    model_args = ModelArguments(
        preset=budget.preset, use_gaze=use_gaze, lora_r=budget.lora_r, lora_alpha=2 * budget.lora_r
    )
    data_args = DataArguments(
        data_source="synthetic",
        num_synthetic_studies=budget.num_studies,
        synthetic_image_size=budget.image_size,
        synthetic_seed=seed,
        gaze_source=gaze_source,
        max_report_tokens=budget.max_report_tokens,
    )
    # the preset's backbones are random: every part, the language model included, learns at one rate
    recipe = RecipeArguments(
        scanpath_max_steps=budget.scanpath_steps,
        save_merged=False,
        module_learning_rate=budget.learning_rate,
        vision_learning_rate=budget.learning_rate,
    )
    training_args = TrainingArguments(
        output_dir=str(output / "train" / f"{variant}-seed{seed}"),
        max_steps=budget.report_steps,
        per_device_train_batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=min(20, budget.report_steps // 10),
        logging_steps=max(1, budget.report_steps // 30),
        save_strategy="no",
        report_to=[],
        seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    losses = LossRecorder()
    model, processor, dataset = run_training(
        model_args, data_args, recipe, training_args, dataset=dataset, callbacks=[losses]
    )
    training_seconds = time.perf_counter() - started
    records = generate_records(model, processor, dataset["test"], batch_size=16, max_new_tokens=budget.max_new_tokens)
    records_path = Path("runs") / f"{variant}-seed{seed}.jsonl"
    write_jsonl(output / records_path, records)
    results = score_records(records)
    return {
        "variant": variant,
        "seed": seed,
        "use_gaze": use_gaze,
        "gaze_source_in_training": gaze_source if use_gaze else None,
        "headline": headline_metrics(results),
        "metrics": results,
        "training_losses": losses.losses,
        "empty_reports": sum(1 for record in records if not record["generated_report"].strip()),
        "records": str(records_path),
        "training_seconds": training_seconds,
        "total_seconds": time.perf_counter() - started,
    }


def summarize(runs: list[dict], variants: list[str]) -> dict:
    """Per variant and metric: mean, sample standard deviation (None with one value) and the number of runs where
    the metric was defined (laterality accuracy is None when no finding was positive and sided in both reports)."""
    summary = {}
    for variant in variants:
        variant_runs = [run for run in runs if run["variant"] == variant]
        summary[variant] = {}
        for metric in REPORTED_METRICS:
            values = [run["headline"][metric] for run in variant_runs if run["headline"][metric] is not None]
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


def ablation_table(summary: dict, runs: list[dict], seeds: list[int]) -> str:
    """Markdown: mean ± std per variant, then every run's numbers."""
    header = "| variant | " + " | ".join(REPORTED_METRICS) + " |"
    rule = "|---" * (len(REPORTED_METRICS) + 1) + "|"
    lines = [
        f"Mean ± sample standard deviation over seeds {', '.join(map(str, seeds))}; test split of each seed's "
        "synthetic dataset; reports generated from the image alone (predicted gaze).",
        "",
        header,
        rule,
    ]
    for variant, metrics in summary.items():
        lines.append(f"| {variant} | " + " | ".join(format_spread(metrics[name]) for name in REPORTED_METRICS) + " |")
    lines += [
        "",
        "Per run:",
        "",
        "| variant | seed | " + " | ".join(REPORTED_METRICS) + " | first / last loss |",
        "|---" * (len(REPORTED_METRICS) + 3) + "|",
    ]
    for run in runs:
        values = " | ".join(
            "n/a" if run["headline"][name] is None else f"{run['headline'][name]:.3f}" for name in REPORTED_METRICS
        )
        losses = run["training_losses"]
        loss = f"{losses[0]['loss']:.2f} / {losses[-1]['loss']:.2f}" if losses else "n/a"
        lines.append(f"| {run['variant']} | {run['seed']} | {values} | {loss} |")
    return "\n".join(lines) + "\n"


def parse_arguments(argv=None) -> argparse.Namespace:
    defaults = AblationBudget()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--num_studies", type=int, default=defaults.num_studies, help="Synthetic studies per seed.")
    parser.add_argument("--steps", type=int, default=defaults.report_steps, help="Report-generation (stage 2) steps.")
    parser.add_argument("--scanpath_steps", type=int, default=defaults.scanpath_steps, help="Stage 1 steps.")
    parser.add_argument("--preset", default=defaults.preset)
    parser.add_argument("--image_size", type=int, default=defaults.image_size)
    parser.add_argument("--max_new_tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--output", required=True, help="Output folder.")
    arguments = parser.parse_args(argv)
    for name in ("num_studies", "steps", "scanpath_steps", "image_size", "max_new_tokens"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(arguments, name)}")
    if min(arguments.seeds) < 0:
        parser.error(f"--seeds must be non-negative, got {arguments.seeds}")
    for option in ("seeds", "variants"):
        values = getattr(arguments, option)
        if len(set(values)) != len(values):
            parser.error(f"--{option} repeats a value: {values}")
    return arguments


def main(argv=None) -> dict:
    """Runs the study; returns the content of ablation.json."""
    arguments = parse_arguments(argv)
    budget = AblationBudget(
        preset=arguments.preset,
        num_studies=arguments.num_studies,
        image_size=arguments.image_size,
        scanpath_steps=arguments.scanpath_steps,
        report_steps=arguments.steps,
        max_new_tokens=arguments.max_new_tokens,
    )
    output = Path(arguments.output)
    started = time.perf_counter()
    runs = []
    for seed in arguments.seeds:
        dataset = make_synthetic_dataset(num_studies=budget.num_studies, seed=seed, image_size=budget.image_size)
        if len(dataset["test"]) == 0:
            raise ValueError(f"--num_studies {budget.num_studies} leaves no test studies (10% of the studies)")
        for variant in arguments.variants:
            logger.info(f"Seed {seed}, variant {variant}")
            runs.append(train_and_evaluate(variant, seed, dataset, budget, output))
    summary = summarize(runs, arguments.variants)
    study = {
        "command": "python examples/gaze_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "budget": asdict(budget),
        "seeds": arguments.seeds,
        "variants": {
            name: {
                "use_gaze": VARIANTS[name][0],
                "gaze_source_in_training": VARIANTS[name][1] if VARIANTS[name][0] else None,
            }
            for name in arguments.variants
        },
        "num_test_studies_per_seed": runs[0]["metrics"]["num_studies"],
        "summary": summary,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    write_text_atomically(output / "ablation.json", json.dumps(study, indent=2, default=str) + "\n")
    write_text_atomically(output / "ablation.md", ablation_table(summary, runs, arguments.seeds))
    logger.info(f"Wrote {output}/ablation.json, ablation.md and runs/")
    return study


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    main(sys.argv[1:])
