"""Greedy generation throughput of a saved Gaze2Report model against the baseline (its own language model on prompts
of the same length, without the image), per batch size and cache; README.md gives the method and what is reported.

    python -m benchmarks.generate --model outputs/demo/model --batch_sizes 1 40 --output generate.json
"""

import os
from pathlib import Path

import torch

from modeling_gaze2report import Gaze2ReportForConditionalGeneration, Gaze2ReportProcessor
from modeling_gaze2report.precision_gaze2report import cast_language_model, resolve_language_model_dtype

from . import common


def load_model(directory: Path, language_model_dtype: str, device: torch.device) -> tuple:
    """`(model, processor, bare, reason)`: the saved model in eval mode with its language model in the dtype
    `resolve_language_model_dtype` picks (and its reason), its processor, and the baseline with the same weights."""
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"--model {directory} holds no config.json: not a saved Gaze2Report model directory")
    model = Gaze2ReportForConditionalGeneration.from_pretrained(directory).to(device).eval()
    dtype, reason = resolve_language_model_dtype(language_model_dtype, device)
    cast_language_model(model, dtype)
    return model, Gaze2ReportProcessor.from_pretrained(directory), common.build_baseline(model).eval(), reason


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__)
    parser.add_argument("--model", type=Path, default=Path("outputs/demo/model"), help="a saved Gaze2Report model")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 40])
    parser.add_argument("--caches", nargs="+", choices=common.CACHES, default=list(common.CACHES))
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model and case, after one warm-up")
    parser.add_argument("--language_model_dtype", default="auto", help="auto, float32, bfloat16 or float16")
    return common.parse_arguments(parser, argv, {"batch_sizes": 1, "max_new_tokens": 2, "repeats": 1})


def main(argv=None) -> dict:
    """Runs every case, prints a Markdown table and returns (and with --output writes) the JSON results; the JSON is
    rewritten after each case, so that a run cut short keeps what it measured."""
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, processor, bare, reason = load_model(args.model, args.language_model_dtype, device)
    report = {
        "model": str(args.model),
        "device": common.describe_device(device),
        **common.environment(args),
        "language_model_dtype": {"dtype": str(bare.dtype).removeprefix("torch."), "reason": reason},
        "attn_implementation": bare.config._attn_implementation,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "cases": [],
    }
    rows = []
    for batch_size in args.batch_sizes:
        runs = common.make_generation_inputs(model, processor, bare, batch_size, args.seed)
        for cache in args.caches:
            pad_token_id = processor.tokenizer.pad_token_id
            case = common.compare_generation(runs, args.max_new_tokens, cache, args.repeats, pad_token_id)
            prompt_length = runs["gaze2report"][1]["input_ids"].shape[1]
            report["cases"].append({"batch_size": batch_size, "prompt_length": prompt_length, "cache": cache, **case})
            gaze, bare_figures, spread = case["gaze2report"], case["bare"], case["throughput_ratio_spread"]
            rows.append([batch_size, cache, prompt_length, f"{gaze['tokens_per_second']:.1f}",
                         f"{bare_figures['tokens_per_second']:.1f}",
                         f"{spread['median']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})",
                         f"{gaze['decode_step_ms']:.1f} / {bare_figures['decode_step_ms']:.1f}",
                         f"{gaze['prefill_ms']:.1f} / {bare_figures['prefill_ms']:.1f}"])  # fmt: skip
            print(f"batch {batch_size}, {cache} cache: throughput ratio {case['throughput_ratio']:.3f}", flush=True)
            if args.output is not None:
                common.write_json(args.output, report)
    report["load_average_1min_after"] = os.getloadavg()[0]
    columns = ["batch", "cache", "prompt tokens", "Gaze2Report tokens/s", "bare tokens/s", "ratio: median (min-max)",
               "decode step ms, Gaze2Report / bare", "prefill ms, Gaze2Report / bare"]  # fmt: skip
    print(common.markdown_table(columns, rows))
    if args.output is not None:
        common.write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
