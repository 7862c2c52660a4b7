"""How long `gaze2report evaluate` takes to score report pairs with every offline column and its interval: BLEU-1..4,
METEOR, ROUGE-L, CIDEr and the offline labeler's CheXpert F1, each with a 95% bootstrap interval over studies
(`evaluation.report_table`), and the paired comparison of two models on the same studies (`compare_table`).

    python -m benchmarks.report_scoring --num-pairs 1000 --output benchmarks/results/report_scoring.json

The pairs are synthetic studies' reports (the synthetic world's report writer): the references are the reports of
studies 0..N-1, model a's reports are those of other draws of the same studies' findings' kinds, model b's the
reports of unrelated studies. The first scoring in a process starts METEOR's jar (its paraphrase tables load then);
it is timed separately."""

import sys
import time

import numpy as np
import torch

from benchmarks.common import benchmark_parser, cpu_name, describe_device, environment, parse_arguments, write_json
from modeling_gaze2report.data.synthetic import make_synthetic_study
from modeling_gaze2report.evaluation.meteor import meteor_scorer
from modeling_gaze2report.evaluation.report_table import compare_table, report_table


def synthetic_reports(num_pairs: int, seed: int) -> dict:
    """References, model a's reports (the same findings, other wording and details) and model b's (other studies)."""
    references, same_findings, other_studies = [], [], []
    for index in range(num_pairs):
        example, truth = make_synthetic_study(seed=(seed, index), image_size=64)
        kinds = sorted({finding.kind for finding in truth.findings})
        references.append(example["report"])
        redrawn, _ = make_synthetic_study(seed=(seed, index, 1), image_size=64, finding_kinds=kinds or None)
        same_findings.append(redrawn["report"])
        other, _ = make_synthetic_study(seed=(seed + 1, index), image_size=64)
        other_studies.append(other["report"])
    return {"references": references, "a": same_findings, "b": other_studies}


def main(argv=None) -> dict:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--num-pairs", type=int, default=1000)
    parser.add_argument("--num-resamples", type=int, default=1000)
    arguments = parse_arguments(parser, argv, {"num_pairs": 2, "num_resamples": 1})
    figures = {"device": describe_device(torch.device("cpu")), "cpu": cpu_name(), **environment(arguments)}
    started = time.perf_counter()
    reports = synthetic_reports(arguments.num_pairs, arguments.seed)
    figures["data_s"] = time.perf_counter() - started
    started = time.perf_counter()
    meteor_scorer().compute_score({0: ["a b"]}, {0: ["a b"]})  # starts the jar once, as the first scoring would
    figures["meteor_start_s"] = time.perf_counter() - started
    started = time.perf_counter()
    table = report_table(reports["a"], reports["references"], num_resamples=arguments.num_resamples)
    figures["table_s"] = time.perf_counter() - started
    started = time.perf_counter()
    comparison = compare_table(reports["a"], reports["b"], reports["references"], num_resamples=arguments.num_resamples)
    figures["comparison_s"] = time.perf_counter() - started
    figures.update(
        num_pairs=arguments.num_pairs,
        num_resamples=arguments.num_resamples,
        distinct_references=len(set(reports["references"])),
        mean_reference_words=float(np.mean([len(text.split()) for text in reports["references"]])),
        columns=table["columns"],
        comparison={column: cell for column, cell in comparison["columns"].items()},
        command="python -m benchmarks.report_scoring " + " ".join(sys.argv[1:] if argv is None else argv),
    )
    print(
        f"{arguments.num_pairs} pairs, {arguments.num_resamples} resamples: table with intervals "
        f"{figures['table_s']:.1f} s, paired comparison {figures['comparison_s']:.1f} s (METEOR's jar started in "
        f"{figures['meteor_start_s']:.1f} s)"
    )
    if arguments.output is not None:
        write_json(arguments.output, figures)
    return figures


if __name__ == "__main__":
    main()
