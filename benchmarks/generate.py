"""Greedy generation throughput of a saved Gaze2Report model against its bare language model.

The bare model is the Gaze2Report model's own language model and head (the same weights, the same dtype and attention)
as a plain causal LM, given the same prompts with every <gaze> placeholder replaced by an ordinary text token: the
same prompt length, without the image. Both generate exactly `--max_new_tokens` tokens (EOS suppressed until then),
greedily, for each batch size and cache (`dynamic`, `static`). Per case the two models' runs alternate; each run is
timed twice, for one new token (prefill, with the image encoding for Gaze2Report) and for all of them, so that a
decode step's time is (all - one) / (new tokens - 1). Reported: tokens/s (batch x new tokens / the whole run), ms per
decode step, prefill ms, and the ratio Gaze2Report tokens/s / bare tokens/s pair by pair with its median and spread.

    python benchmarks/generate.py --model outputs/demo/model --batch_sizes 1 40 \
        --output benchmarks/results/generate.json
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's helpers

from train_step import (  # noqa: E402
    build_baseline,
    check_arguments,
    ratio_spread,
    synchronize,
    write_json_atomically,
)

from modeling_gaze2report import Gaze2ReportForConditionalGeneration, Gaze2ReportProcessor  # noqa: E402
from modeling_gaze2report.data import make_synthetic_dataset  # noqa: E402
from modeling_gaze2report.precision_gaze2report import cast_language_model, resolve_language_model_dtype  # noqa: E402

CACHES = ("dynamic", "static")


def load_model(directory: Path, language_model_dtype: str, device: torch.device):
    """The saved model in eval mode with its language model in the chosen dtype, its processor, and the bare
    language model with the same weights."""
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"--model {directory} holds no config.json: not a saved Gaze2Report model directory")
    model = Gaze2ReportForConditionalGeneration.from_pretrained(directory).to(device).eval()
    processor = Gaze2ReportProcessor.from_pretrained(directory)
    dtype, reason = resolve_language_model_dtype(language_model_dtype, device)
    cast_language_model(model, dtype)
    bare = build_baseline(model, device, dtype).eval()
    bare.set_attn_implementation(model.get_decoder().config._attn_implementation)
    return model, processor, bare, dtype, reason


def make_inputs(model, processor, batch_size: int, seed: int, device: torch.device) -> tuple[dict, dict]:
    """Gaze2Report's generation inputs for `batch_size` synthetic studies, and the bare model's: the same input_ids
    with the <gaze> placeholders replaced by the instruction's first token."""
    studies = make_synthetic_dataset(
        batch_size, seed=seed, image_size=model.config.image_size, split_fractions=(1.0, 0.0, 0.0)
    )["train"]
    inputs = processor(images=[study["image"] for study in studies])
    ordinary_token_id = processor.tokenizer.encode(processor.instruction, add_special_tokens=False)[0]
    input_ids = inputs["input_ids"]  # (batch, prompt length)
    bare_inputs = {
        "input_ids": input_ids.masked_fill(input_ids == model.config.gaze_token_id, ordinary_token_id),
        "attention_mask": inputs["attention_mask"],
    }
    gaze_inputs = {name: inputs[name] for name in ("input_ids", "attention_mask", "pixel_values")}
    move = lambda batch: {name: tensor.to(device) for name, tensor in batch.items()}  # noqa: E731
    return move(gaze_inputs), move(bare_inputs)


@torch.no_grad()
def timed_generate(model, inputs: dict, new_tokens: int, cache: str, pad_token_id: int, device) -> tuple:
    """Seconds for one greedy run of exactly `new_tokens` tokens, and the generated ids."""
    options = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": pad_token_id,
    }
    if cache == "static":
        options["cache_implementation"] = "static"
    synchronize(device)
    start = time.perf_counter()
    sequences = model.generate(**inputs, **options)
    synchronize(device)
    return time.perf_counter() - start, sequences[:, -new_tokens:]


def measure_case(
    model,
    bare,
    gaze_inputs: dict,
    bare_inputs: dict,
    new_tokens: int,
    cache: str,
    repeats: int,
    pad_token_id: int,
    device,
) -> dict:
    """Alternating runs of both models (after one warm-up run each) for one batch size and cache."""
    runs = {"gaze2report": (model, gaze_inputs), "bare": (bare, bare_inputs)}
    for generator, inputs in runs.values():
        timed_generate(generator, inputs, new_tokens, cache, pad_token_id, device)
    seconds = {name: {"prefill": [], "whole": []} for name in runs}
    order = list(runs)
    for repeat in range(repeats):
        for name in order if repeat % 2 == 0 else order[::-1]:
            generator, inputs = runs[name]
            seconds[name]["prefill"].append(timed_generate(generator, inputs, 1, cache, pad_token_id, device)[0])
            whole, generated = timed_generate(generator, inputs, new_tokens, cache, pad_token_id, device)
            seconds[name]["whole"].append(whole)
            if generated.shape[1] != new_tokens:
                raise RuntimeError(f"{name} generated {generated.shape[1]} tokens, not {new_tokens}")
    batch_size = gaze_inputs["input_ids"].shape[0]
    result = {}
    for name, timings in seconds.items():
        whole, prefill = statistics.median(timings["whole"]), statistics.median(timings["prefill"])
        result[name] = {
            "tokens_per_second": batch_size * new_tokens / whole,
            "whole_run_s": timings["whole"],
            "prefill_ms": 1000 * prefill,
            "decode_step_ms": 1000 * (whole - prefill) / max(1, new_tokens - 1),
        }
    ratios = [
        bare_whole / gaze_whole
        for gaze_whole, bare_whole in zip(seconds["gaze2report"]["whole"], seconds["bare"]["whole"])
    ]
    return {
        **result,
        "throughput_ratio_pairs": ratios,
        "throughput_ratio": ratio_spread(ratios)["median"],
        "throughput_ratio_spread": ratio_spread(ratios),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("outputs/demo/model"), help="a saved Gaze2Report model")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 40])
    parser.add_argument("--caches", nargs="+", choices=CACHES, default=list(CACHES))
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model and case, after one warm-up")
    parser.add_argument("--language_model_dtype", default="auto", help="auto, float32, bfloat16 or float16")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the results (written atomically)")
    args = parser.parse_args(argv)
    check_arguments(parser, args, {"max_new_tokens": 2, "repeats": 1, "seed": 0})
    if min(args.batch_sizes) < 1:
        parser.error(f"--batch_sizes must all be >= 1, got {args.batch_sizes}")
    return args


def main(argv=None) -> dict:
    """Runs every case, prints a Markdown table and returns (and with --output writes) the JSON results."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, processor, bare, dtype, reason = load_model(args.model, args.language_model_dtype, device)
    pad_token_id = processor.tokenizer.pad_token_id
    report = {
        "model": str(args.model),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()})",
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "language_model_dtype": {"dtype": str(dtype).removeprefix("torch."), "reason": reason},
        "attn_implementation": model.get_decoder().config._attn_implementation,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "load_average_1min_before": os.getloadavg()[0],
        "cases": [],
    }
    for batch_size in args.batch_sizes:
        gaze_inputs, bare_inputs = make_inputs(model, processor, batch_size, args.seed, device)
        for cache in args.caches:
            case = measure_case(
                model, bare, gaze_inputs, bare_inputs, args.max_new_tokens, cache, args.repeats, pad_token_id, device
            )
            report["cases"].append(
                {"batch_size": batch_size, "prompt_length": gaze_inputs["input_ids"].shape[1], "cache": cache, **case}
            )
            print(
                f"batch {batch_size}, {cache} cache: Gaze2Report {case['gaze2report']['tokens_per_second']:.1f} "
                f"tokens/s, bare {case['bare']['tokens_per_second']:.1f} tokens/s, ratio "
                f"{case['throughput_ratio']:.3f}",
                flush=True,
            )
            if args.output is not None:  # a run cut short keeps the cases measured so far
                write_json_atomically(args.output, report)
    report["load_average_1min_after"] = os.getloadavg()[0]
    print(markdown_table(report))
    if args.output is not None:
        write_json_atomically(args.output, report)
    return report


def markdown_table(report: dict) -> str:
    lines = [
        "| batch | cache | prompt tokens | Gaze2Report tokens/s | bare tokens/s | ratio: median (min-max) "
        "| decode step ms, Gaze2Report / bare | prefill ms, Gaze2Report / bare |",
        "|---:|---|---:|---:|---:|---|---|---|",
    ]
    for case in report["cases"]:
        gaze, bare, spread = case["gaze2report"], case["bare"], case["throughput_ratio_spread"]
        lines.append(
            f"| {case['batch_size']} | {case['cache']} | {case['prompt_length']} | "
            f"{gaze['tokens_per_second']:.1f} | {bare['tokens_per_second']:.1f} | "
            f"{spread['median']:.3f} ({spread['min']:.3f}-{spread['max']:.3f}) | "
            f"{gaze['decode_step_ms']:.1f} / {bare['decode_step_ms']:.1f} | "
            f"{gaze['prefill_ms']:.1f} / {bare['prefill_ms']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
