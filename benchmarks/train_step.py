"""Training-step cost of Gaze2Report against the baseline (its own language model with the same LoRA, without vision
or gaze) on the same token sequences, on the CPU in float32; README.md gives the method and what is reported.

    python -m benchmarks.train_step --setting tiny demo --threads 2 --output train_step.json
"""

import os

import torch

from modeling_gaze2report.presets import build_from_preset

from . import common

SETTINGS = {"tiny": "tiny", "demo": "demo-smollm2"}  # setting: the preset it builds


def benchmark_setting(setting: str, args) -> dict:
    """One setting's record: its preset's model against the baseline (`common.compare_training`), with the
    Gaze2Report forward pass broken down (`common.forward_breakdown`)."""
    torch.manual_seed(args.seed)
    model, processor = build_from_preset(SETTINGS[setting])
    if args.attn_implementation is not None:
        model.get_decoder().set_attn_implementation(args.attn_implementation)
    runs, record = common.prepare_training(model, processor, args.batch_size, args.seed)
    comparison = common.compare_training(runs, args.warmup, args.steps)
    gaze_model, _, gaze_batch = runs["gaze2report"]
    comparison["gaze2report"]["forward_breakdown_ms"] = common.forward_breakdown(gaze_model, gaze_batch, args.steps)
    return {"setting": setting, **record, **comparison}


def markdown_tables(results: list[dict]) -> str:
    """Per setting and model: the step time, throughput, memory and overhead; then the forward pass's parts."""
    rows = []
    for result in results:
        spread = result["overhead_ratio_spread"]
        for name, label, overhead in (
            ("baseline", "LLM + LoRA (baseline)", "1.00x"),
            ("gaze2report", "Gaze2Report", f"{spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})"),
        ):
            run = result[name]
            rows.append([result["setting"], f"{label}, {result['attn_implementation']} attention",
                         f"{result['batch_size']} x {result['sequence_length']}", f"{run['median_step_ms']:.1f}",
                         f"{run['tokens_per_second']:.0f}", f"{run['peak_memory_mb']:.0f}",
                         f"{run['trainable_parameters']:,}", overhead])  # fmt: skip
    columns = ["setting", "model", "batch x tokens", "median step (ms)", "tokens/s", "peak memory added (MB)",
               "trainable params", "overhead, pair by pair: median (min-max)"]  # fmt: skip
    parts = ["forward", *common.FORWARD_PARTS, "other"]
    breakdowns = [(result["setting"], result["gaze2report"]["forward_breakdown_ms"]) for result in results]
    part_rows = [
        [setting] + [f"{times[part]:.1f}" if part in times else "-" for part in parts] for setting, times in breakdowns
    ]
    return "\n\n".join([common.markdown_table(columns, rows), "Gaze2Report forward pass (median ms):",
                        common.markdown_table(["setting", *parts], part_rows)])  # fmt: skip


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__)
    parser.add_argument("--setting", nargs="+", choices=SETTINGS, default=["tiny"], help="one or more settings")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before measuring, not counted")
    parser.add_argument("--attn_implementation", help="both language models' attention (eager, sdpa, ...)")
    return common.parse_arguments(parser, argv, {"batch_size": 1, "steps": 1, "warmup": 0})


def main(argv=None) -> dict:
    """Runs the benchmark, prints the Markdown tables and returns (and with --output writes) the JSON results."""
    args = parse_args(argv)
    report = {**common.environment(args), "steps": args.steps, "warmup": args.warmup}
    report["results"] = [benchmark_setting(setting, args) for setting in dict.fromkeys(args.setting)]
    report["load_average_1min_after"] = os.getloadavg()[0]
    print(markdown_tables(report["results"]))
    if args.output is not None:
        common.write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
