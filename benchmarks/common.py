"""What the benchmarks share: the machine's description, their options and JSON results, and the comparison of
Gaze2Report with the baseline in training steps and in generation.

The baseline is the Gaze2Report model's own language model and head as a plain causal LM (the same weights, dtype and
attention), fed the same token sequences with every <gaze> placeholder replaced by an ordinary text token: the same
language-model work without vision or gaze."""

import argparse
import copy
import ctypes
import gc
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

from modeling_gaze2report.data import Gaze2ReportCollator, make_synthetic_dataset
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.lora import apply_lora
from modeling_gaze2report.training import ModelArguments, scored_positions

MEGABYTE = 2**20
LORA = {"r": ModelArguments.lora_r, "alpha": ModelArguments.lora_alpha, "dropout": ModelArguments.lora_dropout}
CACHES = ("dynamic", "static")
# The modules of the Gaze2Report forward pass that hooks time; the rest (embedding lookup, placeholder scatter, the
# fixation-node head's writing into its tokens, the losses) is "other".
FORWARD_PARTS = (
    "vision_tower", "scanpath_predictor", "gaze_encoder", "projector", "fixation_head", "language_model", "lm_head"
)  # fmt: skip
TEXT_MODEL_FIELDS = (
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "tie_word_embeddings",
)  # fmt: skip


def describe_device(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture and the instruction set torch uses, e.g. "cpu (x86_64, AVX2)"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()})"


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def benchmark_parser(description: str, output_required: bool = False) -> argparse.ArgumentParser:
    """A parser with the options every model benchmark takes: --threads, --seed and --output."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=output_required, help="JSON file for the results (atomic)")
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv, minimums: dict) -> argparse.Namespace:
    """Parses `argv`; each option named in `minimums` (every value of a list) must be at least its minimum, --seed at
    least 0, --threads (when given) at least 1, and --output (when given) must not be a directory. A failure exits
    through `parser.error`."""
    args = parser.parse_args(argv)
    for name, minimum in {**minimums, "seed": 0, "threads": 1}.items():
        value = getattr(args, name)
        if value is not None and min(value if isinstance(value, list) else [value]) < minimum:
            parser.error(f"--{name} must be >= {minimum}, got {value}")
    if args.output is not None and args.output.is_dir():
        parser.error(f"--output must name a file, got the directory {args.output}")
    return args


def environment(args: argparse.Namespace) -> dict:
    """Applies --threads to torch and describes the software and the load of the machine a run measures on."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": os.getloadavg()[0],
    }


def write_json(path: Path, payload: dict) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ratio_spread(ratios: list[float]) -> dict:
    """Median, quartiles and extremes of pair-by-pair ratios."""
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "min": min(ratios), "max": max(ratios)}


def paired_ratios(name: str, numerators: list[float], denominators: list[float]) -> dict:
    """The ratios pair by pair (`{name}_pairs`), their median (`name`) and `ratio_spread` (`{name}_spread`)."""
    ratios = [numerator / denominator for numerator, denominator in zip(numerators, denominators)]
    return {f"{name}_pairs": ratios, name: statistics.median(ratios), f"{name}_spread": ratio_spread(ratios)}


def alternating(names: list[str], round_index: int) -> list[str]:
    """`names` in order in even rounds and reversed in odd ones, so that a machine's drift falls on all alike."""
    return names if round_index % 2 == 0 else names[::-1]


def markdown_table(columns: list[str], rows: list[list]) -> str:
    lines = [columns, ["---"] * len(columns), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def text_model(model) -> dict:
    """The language model's shape, from the Gaze2Report model's text config."""
    return {name: getattr(model.config.text_config, name) for name in TEXT_MODEL_FIELDS}


def build_baseline(model):
    """The Gaze2Report model's language model and head as a plain causal LM with the same weights, dtype, device and
    attention, and a config of its own (so that setting one model's attention leaves the other's alone)."""
    head = model.lm_head.weight
    with head.device:
        baseline = AutoModelForCausalLM.from_config(copy.deepcopy(model.config.text_config), dtype=head.dtype)
    baseline.base_model.load_state_dict(model.model.language_model.state_dict())
    baseline.get_output_embeddings().load_state_dict(model.lm_head.state_dict())
    baseline.set_attn_implementation(model.get_decoder().config._attn_implementation)
    return baseline


def without_placeholders(input_ids: torch.Tensor, model, processor) -> torch.Tensor:
    """`input_ids` with every <gaze> placeholder replaced by an ordinary text token, the instruction's first."""
    ordinary_token_id = processor.tokenizer.encode(processor.instruction, add_special_tokens=False)[0]
    return input_ids.masked_fill(input_ids == model.config.gaze_token_id, ordinary_token_id)


def synthetic_studies(count: int, seed: int, image_size: int) -> list[dict]:
    return list(make_synthetic_dataset(count, seed=seed, image_size=image_size, split_fractions=(1, 0, 0))["train"])


def make_training_batches(model, processor, batch_size: int, seed: int) -> tuple[dict, dict, int]:
    """A collated stage-2 batch of synthetic studies on the model's device and in its dtype (recorded gaze builds the
    graph; the fixation-node head's targets where the model has the head), the baseline's batch (the same ids without
    placeholders, the same attention mask and labels) and the number of studies with recorded gaze."""
    examples = synthetic_studies(batch_size, seed, model.config.image_size)
    num_with_gaze = sum(1 for example in examples if example["fixations"])
    if num_with_gaze == 0:
        raise ValueError(f"None of the {batch_size} synthetic studies (seed {seed}) has recorded gaze.")
    collator = Gaze2ReportCollator(
        processor, gaze_source="recorded", include_fixation_findings=model.config.use_fixation_findings
    )
    gaze_batch = {
        name: tensor.to(model.device, model.dtype) if tensor.is_floating_point() else tensor.to(model.device)
        for name, tensor in collator(examples).items()
    }
    baseline_batch = {
        "input_ids": without_placeholders(gaze_batch["input_ids"], model, processor),
        "attention_mask": gaze_batch["attention_mask"],
        "labels": gaze_batch["labels"],
    }
    return gaze_batch, baseline_batch, num_with_gaze


def extend_to_sequence_length(batch: dict, length: int, prompt_length: int) -> dict:
    """A collated training batch made exactly `length` tokens long: each row keeps its prompt (its first
    `prompt_length` tokens) and then repeats its own report tokens (EOS included) up to `length`, every position
    attended and every report position labelled. Applied to Gaze2Report's and the baseline's batches alike, it keeps
    their labels equal."""
    if prompt_length >= length:
        raise ValueError(f"The prompt holds {prompt_length} tokens: a sequence of {length} leaves no report tokens")
    report_length = length - prompt_length
    rows = []
    for row_ids, row_labels in zip(batch["input_ids"], batch["labels"]):
        report = row_ids[row_labels != -100]  # (report tokens + EOS,)
        repeated = report.repeat(-(-report_length // len(report)))[:report_length]  # (length - prompt_length,)
        rows.append(torch.cat([row_ids[:prompt_length], repeated]))
    extended = torch.stack(rows)  # (batch, length)
    labels = extended.masked_fill(torch.arange(length, device=extended.device) < prompt_length, -100)
    return {**batch, "input_ids": extended, "attention_mask": torch.ones_like(extended), "labels": labels}


def lora_layer_names(peft_model) -> list[str]:
    return sorted(name for name, module in peft_model.named_modules() if isinstance(module, LoraLayer))


def apply_same_lora(model, baseline) -> tuple:
    """`(gaze_model, baseline_model, applied)`: `apply_lora` with `LORA` on Gaze2Report as stage 2 trains it (the
    vision tower trained unless the config freezes it), LoRA of the same r, alpha and dropout on the baseline's layers
    of the same names, and what was applied (raises ValueError where the two would not wrap as many layers)."""
    gaze_model = apply_lora(model, train_vision_tower=not model.config.freeze_vision_tower, **LORA)
    gaze_layers = lora_layer_names(gaze_model)
    target_modules = sorted({name.rsplit(".", 1)[-1] for name in gaze_layers})
    config = LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], target_modules=target_modules
    )
    baseline_model = get_peft_model(baseline, config)
    if len(lora_layer_names(baseline_model)) != len(gaze_layers):
        raise ValueError(
            f"LoRA wraps {len(gaze_layers)} layers of the Gaze2Report language model but "
            f"{len(lora_layer_names(baseline_model))} of the baseline for target modules {target_modules}"
        )
    return gaze_model, baseline_model, {**LORA, "target_modules": target_modules, "layers": len(gaze_layers)}


def gaze2report_loss(peft_model, batch: dict) -> torch.Tensor:
    """The training loss as the trainer computes it: the head and the cross-entropy at the scored positions only."""
    return peft_model(**batch, logits_to_keep=scored_positions(batch["labels"])).loss


def baseline_loss(peft_baseline, batch: dict) -> torch.Tensor:
    """The baseline's loss computed as Gaze2Report's: the head and the cross-entropy at the scored positions only."""
    scored = scored_positions(batch["labels"])  # (batch, sequence)
    inputs = {name: batch[name] for name in ("input_ids", "attention_mask")}
    logits = peft_baseline(**inputs, logits_to_keep=scored).logits  # (scored positions, vocab)
    return F.cross_entropy(logits.float(), F.pad(batch["labels"], (0, 1), value=-100)[:, 1:][scored])


def same_language_model_work(runs: dict) -> dict:
    """What the training steps of `runs` ("gaze2report" and "baseline", as `prepare_training` makes them) share,
    compared; raises ValueError naming the first difference."""

    def describe(peft_model, batch) -> dict:
        body = peft_model.get_base_model().get_decoder()
        layers = [name[name.index("layers.") :] for name in lora_layer_names(peft_model) if "layers." in name]
        return {
            "sequence_shape": list(batch["input_ids"].shape),
            "scored_positions": int(scored_positions(batch["labels"]).sum()),
            "attn_implementation": body.config._attn_implementation,
            "language_model_dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in body.parameters()}),
            "lora_layers": layers,
            "language_model_parameters": sum(p.numel() for p in body.parameters()),
        }

    (gaze_model, _, gaze_batch), (baseline_model, _, baseline_batch) = runs["gaze2report"], runs["baseline"]
    gaze, baseline = describe(gaze_model, gaze_batch), describe(baseline_model, baseline_batch)
    for name, value in gaze.items():
        if value != baseline[name]:
            raise ValueError(
                f"The two models would not do the same language-model work: {name} is {value!r:.200} for "
                f"Gaze2Report and {baseline[name]!r:.200} for the baseline"
            )
    if not torch.equal(gaze_batch["labels"], baseline_batch["labels"]):
        raise ValueError("The two models would not do the same language-model work: their labels differ")
    return {**gaze, "lora_layers": len(gaze["lora_layers"])}


def release_freed_memory(device: torch.device) -> None:
    """Returns freed memory to the system, so that the next peak measures new memory rather than reused pages."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif hasattr(libc := ctypes.CDLL(None), "malloc_trim"):  # glibc
        libc.malloc_trim(0)


def process_status_bytes(field: str) -> int:
    """A size field of Linux's /proc/self/status (VmRSS, VmHWM), in bytes."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)[1]) * 1024


def measure_peak_memory(run: tuple, steps: int = 2) -> float:
    """MB that `steps` training steps of `run` (`(model, loss_function, batch)`, the optimizer's state included) add
    at their peak over the memory in use before them: CUDA's allocated bytes, or on a CPU the resident set size (its
    peak reset through Linux's /proc/self/clear_refs)."""
    device = next(run[0].parameters()).device
    release_freed_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    elif Path("/proc/self/clear_refs").exists():
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak RSS) to the current RSS
        before = process_status_bytes("VmRSS")
    else:
        raise RuntimeError("Measuring CPU peak memory needs Linux's /proc/self/clear_refs and /proc/self/status.")
    measure_interleaved({"one": run}, warmup=0, steps=steps)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else process_status_bytes("VmHWM")
    return (peak - before) / MEGABYTE


def train_step(model, loss_function, batch: dict, optimizer) -> float:
    loss = loss_function(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def measure_interleaved(runs: dict, warmup: int, steps: int) -> dict:
    """Times the training steps of several models in alternation: `runs` maps a name to `(model, loss_function,
    batch)`; after `warmup` steps each, `steps` rounds run every model once, in reversed order every other round.
    Returns per name the step seconds and losses, round by round."""
    optimizers = {
        name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        for name, (model, _, _) in runs.items()
    }
    for name, (model, loss_function, batch) in runs.items():
        model.train()
        for _ in range(warmup):
            train_step(model, loss_function, batch, optimizers[name])
    timed = {name: {"seconds": [], "losses": []} for name in runs}
    device = next(model.parameters()).device
    for round_index in range(steps):
        for name in alternating(list(runs), round_index):
            model, loss_function, batch = runs[name]
            synchronize(device)
            start = time.perf_counter()
            timed[name]["losses"].append(train_step(model, loss_function, batch, optimizers[name]))
            synchronize(device)
            timed[name]["seconds"].append(time.perf_counter() - start)
    del optimizers
    release_freed_memory(device)
    return timed


def step_summary(seconds: list[float], losses: list[float], batch: dict, peak_memory_mb: float, model) -> dict:
    batch_size, sequence_length = batch["input_ids"].shape
    median_seconds = statistics.median(seconds)
    return {
        "median_step_ms": 1000 * median_seconds,
        "step_ms": [1000 * value for value in seconds],
        "tokens_per_second": batch_size * sequence_length / median_seconds,
        "peak_memory_mb": peak_memory_mb,
        "losses": losses,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def compare_training(runs: dict, warmup: int, steps: int) -> dict:
    """For `runs` as `prepare_training` makes them: the check that both do the same language-model work, each
    model's peak memory over two steps, then their interleaved step times and the overhead pair by pair (each
    Gaze2Report step / the baseline step beside it)."""
    work = same_language_model_work(runs)
    memory = {name: measure_peak_memory(run) for name, run in runs.items()}
    timed = measure_interleaved(runs, warmup, steps)
    summaries = {
        name: step_summary(timed[name]["seconds"], timed[name]["losses"], batch, memory[name], model)
        for name, (model, _, batch) in runs.items()
    }
    overhead = paired_ratios("overhead_ratio", timed["gaze2report"]["seconds"], timed["baseline"]["seconds"])
    return {**summaries, "same_language_model_work": work, **overhead}


def time_parts(call, modules: dict, passes: int, device: torch.device, warmup: int = 0) -> dict:
    """Median milliseconds of `call()` ("forward") and of the time spent inside each module of `modules` (those not
    None), timed by forward hooks, over `passes` calls after `warmup` untimed ones; "other" is the rest."""
    modules = {name: module for name, module in modules.items() if module is not None}
    started, elapsed, per_pass = {}, {}, []

    def stamp(name: str, is_end: bool):
        def hook(*_):
            synchronize(device)
            if is_end:
                elapsed[name] += time.perf_counter() - started[name]
            else:
                started[name] = time.perf_counter()

        return hook

    handles = [module.register_forward_pre_hook(stamp(name, False)) for name, module in modules.items()]
    handles += [module.register_forward_hook(stamp(name, True)) for name, module in modules.items()]
    try:
        for index in range(warmup + passes):
            elapsed.update(dict.fromkeys(modules, 0.0))
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            if index >= warmup:
                per_pass.append({"forward": time.perf_counter() - start, **elapsed})
    finally:
        for handle in handles:
            handle.remove()
    medians = {name: 1000 * statistics.median(times[name] for times in per_pass) for name in ("forward", *modules)}
    return {**medians, "other": medians["forward"] - sum(medians[name] for name in modules)}


def forward_breakdown(peft_model, batch: dict, passes: int) -> dict:
    """`time_parts` of the Gaze2Report training forward pass (train mode, gradients on, no backward), in passes of
    their own so that the hooks stay out of the timed steps."""
    model = peft_model.get_base_model()
    modules = {name: getattr(model.model, name, None) for name in FORWARD_PARTS} | {"lm_head": model.lm_head}
    peft_model.train()
    return time_parts(lambda: gaze2report_loss(peft_model, batch), modules, passes, model.device)


def prepare_training(model, processor, batch_size: int, seed: int, sequence_length: int | None = None) -> tuple:
    """`(runs, record)`: runs maps "gaze2report" and "baseline" to `(model, loss_function, batch)`, both models
    LoRA-wrapped alike (`apply_same_lora`), their batches from `make_training_batches` (made
    `sequence_length` tokens long when given); the record describes them."""
    baseline = build_baseline(model)
    gaze_batch, baseline_batch, num_with_gaze = make_training_batches(model, processor, batch_size, seed)
    if sequence_length is not None:
        gaze_batch, baseline_batch = (
            extend_to_sequence_length(batch, sequence_length, len(processor.prompt_ids))
            for batch in (gaze_batch, baseline_batch)
        )
    gaze_model, baseline_model, lora = apply_same_lora(model, baseline)
    runs = {
        "gaze2report": (gaze_model, gaze2report_loss, gaze_batch),
        "baseline": (baseline_model, baseline_loss, baseline_batch),
    }
    memory = "torch.cuda.max_memory_allocated" if model.device.type == "cuda" else "peak RSS, VmHWM"
    record = {
        "device": describe_device(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": model.get_decoder().config._attn_implementation,
        "batch_size": gaze_batch["input_ids"].shape[0],
        "sequence_length": gaze_batch["input_ids"].shape[1],
        "gaze_tokens_per_study": model.config.num_gaze_tokens,
        "studies_with_recorded_gaze": num_with_gaze,
        "vision_tower_trained": not model.config.freeze_vision_tower,
        "text_model": text_model(model),
        "lora": lora,
        "memory_method": f"the peak that two training steps add over the memory in use with both models ({memory})",
    }
    return runs, record


def make_generation_inputs(model, processor, bare, batch_size: int, seed: int, prompt_length=None) -> dict:
    """{"gaze2report": (model, its prompts for `batch_size` synthetic studies), "bare": (bare, the same ids without
    placeholders and the same attention mask)}, on the model's device; with `prompt_length`, both prompts lengthened
    to it by `extend_prompt` with the instruction's tokens as filler."""
    studies = synthetic_studies(batch_size, seed, model.config.image_size)
    inputs = processor(images=[study["image"] for study in studies])
    gaze_inputs = {name: inputs[name].to(model.device) for name in ("input_ids", "attention_mask", "pixel_values")}
    bare_inputs = {
        "input_ids": without_placeholders(gaze_inputs["input_ids"], model, processor),
        "attention_mask": gaze_inputs["attention_mask"],
    }
    if prompt_length is not None:
        filler_ids = processor.tokenizer.encode(processor.instruction, add_special_tokens=False)
        gaze_inputs, bare_inputs = (
            extend_prompt(inputs, prompt_length, filler_ids) for inputs in (gaze_inputs, bare_inputs)
        )
    return {"gaze2report": (model, gaze_inputs), "bare": (bare, bare_inputs)}


def extend_prompt(inputs: dict, length: int, filler_ids: list[int]) -> dict:
    """Generation prompts made `length` tokens long by ordinary text before the processor's prompt (`filler_ids`
    repeated, standing for a clinical history), all attended; applied to both models' prompts alike."""
    input_ids = inputs["input_ids"]  # (batch, processor prompt length)
    missing = length - input_ids.shape[1]
    if missing < 0:
        raise ValueError(f"The processor's prompt holds {input_ids.shape[1]} tokens, more than the {length} asked for")
    repeated = torch.tensor(filler_ids, device=input_ids.device).repeat(-(-missing // len(filler_ids)))
    filler = repeated[:missing].expand(input_ids.shape[0], -1)  # (batch, missing)
    attention_mask = torch.cat([torch.ones_like(filler), inputs["attention_mask"]], dim=1)
    return {**inputs, "input_ids": torch.cat([filler, input_ids], dim=1), "attention_mask": attention_mask}


@torch.no_grad()
def timed_generate(model, inputs: dict, new_tokens: int, cache: str, pad_token_id: int) -> tuple:
    """Seconds for one greedy run of exactly `new_tokens` tokens, and the generated ids (batch, new_tokens)."""
    static = {"cache_implementation": "static"} if cache == "static" else {}
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, **static}
    synchronize(model.device)
    start = time.perf_counter()
    sequences = model.generate(**inputs, **options, pad_token_id=pad_token_id)
    synchronize(model.device)
    return time.perf_counter() - start, sequences[:, -new_tokens:]


def generation_figures(whole_seconds: list[float], prefill_seconds: list[float], batch_size: int, new_tokens: int):
    """Throughput from the runs of all `new_tokens` tokens and the runs of one: tokens/s (batch x new tokens / the
    median whole run), the median prefill and a decode step's time ((whole - prefill) / (new tokens - 1))."""
    whole, prefill = statistics.median(whole_seconds), statistics.median(prefill_seconds)
    return {
        "tokens_per_second": batch_size * new_tokens / whole,
        "whole_run_s": whole_seconds,
        "prefill_ms": 1000 * prefill,
        "decode_step_ms": 1000 * (whole - prefill) / (new_tokens - 1),
    }


def compare_generation(runs: dict, new_tokens: int, cache: str, repeats: int, pad_token_id: int) -> dict:
    """Greedy generation of `runs` (as `make_generation_inputs` makes them) for one batch and cache: after one
    warm-up run each, `repeats` alternating rounds, each run timed for one new token and for all;
    `generation_figures` per model and the throughput ratio Gaze2Report / bare pair by pair."""
    if new_tokens < 2:
        raise ValueError(f"new_tokens must be >= 2 (a decode step is timed between two runs), got {new_tokens}")
    for generator, inputs in runs.values():
        timed_generate(generator, inputs, new_tokens, cache, pad_token_id)
    seconds = {name: {"prefill": [], "whole": []} for name in runs}
    for repeat in range(repeats):
        for name in alternating(list(runs), repeat):
            generator, inputs = runs[name]
            seconds[name]["prefill"].append(timed_generate(generator, inputs, 1, cache, pad_token_id)[0])
            whole, generated = timed_generate(generator, inputs, new_tokens, cache, pad_token_id)
            seconds[name]["whole"].append(whole)
            if generated.shape[1] != new_tokens:
                raise RuntimeError(f"{name} generated {generated.shape[1]} tokens, not {new_tokens}")
    batch_size = runs["gaze2report"][1]["input_ids"].shape[0]
    figures = {
        name: generation_figures(times["whole"], times["prefill"], batch_size, new_tokens)
        for name, times in seconds.items()
    }
    return {**figures, **paired_ratios("throughput_ratio", seconds["bare"]["whole"], seconds["gaze2report"]["whole"])}
