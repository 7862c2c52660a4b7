"""Training-step cost of Gaze2Report against the same language model with LoRA and no vision or gaze (the
R2GenGPT-style baseline), on token sequences of the same length.

For each setting, one run measures:
  * Gaze2Report: the LoRA-wrapped model as training uses it (LoRA on the language model; projector, gaze graph
    network and scanpath predictor trained in full; the vision tower trained or frozen as the setting's config says),
    on a collated batch of synthetic studies with recorded gaze: forward + backward + AdamW step.
  * Baseline: the same language model (its weights copied) with LoRA of the same r on the same layers, on the same
    input_ids with the <gaze> placeholders replaced by an ordinary text token, the same attention mask and labels.
    As Gaze2Report does in training, it runs its language-model head and loss only at the scored positions (where
    a next token is a label), so that both do the same language-model work: `same_language_model_work` asserts the
    sequence shape, the scored positions, the attention implementation, the dtype and the LoRA layers are equal.

The two models' timed steps alternate (A B, B A, A B, ...), so that the machine's drift falls on both alike; the
overhead is reported pair by pair (Gaze2Report step / the baseline step beside it) with its median and spread.
Reported per model: median step time over the measured steps (warm-up steps excluded), tokens/s (batch x sequence
length / median step time), the peak memory the training steps add over the loaded model (measured before the timed
steps, one model at a time; CPU: peak resident set size, reset through /proc/self/clear_refs; CUDA:
torch.cuda.max_memory_allocated); for Gaze2Report also a breakdown of its forward pass (forward hooks with time
stamps, in separate forward passes so that the hooks do not touch the timed steps).

Settings: `tiny` (random tiny preset, CPU), `demo` (demo-smollm2: a small ResNet and the real SmolLM2-135M-Instruct,
CPU), `gpu` (CUDA, bfloat16: random backbones of Llama-3.2-1B's and ViT-B/16-224's shapes with the rad-dino preset's
gaze modules; the SmolLM2 tokenizer writes the token sequences; skipped with a message when CUDA is absent).

    python benchmarks/train_step.py --setting tiny demo --threads 2 --output train_step.json
"""

import argparse
import copy
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration, Gaze2ReportProcessor
from modeling_gaze2report.data import Gaze2ReportCollator, make_synthetic_dataset
from modeling_gaze2report.demo import smollm2_instruct_dir
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.lora import apply_lora
from modeling_gaze2report.presets import build_from_preset, load_preset

SETTINGS = ("tiny", "demo", "gpu")
SETTING_PRESETS = {"tiny": "tiny", "demo": "demo-smollm2"}
# Parts of the Gaze2Report forward pass timed by hooks; the rest (embedding lookup, placeholder scatter, losses) is
# reported as "other".
FORWARD_PARTS = ("vision_tower", "scanpath_predictor", "gaze_encoder", "projector", "language_model", "lm_head")
# Llama-3.2-1B's dimensions and a ViT-B/16 at 224 px, built with random weights (nothing is downloaded).
GPU_TEXT_CONFIG = {
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
GPU_VISION_CONFIG = {
    "model_type": "vit",
    "image_size": 224,
    "patch_size": 16,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}
GPU_GAZE_PRESET = "rad-dino-llama3.2-1b"
MEGABYTE = 2**20


def build_setting(setting: str) -> tuple:
    """Returns `(model, processor, device, dtype)` for a setting."""
    if setting in SETTING_PRESETS:
        model, processor = build_from_preset(SETTING_PRESETS[setting])
        return model, processor, torch.device("cpu"), torch.float32
    if setting != "gpu":
        raise ValueError(f"Unknown setting {setting!r}; choose from {SETTINGS}")
    device, dtype = torch.device("cuda"), torch.bfloat16
    model, processor = build_gpu_model(
        GPU_TEXT_CONFIG, GPU_VISION_CONFIG, load_preset(GPU_GAZE_PRESET)["config"], device, dtype
    )
    return model, processor, device, dtype


def build_gpu_model(
    text_config: dict, vision_config: dict, gaze_config: dict, device: torch.device, dtype: torch.dtype
):
    """`(model, processor)`: Gaze2Report with random weights of the given shapes (`gaze_config`: a preset's config),
    built on `device` in `dtype`, bound to a processor with SmolLM2's tokenizer and a plain resize to the tower's
    image size."""
    config = Gaze2ReportConfig(
        **{
            **gaze_config,
            "vision_config": vision_config,
            "text_config": text_config,
            "image_size": vision_config["image_size"],
        }
    )
    with device:
        model = Gaze2ReportForConditionalGeneration(config).to(dtype)
    processor = Gaze2ReportProcessor.from_pretrained_backbones(
        None,
        str(smollm2_instruct_dir()),
        image_size=config.image_size,
        num_gaze_tokens=config.num_gaze_tokens,
        max_fixations=config.max_fixations,
    )
    model.bind_processor(processor)
    return model, processor


def build_baseline(model, device: torch.device, dtype: torch.dtype):
    """The Gaze2Report model's language model and head as a plain causal LM with the same weights (and a config of
    its own, so that setting one model's attention leaves the other's alone)."""
    with device:
        baseline = AutoModelForCausalLM.from_config(copy.deepcopy(model.config.text_config), dtype=dtype)
    baseline.base_model.load_state_dict(model.model.language_model.state_dict())
    baseline.get_output_embeddings().load_state_dict(model.lm_head.state_dict())
    return baseline


def lora_layer_names(peft_model) -> list[str]:
    return sorted(name for name, module in peft_model.named_modules() if isinstance(module, LoraLayer))


def apply_same_lora(baseline, gaze_peft_model, r: int, alpha: int, dropout: float):
    """LoRA of the same r on the baseline's layers of the same names as the Gaze2Report model's LoRA layers."""
    gaze_layers = lora_layer_names(gaze_peft_model)
    target_modules = sorted({name.rsplit(".", 1)[-1] for name in gaze_layers})
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type=None)
    peft_baseline = get_peft_model(baseline, config)
    baseline_layers = lora_layer_names(peft_baseline)
    if len(baseline_layers) != len(gaze_layers):
        raise ValueError(
            f"LoRA wraps {len(gaze_layers)} layers of the Gaze2Report language model but {len(baseline_layers)} of "
            f"the baseline for target modules {target_modules}; the two would not train the same adapters."
        )
    return peft_baseline, target_modules, len(baseline_layers)


def make_batches(processor, gaze_token_id: int, batch_size: int, image_size: int, seed: int, device, dtype):
    """A collated Gaze2Report batch of synthetic studies (recorded gaze as the graph's fixations) and the baseline's
    batch: the same input_ids with every <gaze> placeholder replaced by the instruction's first token."""
    studies = make_synthetic_dataset(batch_size, seed=seed, image_size=image_size, split_fractions=(1.0, 0.0, 0.0))
    examples = list(studies["train"])
    num_with_gaze = sum(1 for example in examples if example["fixations"])
    if num_with_gaze == 0:
        raise ValueError(f"None of the {batch_size} synthetic studies (seed {seed}) has recorded gaze.")
    batch = Gaze2ReportCollator(processor, gaze_source="recorded")(examples)
    gaze_batch = {
        name: tensor.to(device, dtype) if tensor.is_floating_point() else tensor.to(device)
        for name, tensor in batch.items()
    }
    ordinary_token_id = processor.tokenizer.encode(processor.instruction, add_special_tokens=False)[0]
    input_ids = batch["input_ids"]  # (batch, sequence)
    baseline_input_ids = input_ids.masked_fill(input_ids == gaze_token_id, ordinary_token_id)  # (batch, sequence)
    baseline_batch = {
        "input_ids": baseline_input_ids.to(device),
        "attention_mask": batch["attention_mask"].to(device),
        "labels": batch["labels"].to(device),
    }
    return gaze_batch, baseline_batch, num_with_gaze


def baseline_loss(peft_baseline, batch: dict) -> torch.Tensor:
    """The baseline's loss as Gaze2Report computes its own in training: the language model's body over every
    position, its head and the cross-entropy only at the scored positions."""
    causal_lm = peft_baseline.get_base_model()
    body = causal_lm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hidden = body.last_hidden_state  # (batch, sequence, hidden)
    next_labels = batch["labels"][:, 1:]  # (batch, sequence - 1)
    scored = next_labels != -100  # (batch, sequence - 1)
    scored_logits = causal_lm.get_output_embeddings()(hidden[:, :-1][scored])  # (scored positions, vocab)
    return torch.nn.functional.cross_entropy(scored_logits.float(), next_labels[scored])


def gaze2report_loss(peft_model, batch: dict) -> torch.Tensor:
    return peft_model(**batch, logits_at_labels_only=True).loss


def same_language_model_work(gaze_model, gaze_batch: dict, baseline_model, baseline_batch: dict) -> dict:
    """Checks that both models do the same language-model work in a step and returns what was compared; raises
    ValueError naming the first difference."""
    gaze_language_model = gaze_model.get_base_model().model.language_model
    baseline_body = baseline_model.get_base_model().base_model

    def relative_lora_layers(peft_model) -> list[str]:
        return [name[name.index("layers.") :] for name in lora_layer_names(peft_model) if "layers." in name]

    def parameter_dtypes(module) -> list[str]:
        return sorted({str(parameter.dtype).removeprefix("torch.") for parameter in module.parameters()})

    compared = {
        "sequence_shape": (list(gaze_batch["input_ids"].shape), list(baseline_batch["input_ids"].shape)),
        "scored_positions": (
            int((gaze_batch["labels"][:, 1:] != -100).sum()),
            int((baseline_batch["labels"][:, 1:] != -100).sum()),
        ),
        "attn_implementation": (
            gaze_language_model.config._attn_implementation,
            baseline_body.config._attn_implementation,
        ),
        "language_model_dtypes": (parameter_dtypes(gaze_language_model), parameter_dtypes(baseline_body)),
        "lora_layers": (relative_lora_layers(gaze_model), relative_lora_layers(baseline_model)),
        "language_model_parameters": (
            sum(p.numel() for p in gaze_language_model.parameters()),
            sum(p.numel() for p in baseline_body.parameters()),
        ),
    }
    for name, (gaze_value, baseline_value) in compared.items():
        if gaze_value != baseline_value:
            raise ValueError(
                f"The two models would not do the same language-model work: {name} is "
                f"{gaze_value!r:.200} for Gaze2Report and {baseline_value!r:.200} for the baseline"
            )
    if not torch.equal(gaze_batch["labels"], baseline_batch["labels"]):
        raise ValueError("The two models would not do the same language-model work: their labels differ")
    return {
        name: gaze_value if name != "lora_layers" else len(gaze_value) for name, (gaze_value, _) in compared.items()
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_freed_memory(device: torch.device) -> None:
    """Returns freed memory to the system, so that the next peak measures new memory rather than reused pages."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def read_process_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"/proc/self/status has no {field} line")


def cpu_peak_memory_supported() -> bool:
    return Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()


def start_memory_measurement(device: torch.device) -> int:
    """Resets the peak and returns the bytes in use now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak RSS) to the current RSS
    return read_process_status_kb("VmRSS") * 1024


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return read_process_status_kb("VmHWM") * 1024


def train_step(model, loss_function, batch: dict, optimizer) -> float:
    loss = loss_function(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def make_optimizer(model) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def measure_peak_memory(model, loss_function, batch: dict, steps: int, device: torch.device) -> float:
    """MB that `steps` training steps (optimizer state included) add over the loaded model, at their peak."""
    model.train()
    release_freed_memory(device)
    memory_before = start_memory_measurement(device)
    optimizer = make_optimizer(model)
    for _ in range(steps):
        train_step(model, loss_function, batch, optimizer)
    peak_bytes = peak_memory(device) - memory_before
    del optimizer
    release_freed_memory(device)
    return peak_bytes / MEGABYTE


def measure_interleaved(runs: dict, warmup: int, steps: int, device: torch.device) -> dict:
    """Times the training steps of several models in alternation: `runs` maps a name to `(model, loss_function,
    batch)`; after `warmup` steps each, `steps` rounds run every model once, in reversed order every other round.
    Returns per name the step seconds and losses, round by round."""
    optimizers = {name: make_optimizer(model) for name, (model, _, _) in runs.items()}
    for name, (model, loss_function, batch) in runs.items():
        model.train()
        for _ in range(warmup):
            train_step(model, loss_function, batch, optimizers[name])
    timed = {name: {"seconds": [], "losses": []} for name in runs}
    order = list(runs)
    for round_index in range(steps):
        for name in order if round_index % 2 == 0 else order[::-1]:
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


def ratio_spread(ratios: list[float]) -> dict:
    """Median, quartiles and extremes of the pair-by-pair ratios."""
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "median": statistics.median(ratios),
        "q1": quartiles[0],
        "q3": quartiles[2],
        "min": min(ratios),
        "max": max(ratios),
    }


def compare_training(
    gaze_model,
    gaze_batch: dict,
    baseline_model,
    baseline_batch: dict,
    warmup: int,
    steps: int,
    device: torch.device,
    memory_steps: int = 2,
) -> dict:
    """Peak memory of each model, then their interleaved step times, the pair-by-pair overhead and its spread."""
    work = same_language_model_work(gaze_model, gaze_batch, baseline_model, baseline_batch)
    runs = {
        "gaze2report": (gaze_model, gaze2report_loss, gaze_batch),
        "baseline": (baseline_model, baseline_loss, baseline_batch),
    }
    memory = {
        name: measure_peak_memory(model, loss_function, batch, memory_steps, device)
        for name, (model, loss_function, batch) in runs.items()
    }
    timed = measure_interleaved(runs, warmup, steps, device)
    ratios = [gaze / base for gaze, base in zip(timed["gaze2report"]["seconds"], timed["baseline"]["seconds"])]
    summaries = {
        name: step_summary(timed[name]["seconds"], timed[name]["losses"], batch, memory[name], model)
        for name, (model, _, batch) in runs.items()
    }
    return {
        **summaries,
        "same_language_model_work": work,
        "overhead_ratio_pairs": ratios,
        "overhead_ratio": ratio_spread(ratios)["median"],
        "overhead_ratio_spread": ratio_spread(ratios),
    }


def measure_forward_parts(peft_model, batch: dict, passes: int, device: torch.device) -> dict:
    """Median milliseconds of each part of the Gaze2Report forward pass (train mode, gradients on, no backward)."""
    model = peft_model.get_base_model()
    modules = {
        "vision_tower": model.model.vision_tower,
        "scanpath_predictor": model.model.scanpath_predictor,
        "gaze_encoder": model.model.gaze_encoder,
        "projector": model.model.projector,
        "language_model": model.model.language_model,
        "lm_head": model.lm_head,
    }
    started, elapsed = {}, {name: 0.0 for name in FORWARD_PARTS}

    def pre_hook(name):
        def hook(module, args):
            synchronize(device)
            started[name] = time.perf_counter()

        return hook

    def post_hook(name):
        def hook(module, args, output):
            synchronize(device)
            elapsed[name] += time.perf_counter() - started[name]

        return hook

    present = [name for name in FORWARD_PARTS if modules[name] is not None]
    handles = [modules[name].register_forward_pre_hook(pre_hook(name)) for name in present]
    handles += [modules[name].register_forward_hook(post_hook(name)) for name in present]
    per_pass = []
    peft_model.train()
    try:
        for _ in range(passes):
            elapsed.update({name: 0.0 for name in FORWARD_PARTS})
            synchronize(device)
            start = time.perf_counter()
            peft_model(**batch, logits_at_labels_only=True).loss.item()
            per_pass.append({"forward": time.perf_counter() - start, **elapsed})
    finally:
        for handle in handles:
            handle.remove()
    medians = {
        name: 1000 * statistics.median(times[name] for times in per_pass) for name in ("forward", *FORWARD_PARTS)
    }
    medians["other"] = medians["forward"] - sum(medians[name] for name in FORWARD_PARTS)
    return medians


def benchmark_setting(setting: str, args: argparse.Namespace) -> dict:
    if setting == "gpu" and not torch.cuda.is_available():
        message = "skipped: CUDA is not available on this machine (the gpu setting needs a CUDA GPU)"
        print(f"[train_step] setting gpu {message}", file=sys.stderr)
        return {"setting": setting, "skipped": message}
    torch.manual_seed(args.seed)
    model, processor, device, dtype = build_setting(setting)
    if device.type == "cpu" and not cpu_peak_memory_supported():
        raise RuntimeError("Measuring CPU peak memory needs Linux's /proc/self/clear_refs and /proc/self/status.")
    baseline = build_baseline(model, device, dtype)
    if args.attn_implementation is not None:
        for language_model in (model.get_decoder(), baseline):
            language_model.set_attn_implementation(args.attn_implementation)
    train_vision_tower = not model.config.freeze_vision_tower
    gaze_model = apply_lora(
        model, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, train_vision_tower=train_vision_tower
    )
    baseline_model, target_modules, num_lora_layers = apply_same_lora(
        baseline, gaze_model, args.lora_r, args.lora_alpha, args.lora_dropout
    )
    gaze_batch, baseline_batch, num_with_gaze = make_batches(
        processor, model.config.gaze_token_id, args.batch_size, model.config.image_size, args.seed, device, dtype
    )
    comparison = compare_training(
        gaze_model, gaze_batch, baseline_model, baseline_batch, args.warmup, args.steps, device
    )
    comparison["gaze2report"]["forward_breakdown_ms"] = measure_forward_parts(
        gaze_model, gaze_batch, args.steps, device
    )
    batch_size, sequence_length = gaze_batch["input_ids"].shape
    return {
        "setting": setting,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": model.get_decoder().config._attn_implementation,
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "gaze_tokens_per_study": model.config.num_gaze_tokens,
        "studies_with_recorded_gaze": num_with_gaze,
        "vision_tower_trained": train_vision_tower,
        "text_model": f"{model.config.text_config.model_type}, {model.config.text_config.num_hidden_layers} layers, "
        f"hidden {model.config.text_config.hidden_size}",
        "lora": {
            "r": args.lora_r,
            "alpha": args.lora_alpha,
            "dropout": args.lora_dropout,
            "target_modules": target_modules,
            "layers": num_lora_layers,
        },
        "memory_method": "torch.cuda.max_memory_allocated minus allocated before the steps"
        if device.type == "cuda"
        else "peak RSS (VmHWM after /proc/self/clear_refs) minus RSS before the steps",
        **comparison,
    }


def markdown_tables(results: list[dict]) -> str:
    lines = [
        "| setting | model | batch x tokens | median step (ms) | tokens/s | peak memory added (MB) | trainable params "
        "| overhead, pair by pair: median (min-max) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    measured = [result for result in results if "skipped" not in result]
    for result in results:
        if "skipped" in result:
            lines.append(f"| {result['setting']} | {result['skipped']} | | | | | | |")
            continue
        shape = f"{result['batch_size']} x {result['sequence_length']}"
        for name, label in (("baseline", "LLM + LoRA (baseline)"), ("gaze2report", "Gaze2Report")):
            run = result[name]
            spread = result["overhead_ratio_spread"]
            overhead = (
                f"{spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})"
                if name == "gaze2report"
                else "1.00x"
            )
            lines.append(
                f"| {result['setting']} | {label}, {result['attn_implementation']} attention | {shape} | "
                f"{run['median_step_ms']:.1f} | "
                f"{run['tokens_per_second']:.0f} | {run['peak_memory_mb']:.0f} | {run['trainable_parameters']:,} | "
                f"{overhead} |"
            )
    if measured:
        parts = (
            "vision_tower",
            "scanpath_predictor",
            "gaze_encoder",
            "projector",
            "language_model",
            "lm_head",
            "other",
            "forward",
        )
        lines += [
            "",
            "Gaze2Report forward pass (median ms):",
            "",
            "| setting | " + " | ".join(parts) + " |",
            "|---|" + "---:|" * len(parts),
        ]
        for result in measured:
            breakdown = result["gaze2report"]["forward_breakdown_ms"]
            lines.append(f"| {result['setting']} | " + " | ".join(f"{breakdown[part]:.1f}" for part in parts) + " |")
    return "\n".join(lines)


def write_json_atomically(path: Path, payload: dict) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", nargs="+", choices=SETTINGS, default=["tiny"], help="one or more settings")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before measuring, not counted")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument(
        "--attn_implementation",
        default=None,
        help="the language models' attention (eager, sdpa, ...); default: the model's own",
    )
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--lora_alpha", type=int, default=32)
    parser.add_argument("--lora_dropout", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the results (written atomically)")
    args = parser.parse_args(argv)
    check_arguments(parser, args, {"batch_size": 1, "steps": 1, "warmup": 0, "lora_r": 1, "lora_alpha": 1, "seed": 0})
    if not 0.0 <= args.lora_dropout < 1.0:
        parser.error(f"--lora_dropout must lie in [0, 1), got {args.lora_dropout}")
    return args


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, minimums: dict) -> None:
    """The checks the benchmark scripts share: each named integer at least its minimum, --threads (when given) at
    least 1, --output (when given) not a directory; a failure exits through `parser.error`."""
    for name, minimum in minimums.items():
        if getattr(args, name) < minimum:
            parser.error(f"--{name} must be >= {minimum}, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.output is not None and args.output.is_dir():
        parser.error(f"--output must name a file, got the directory {args.output}")


def main(argv=None) -> dict:
    """Runs the benchmark, prints the Markdown tables and returns (and with --output writes) the JSON results."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": os.getloadavg()[0],
        "steps": args.steps,
        "warmup": args.warmup,
        "results": [benchmark_setting(setting, args) for setting in dict.fromkeys(args.setting)],
        "load_average_1min_after": os.getloadavg()[0],
    }
    print(markdown_tables(report["results"]))
    print(
        f"\ntorch {report['torch_version']}, {report['torch_threads']} threads, {report['cpu_count']} CPUs, load "
        f"average {report['load_average_1min_before']:.2f} before / {report['load_average_1min_after']:.2f} after"
    )
    if args.output is not None:
        write_json_atomically(args.output, report)
    return report


if __name__ == "__main__":
    main()
