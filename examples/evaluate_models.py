"""Evaluate one or several trained Gaze2Report models on one dataset split and write one results table.

    python examples/evaluate_models.py --model runs/gaze/model runs/no_gaze/model --data_source synthetic \
        --num_synthetic_studies 200 --synthetic_image_size 64 --split test --output outputs/evaluation
    python examples/evaluate_models.py --model runs/egd/model --data_source mimic-cxr \
        --data_path mimic/annotation.json --image_root mimic-cxr-jpg/2.0.0 --num_beams 3 \
        --output outputs/evaluation-mimic

Writes under --output (new, empty or an earlier evaluation's folder, which it replaces whole):
    results.json              per model: the literature's table with 95% intervals, all metrics, decoding settings,
                              dataset, metric protocol, per-study file; with several models, each one's paired
                              comparison with the first
    results.md                per model the literature's table (`gaze2report evaluate`'s, with its intervals), the
                              paired comparisons with the first model, one table of the other headline metrics, and
                              the protocol
    per_study/<model>.jsonl   one line per study: id, generated and reference report, predicted and recorded gaze

Reports are generated from the image alone: the scanpath the graph network reads is always the predicted one.
Every metric's protocol is in docs/evaluation.md.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from modeling_gaze2report import Gaze2ReportForConditionalGeneration, Gaze2ReportProcessor
from modeling_gaze2report.cli import run_command
from modeling_gaze2report.data import DATA_SOURCES, DataSourceArguments, load_training_data
from modeling_gaze2report.evaluation.report_table import (
    compare_table,
    markdown_comparison,
    markdown_table,
    report_table,
)
from modeling_gaze2report.files import write_output_folder, write_text_atomically
from modeling_gaze2report.reporting import (
    generate_records,
    headline_metrics,
    score_records,
    write_jsonl,
)

logger = logging.getLogger(__name__)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="Saved model directories (one table row each).")
    parser.add_argument("--data_source", default="synthetic", choices=DATA_SOURCES)
    parser.add_argument("--data_path", default=None, help="As in training: annotation.json, dataset root or saved dir.")
    parser.add_argument("--image_root", default=None, help="MIMIC-CXR-JPG 2.0.0 root or the IU X-ray images.")
    parser.add_argument("--num_synthetic_studies", type=int, default=400)
    parser.add_argument("--synthetic_image_size", type=int, default=128)
    parser.add_argument("--synthetic_seed", type=int, default=0)
    parser.add_argument("--lenient", action="store_true", help="Readers skip and count malformed rows.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_samples", type=int, default=None, help="Evaluate the first N studies of the split.")
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--num_beams", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--normalization", default="r2gen", choices=("r2gen", "ptb"))
    parser.add_argument("--uncertain_as", type=int, default=0, choices=(0, 1))
    parser.add_argument(
        "--clinical_metrics",
        default="none",
        help="Comma-separated model-based columns (chexbert, bertscore; their weights fetched once with "
        "`gaze2report evaluate --fetch-weights`) or 'none' (default).",
    )
    parser.add_argument("--num_resamples", type=int, default=1000, help="Bootstrap and permutation resamples.")
    parser.add_argument("--output", required=True, help="Output folder.")
    arguments = parser.parse_args(argv)
    for name in (
        "max_new_tokens",
        "num_beams",
        "batch_size",
        "num_synthetic_studies",
        "synthetic_image_size",
        "num_resamples",
    ):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(arguments, name)}")
    if arguments.max_samples is not None and arguments.max_samples < 1:
        parser.error(f"--max_samples must be >= 1, got {arguments.max_samples}")
    return arguments


def check_model_dirs(model_dirs: list[str]) -> list[Path]:
    """The model directories as paths; an error names every one that is not a saved Gaze2Report model."""
    problems = []
    for model_dir in map(Path, model_dirs):
        if not model_dir.is_dir():
            problems.append(f"{model_dir} does not exist or is not a directory")
        elif not (model_dir / "config.json").is_file():
            problems.append(
                f"{model_dir} has no config.json: not a saved model (run_training writes one to <output_dir>/model)"
            )
    if problems:
        raise FileNotFoundError("--model: " + "; ".join(problems))
    return [Path(model_dir) for model_dir in model_dirs]


def model_names(model_dirs: list[Path]) -> list[str]:
    """A short unique name per model: the folder name, or its parent's for run_training's `<run>/model`; repeated
    names get `-2`, `-3`..."""
    names = []
    for model_dir in model_dirs:
        resolved = model_dir.resolve()
        base = resolved.parent.name if resolved.name == "model" and resolved.parent.name else resolved.name
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names


def load_split(arguments: argparse.Namespace):
    """The evaluated split (cut to --max_samples) and a description of where it came from."""
    data_args = DataSourceArguments(
        data_source=arguments.data_source,
        data_path=arguments.data_path,
        image_root=arguments.image_root,
        num_synthetic_studies=arguments.num_synthetic_studies,
        synthetic_image_size=arguments.synthetic_image_size,
        synthetic_seed=arguments.synthetic_seed,
        strict=not arguments.lenient,
    )
    dataset = load_training_data(data_args)
    if arguments.split not in dataset:
        raise ValueError(f"--split {arguments.split!r} is not in the dataset (splits: {', '.join(dataset)})")
    split = dataset[arguments.split]
    available = len(split)
    if available == 0:
        raise ValueError(f"--split {arguments.split!r} of data_source {arguments.data_source!r} has no studies")
    if arguments.max_samples is not None and arguments.max_samples < available:
        split = split.select(range(arguments.max_samples))
    description = {
        "data_source": arguments.data_source,
        "data_path": arguments.data_path,
        "image_root": arguments.image_root,
        "split": arguments.split,
        "num_studies_in_split": available,
        "num_studies_evaluated": len(split),
        "num_with_recorded_gaze": sum(1 for fixations in split["fixations"] if fixations),
    }
    if arguments.data_source == "synthetic":
        description.update(
            num_synthetic_studies=arguments.num_synthetic_studies,
            synthetic_image_size=arguments.synthetic_image_size,
            synthetic_seed=arguments.synthetic_seed,
        )
    return split, description


def metric_protocol(results: dict) -> dict:
    """How each metric family was computed, as the metrics themselves state it."""
    nlg = results["report_nlg"]
    protocol = {
        "report_nlg": {"normalization": nlg["normalization"], "implementation": nlg["implementation"]},
        "clinical_efficacy": results["clinical_efficacy"]["protocol"],
    }
    if "scanpath" in results:
        protocol["scanpath"] = {"units": results["scanpath"]["units"], "pairs": results["scanpath_pairs"]}
    return protocol


def evaluate_model(model_dir: Path, split, decoding: dict, normalization: str, uncertain_as: int):
    """Generates a report per study with the saved model and scores them; returns `(records, results)`."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Gaze2ReportForConditionalGeneration.from_pretrained(model_dir).to(device).eval()
    processor = Gaze2ReportProcessor.from_pretrained(model_dir)
    records = generate_records(
        model,
        processor,
        split,
        batch_size=decoding["batch_size"],
        max_new_tokens=decoding["max_new_tokens"],
        generate_kwargs={"num_beams": decoding["num_beams"]},
    )
    return records, score_records(records, normalization=normalization, uncertain_as=uncertain_as)


def format_value(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def results_table(evaluations: dict, comparisons: dict, dataset: dict, decoding: dict) -> str:
    """Markdown: the dataset and decoding, each model's literature table with intervals, the paired comparisons with
    the first model, one row per model with its headline metrics, then the protocol lines."""
    columns = []
    for evaluation in evaluations.values():
        columns += [name for name in evaluation["headline"] if name not in columns]
    lines = [
        f"Dataset: {dataset['data_source']} split `{dataset['split']}`, {dataset['num_studies_evaluated']} of "
        f"{dataset['num_studies_in_split']} studies ({dataset['num_with_recorded_gaze']} with recorded gaze).",
        f"Decoding: {'greedy' if decoding['num_beams'] == 1 else 'beam search'} (no sampling), "
        f"max_new_tokens={decoding['max_new_tokens']}, num_beams={decoding['num_beams']}; gaze: the model's "
        "predicted scanpath.",
    ]
    for name, evaluation in evaluations.items():
        lines += ["", f"### {name}", "", markdown_table(evaluation["table"]).rstrip("\n")]
    first = next(iter(evaluations))
    for name, comparison in comparisons.items():
        lines += ["", f"### {name} against {first}", "", markdown_comparison(comparison, name, first).rstrip("\n")]
    lines += [
        "",
        "### Headline metrics",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, evaluation in evaluations.items():
        headline = evaluation["headline"]
        lines.append(f"| {name} | " + " | ".join(format_value(headline.get(column)) for column in columns) + " |")
    protocol = next(iter(evaluations.values()))["protocol"]
    efficacy = protocol["clinical_efficacy"]
    nlg = protocol["report_nlg"]
    lines += [
        "",
        f"- NLG: normalization `{nlg['normalization']}`; {nlg['implementation'].rstrip('.')}.",
        f"- Clinical efficacy: labeler `{efficacy['labeler']}`, {len(efficacy['observations'])} observations, "
        f"uncertain as {efficacy['uncertain_as']}, blank as {efficacy['blank_as']}, zero_division "
        f"{efficacy['zero_division']}; macro F1 over the 14 observations; example-based F1 as PromptMRG.",
        "- Laterality accuracy: over findings positive in both reports with a side in the reference (n/a: none).",
    ]
    if "scanpath" in protocol:
        lines.append(
            f"- Scanpath: predicted vs recorded fixations in original pixels, {protocol['scanpath']['pairs']} "
            "studies with recorded gaze (protocol: docs/evaluation.md)."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    """Runs the evaluation; returns the content of results.json. --output must be new, empty or an earlier
    evaluation's folder holding only what it wrote; it is replaced whole at the end (files.write_output_folder)."""
    arguments = parse_arguments(argv)
    model_dirs = check_model_dirs(arguments.model)
    evaluations = write_output_folder(
        arguments.output, "--output", "evaluate_models.py", lambda output: evaluate_into(output, arguments, model_dirs)
    )
    logger.info(f"Wrote {arguments.output}/results.json, results.md and per_study/")
    return evaluations


def evaluate_into(output: Path, arguments: argparse.Namespace, model_dirs: list[Path]) -> dict:
    """Evaluates every model and writes results.json, results.md and per_study/ into `output`; returns the results."""
    split, dataset = load_split(arguments)
    decoding = {
        "max_new_tokens": arguments.max_new_tokens,
        "num_beams": arguments.num_beams,
        "batch_size": arguments.batch_size,
        "do_sample": False,
    }
    evaluations, reports = {}, {}
    clinical_metrics = [] if arguments.clinical_metrics == "none" else arguments.clinical_metrics.split(",")
    table_options = {
        "clinical_metrics": clinical_metrics,
        "normalization": arguments.normalization,
        "uncertain_as": arguments.uncertain_as,
        "num_resamples": arguments.num_resamples,
    }
    for name, model_dir in zip(model_names(model_dirs), model_dirs):
        logger.info(f"Evaluating {name} ({model_dir}) on {dataset['num_studies_evaluated']} studies")
        records, results = evaluate_model(model_dir, split, decoding, arguments.normalization, arguments.uncertain_as)
        per_study = Path("per_study") / f"{name}.jsonl"
        write_jsonl(output / per_study, records)
        reports[name] = [record["generated_report"] for record in records]
        references = [record["reference_report"] for record in records]
        evaluations[name] = {
            "model_dir": str(model_dir),
            "table": report_table(reports[name], references, scores=results, **table_options),
            "headline": headline_metrics(results),
            "metrics": results,
            "decoding": decoding,
            "dataset": dataset,
            "protocol": metric_protocol(results),
            "per_study": str(per_study),
            "empty_reports": sum(1 for record in records if not record["generated_report"].strip()),
        }
    first, *others = reports
    comparisons = {name: compare_table(reports[name], reports[first], references, **table_options) for name in others}
    for name, comparison in comparisons.items():
        evaluations[name]["comparison_with_first"] = comparison
    write_text_atomically(output / "results.json", json.dumps(evaluations, indent=2, default=str) + "\n")
    write_text_atomically(output / "results.md", results_table(evaluations, comparisons, dataset, decoding))
    return evaluations


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    run_command(main, Path(__file__).name, sys.argv[1:])
