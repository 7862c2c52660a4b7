"""Training-step cost of Gaze2Report against the baseline (its own language model with the same LoRA, without vision
or gaze) on the same token sequences, on the CPU in float32; or, with --variants, the demo's stage-2 step as the
recipe ran it at bcfcf4b ("today") beside each change that makes it cheaper, on the same batch from the same weights.
README.md gives the method and what is reported.

    python -m benchmarks.train_step --setting tiny demo --threads 2 --output train_step.json
    python -m benchmarks.train_step --setting demo --threads 1 --variants today no_cache compiled --output steps.json
"""

import contextlib
import copy
import json
import os
import random
import statistics
import time

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from modeling_gaze2report.data import Gaze2ReportCollator
from modeling_gaze2report.demo.run import BUDGETS, demo_dataset
from modeling_gaze2report.lora import apply_lora
from modeling_gaze2report.precision_gaze2report import lower_language_model_precision, resolve_language_model_dtype
from modeling_gaze2report.presets import build_from_preset
from modeling_gaze2report.processing_gaze2report import Gaze2ReportProcessor
from modeling_gaze2report.training import DataArguments, freeze_tower_parameters_without_gradient, scored_positions
from modeling_gaze2report.training.recipe import MODULE_PARTS
from modeling_gaze2report.training.trainer import (
    compiled_decoder_layers,
    fused_optimizer_supported,
    part_parameter_groups,
    training_inputs,
)

from . import common

SETTINGS = {"tiny": "tiny", "demo": "demo-smollm2"}  # setting: the preset it builds (and the demo budget it runs)
SHORT_PROMPT_TEMPLATE = "{gaze}\nReport:"
RECORDED_VARIABLES = (  # the instruction set, threads and compiler cache a run had
    "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS",
    "TORCHINDUCTOR_CACHE_DIR",
)  # fmt: skip
TODAY = {
    "use_cache": True, "fused_adamw": False, "attn_implementation": None, "compiled": False, "short_prompt": False,
    "float32": False,
}  # fmt: skip
# variant: (what it changes against today's step, its settings); each changes one thing, but `compiled` (which needs
# no cache), `combined` (the trainer's defaults with compilation) and `float32` (the yardstick of rounding)
VARIANTS = {
    "today": ("the demo's stage-2 step at bcfcf4b", {}),
    "no_cache": ("no key/value cache built in the training forward (use_cache=False)", {"use_cache": False}),
    "fused_adamw": ("AdamW fused into one kernel call", {"fused_adamw": True}),
    "sdpa": ("sdpa attention instead of the demo's", {"attn_implementation": "sdpa"}),
    "compiled": ("decoder layers compiled (torch.compile, dynamic shapes; needs use_cache=False)",
                 {"compiled": True, "use_cache": False}),
    "short_prompt": (f"the prompt {SHORT_PROMPT_TEMPLATE!r}: the instruction sentence left out",
                     {"short_prompt": True}),
    "combined": ("no_cache + fused_adamw + compiled: the trainer's defaults with compilation on",
                 {"use_cache": False, "fused_adamw": True, "compiled": True}),
    "float32": ("the language model in float32 whatever dtype the run picks: the yardstick of rounding differences",
                {"float32": True}),
}  # fmt: skip


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


def demo_batch_studies(setting: str, seed: int, batch_size: int) -> tuple[list[dict], object]:
    """`batch_size` studies drawn (by `seed`) from the demo's training split of the setting's budget, and the split."""
    budget = BUDGETS[SETTINGS[setting]]
    train = demo_dataset(budget, seed, budget.num_studies)["train"]
    if batch_size > len(train):
        raise ValueError(f"--batch_size {batch_size} exceeds the {len(train)} training studies of the {setting} demo")
    rows = random.Random(seed).sample(range(len(train)), batch_size)
    return [train[row] for row in rows], train


def short_prompt_processor(processor):
    """`processor` with the prompt `SHORT_PROMPT_TEMPLATE` (the visual-gaze tokens, then "Report:")."""
    return Gaze2ReportProcessor(
        processor.image_processor,
        processor.tokenizer,
        prompt_template=SHORT_PROMPT_TEMPLATE,
        gaze_token=processor.gaze_token,
        num_gaze_tokens=processor.num_gaze_tokens,
        max_fixations=processor.max_fixations,
        fixation_merge_radius=processor.fixation_merge_radius,
    )


def padded_positions(processors: dict, train, budget, seed: int) -> dict:
    """Per prompt and sampler, the positions the demo's stage-2 steps run (batch x the longest sequence of each batch,
    over `budget.report_steps` batches of `budget.batch_size`) against the sequences' own tokens: "random" (the
    Trainer's default: a random permutation) and "group_by_length" (transformers' `get_length_grouped_indices`: random
    mega-batches of 50 batches, each sorted by length); an epoch's order repeats where the steps need more studies."""
    reports = [" " + report.strip() for report in train["report"]]
    max_report_tokens = DataArguments.max_report_tokens
    figures = {}
    for prompt, processor in processors.items():
        report_ids = processor.tokenizer(reports, add_special_tokens=False)["input_ids"]
        lengths = [len(processor.prompt_ids) + min(len(ids), max_report_tokens) + 1 for ids in report_ids]  # + EOS
        orders = {
            "random": torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist(),
            "group_by_length": get_length_grouped_indices(
                lengths, budget.batch_size, generator=torch.Generator().manual_seed(seed)
            ),
        }
        figures[prompt] = {"prompt_tokens": len(processor.prompt_ids)}
        studies_seen = budget.report_steps * budget.batch_size
        for sampler, order in orders.items():
            order = (order * -(-studies_seen // len(order)))[:studies_seen]  # an epoch's order, repeated as needed
            batches = [order[i : i + budget.batch_size] for i in range(0, len(order), budget.batch_size)]
            positions = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
            tokens = sum(lengths[i] for batch in batches for i in batch)
            share = 1 - tokens / positions
            figures[prompt][sampler] = {"positions": positions, "tokens": tokens, "padding_share": share}
    return figures


def variant_run(name: str, base_model, processors: dict, studies: list[dict], budget, dtype, seed: int, stack):
    """`(model, step, batch)` of one variant: a copy of `base_model` set up as stage 2 trains it (LoRA of the demo
    budget on the language model, the vision tower frozen, the language model in `dtype`, AdamW over
    `part_parameter_groups` at the budget's rate), its batch collated from `studies`, and its step: forward at the
    scored positions, backward, gradient clipping at 1.0 (Trainer's default) and the optimizer's step. `stack` holds the
    compiled layers until the run ends."""
    settings = {**TODAY, **VARIANTS[name][1]}
    model = copy.deepcopy(base_model)
    if settings["attn_implementation"] is not None:
        model.get_decoder().set_attn_implementation(settings["attn_implementation"])
    torch.manual_seed(seed)  # the same LoRA initialisation in every variant
    peft_model = apply_lora(
        model, r=budget.lora_r, alpha=2 * budget.lora_r, dropout=0.0, train_vision_tower=False, save_vision_tower=True
    )
    freeze_tower_parameters_without_gradient(model.model.vision_tower, model.config)
    if dtype != torch.float32 and not settings["float32"]:
        lower_language_model_precision(model, dtype)
    rates = {**dict.fromkeys(MODULE_PARTS, budget.learning_rate), "vision_tower": budget.learning_rate}
    groups = part_parameter_groups(peft_model, rates, budget.learning_rate, 0.0)
    fused = settings["fused_adamw"] and fused_optimizer_supported(groups)
    optimizer = torch.optim.AdamW(groups, fused=fused)
    trainable = [parameter for group in groups for parameter in group["params"]]
    processor = processors["short" if settings["short_prompt"] else "default"]
    collator = Gaze2ReportCollator(
        processor, max_report_tokens=DataArguments.max_report_tokens, include_fixation_findings=True
    )
    batch = dict(collator(studies))
    if settings["use_cache"]:  # today's Trainer: the head at the scored positions, the cache the model's default
        inputs = {**batch, "logits_to_keep": scored_positions(batch["labels"])}
    else:
        inputs = training_inputs(batch)
    if settings["compiled"]:
        stack.enter_context(compiled_decoder_layers(model.get_decoder()))

    def step() -> float:
        loss = peft_model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    peft_model.train()
    return peft_model, step, batch


def time_variant_steps(steps: dict, warmup: int, rounds: int) -> dict:
    """Per variant the seconds and losses of `warmup` steps each (the first step of a compiled variant compiles), then
    of `rounds` rounds in which every variant steps once, in reversed order every other round."""
    timed = {name: {"warmup_seconds": [], "seconds": [], "losses": []} for name in steps}
    for name, step in steps.items():
        for _ in range(warmup):
            started = time.perf_counter()
            timed[name]["losses"].append(step())
            timed[name]["warmup_seconds"].append(time.perf_counter() - started)
    for round_index in range(rounds):
        for name in common.alternating(list(steps), round_index):
            started = time.perf_counter()
            timed[name]["losses"].append(steps[name]())
            timed[name]["seconds"].append(time.perf_counter() - started)
    return timed


def benchmark_variants(setting: str, args) -> dict:
    """The `--variants` record of one setting: the demo budget's stage-2 step in each variant on one batch of the
    demo's training studies, every variant from the same weights; per variant the step times, the losses step by step
    and the pair-by-pair ratio today / variant; and the padded positions of the demo's whole stage 2 per prompt and
    sampler (`padded_positions`)."""
    budget = BUDGETS[SETTINGS[setting]]
    dtype, dtype_reason = resolve_language_model_dtype(args.language_model_dtype or budget.language_model_dtype)
    torch.manual_seed(args.seed)
    base_model, processor = build_from_preset(SETTINGS[setting])
    default_attention = (
        args.attn_implementation or budget.attn_implementation or base_model.get_decoder().config._attn_implementation
    )
    base_model.get_decoder().set_attn_implementation(default_attention)
    base_model.config.freeze_vision_tower = False  # stage 1 trained it; stage 2 freezes it through apply_lora
    processors = {"default": processor, "short": short_prompt_processor(processor)}
    studies, train = demo_batch_studies(setting, args.seed, args.batch_size)
    names = list(dict.fromkeys(["today", *args.variants]))
    with contextlib.ExitStack() as stack:
        runs = {
            name: variant_run(name, base_model, processors, studies, budget, dtype, args.seed, stack) for name in names
        }
        timed = time_variant_steps({name: step for name, (_, step, _) in runs.items()}, args.warmup, args.steps)
    today = timed["today"]
    variants = {}
    for name, (_, _, batch) in runs.items():
        run = timed[name]
        batch_size, sequence_length = batch["input_ids"].shape
        variants[name] = {
            "change": VARIANTS[name][0],
            "sequence_length": sequence_length,
            "positions": batch_size * sequence_length,
            "scored_positions": int(scored_positions(batch["labels"]).sum()),
            "median_step_ms": 1000 * statistics.median(run["seconds"]),
            "step_ms": [1000 * seconds for seconds in run["seconds"]],
            "warmup_step_ms": [1000 * seconds for seconds in run["warmup_seconds"]],
            "losses": run["losses"],
            "first_loss_difference": run["losses"][0] - today["losses"][0],
            "max_loss_difference": max(abs(a - b) for a, b in zip(run["losses"], today["losses"])),
            **common.paired_ratios("speedup", today["seconds"], run["seconds"]),
        }
    return {
        "setting": setting,
        "mode": "variants",
        "device": common.describe_device(torch.device("cpu")),
        "language_model_dtype": {"dtype": str(dtype).removeprefix("torch."), "reason": dtype_reason},
        "attn_implementation": default_attention,
        "batch_size": args.batch_size,
        "study_ids": [study.get("id") for study in studies],
        "lora": {"r": budget.lora_r, "alpha": 2 * budget.lora_r, "dropout": 0.0},
        "environment": {name: os.environ.get(name) for name in RECORDED_VARIABLES},
        "variants": variants,
        "padded_positions": padded_positions(processors, train, budget, args.seed),
    }


def variants_table(results: list[dict]) -> str:
    """Per setting, device and variant: the step time, the ratio to today's step and the losses."""
    rows = []
    for result in results:
        dtype = result["language_model_dtype"]["dtype"]
        for name, run in result["variants"].items():
            spread = run["speedup_spread"]
            rows.append([result["setting"], f"{result['device']}, {dtype}", name,
                         f"{result['batch_size']} x {run['sequence_length']}", f"{run['median_step_ms']:.1f}",
                         f"{spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})",
                         f"{run['losses'][0]:.5f}", f"{run['first_loss_difference']:+.1e}",
                         f"{run['max_loss_difference']:.1e}"])  # fmt: skip
    columns = ["setting", "device, LM dtype", "variant", "batch x tokens", "median step (ms)",
               "today / variant, pair by pair: median (min-max)", "first loss", "first loss - today's",
               "largest loss difference, step by step"]  # fmt: skip
    return common.markdown_table(columns, rows)


def kept_results(output, results: list[dict]) -> list[dict]:
    """The results already in the JSON file `output` but those of the setting, mode and device of one of `results`,
    each with the run it was measured in (`run`: the file's own figures for a result written without one), then
    `results`."""
    if not output.is_file():
        return results
    written = json.loads(output.read_text())
    run = {name: value for name, value in written.items() if name != "results"}
    new = {(result["setting"], result.get("mode"), result["device"]) for result in results}
    kept = [{"run": run, **result} for result in written["results"]]
    return [result for result in kept if (result["setting"], result.get("mode"), result["device"]) not in new] + results


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__)
    parser.add_argument("--setting", nargs="+", choices=SETTINGS, default=["tiny"], help="one or more settings")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before measuring, not counted")
    parser.add_argument(
        "--attn_implementation",
        help="both language models' attention (eager, sdpa, ...); with --variants, today's (default: the demo's)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        help="time the demo budget's stage-2 step in these variants beside today's instead of the baseline comparison",
    )
    parser.add_argument(
        "--language_model_dtype",
        help="with --variants: the language model's dtype (auto: the rule's; default: the demo budget's)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the results already in --output, but for those of the same setting, mode and device",
    )
    args = common.parse_arguments(parser, argv, {"batch_size": 1, "steps": 1, "warmup": 0})
    if args.variants is not None and args.warmup < 1:
        parser.error("--variants needs --warmup >= 1: the first step compiles a compiled variant")
    if args.append and args.output is None:
        parser.error("--append needs --output")
    return args


def main(argv=None) -> dict:
    """Runs the benchmark, prints the Markdown tables and returns (and with --output writes) the JSON results."""
    args = parse_args(argv)
    environment = {**common.environment(args), "steps": args.steps, "warmup": args.warmup}
    measure = benchmark_setting if args.variants is None else benchmark_variants
    results = [measure(setting, args) for setting in dict.fromkeys(args.setting)]
    environment["load_average_1min_after"] = os.getloadavg()[0]
    for result in results:
        result["run"] = environment
    print(markdown_tables(results) if args.variants is None else variants_table(results))
    report = {**environment, "results": kept_results(args.output, results) if args.append else results}
    if args.output is not None:
        common.write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
