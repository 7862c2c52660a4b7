"""One-process GPU check of Gaze2Report at real shapes: training-step and generation cost against the bare language
model, the gaze modules' throughput, and correctness on the device, written to one JSON file.

Every model has random weights of real shapes (nothing is downloaded): Llama-3.2-1B's and Llama-3.1-8B's language
models, a ViT-B/16 at 224 px (frozen, as in stage 2) and the `rad-dino-llama3.2-1b` preset's gaze modules (96
visual-gaze tokens), in bfloat16 with sdpa attention; SmolLM2's tokenizer writes the token sequences, as
`train_step.py`'s gpu setting does. The counts aim at a run within 8 minutes on one H200 (static-cache compilation,
five times, is the least known part); `setup.wall_s` and each section's `wall_s` record what a run took:

    python benchmarks/gpu_check.py --output benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --output gpu_check.json --sections generate_8b   # rerun one section
    python benchmarks/gpu_check.py --dry-run --output gpu_check_dry.json            # tiny shapes, CPU float32

Sections, in the order they run (keys of the JSON, beside `setup`):
  * correctness (1B): save_pretrained -> from_pretrained gives the same logits (assert_close); greedy reports are
    identical with the dynamic and the static (compiled) cache, in float32 (see `check_greedy_caches`); one bf16
    stage-2 forward/backward gives a finite loss and finite gradients.
  * gaze_modules (1B): images/s of the scanpath predictor + gaze graph network (graph building and GNN) + projector
    alone, at batch 256, on patch features the ViT-B/16 tower computed beforehand, as `get_image_features` calls them.
  * train_step_1b, train_step_8b: the stage-2 step (LoRA r 16 on every linear layer of the language model; projector,
    graph network and scanpath predictor trained in full; tower frozen) against the same language model with the
    same LoRA on the same tokens without vision or gaze (`train_step.compare_training`: interleaved steps, the same
    language-model work asserted, the overhead pair by pair), batch 8 x 512 tokens: median step, tokens/s, model FLOPs
    utilisation (the formula is written beside it), peak memory, overhead; at 8B also with activation checkpointing.
  * generate_1b, generate_8b: batch 16, a 256-token prompt (the visual-gaze tokens included) + 128 new tokens, with
    the dynamic cache and with the static cache (which transformers' `generate` compiles on CUDA by itself), against
    the bare language model on a prompt of the same length (`generate.measure_case`): ms per decode step, tokens/s,
    and beside them the HBM limit of a decode step, (weight bytes + KV-cache bytes) / the GPU's bandwidth.

Figures are printed as they come and the JSON is rewritten atomically as each part of a section ends, so a run cut
short keeps what it measured. An exception in a section is recorded as its "error" (with the traceback's tail) and
the next section runs; device memory is freed between sections. Without CUDA and without --dry-run the script exits
with a message and writes nothing.
"""

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' helpers

from generate import CACHES, make_inputs, measure_case, timed_generate  # noqa: E402
from train_step import (  # noqa: E402
    GPU_GAZE_PRESET,
    GPU_TEXT_CONFIG,
    GPU_VISION_CONFIG,
    MEGABYTE,
    apply_lora,
    apply_same_lora,
    build_baseline,
    build_gpu_model,
    check_arguments,
    compare_training,
    cpu_peak_memory_supported,
    gaze2report_loss,
    make_batches,
    measure_forward_parts,
    release_freed_memory,
    start_memory_measurement,
    synchronize,
    write_json_atomically,
)

from modeling_gaze2report import Gaze2ReportForConditionalGeneration  # noqa: E402
from modeling_gaze2report.presets import load_preset  # noqa: E402
from modeling_gaze2report.vision_gaze2report import encode_patch_features  # noqa: E402

SECTIONS = ("correctness", "gaze_modules", "train_step_1b", "generate_1b", "train_step_8b", "generate_8b")
ATTN_IMPLEMENTATION = "sdpa"
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
# Llama-3.1-8B's dimensions, built with random weights.
LLAMA_8B_TEXT_CONFIG = {
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
GPU_SCALE = {
    "vision_config": GPU_VISION_CONFIG,
    "gaze_config": load_preset(GPU_GAZE_PRESET)["config"],
    "text_configs": {"1b": GPU_TEXT_CONFIG, "8b": LLAMA_8B_TEXT_CONFIG},
    "train_batch_size": 8,
    "train_sequence_length": 512,
    "train_steps": 8,
    "train_warmup": 2,
    "generate_batch_size": 16,
    "prompt_length": 256,
    "new_tokens": 128,
    "generate_repeats": 2,
    "gaze_batch_size": 256,
    "gaze_passes": 10,
}
TINY_PRESET_CONFIG = load_preset("tiny")["config"]
# The tiny preset's modules, its tower frozen as in stage 2; its language models hold SmolLM2's 49152 tokens and
# <gaze> (as Llama's 128256 do at full size); the "8b" one has an untied head, as Llama-3.1-8B, and a layer more.
TINY_TEXT_CONFIG = {**TINY_PRESET_CONFIG["text_config"], "vocab_size": 49280}
DRY_RUN_SCALE = {
    "vision_config": TINY_PRESET_CONFIG["vision_config"],
    "gaze_config": {
        **{
            name: value
            for name, value in TINY_PRESET_CONFIG.items()
            if name not in ("vision_config", "text_config", "image_size", "gaze_token_id")
        },
        "freeze_vision_tower": True,
    },
    "text_configs": {
        "1b": TINY_TEXT_CONFIG,
        "8b": {**TINY_TEXT_CONFIG, "num_hidden_layers": 3, "tie_word_embeddings": False},
    },
    "train_batch_size": 2,
    "train_sequence_length": 96,
    "train_steps": 2,
    "train_warmup": 1,
    "generate_batch_size": 2,
    "prompt_length": 64,
    "new_tokens": 8,
    "generate_repeats": 1,
    "gaze_batch_size": 8,
    "gaze_passes": 2,
}
# Data-sheet figures by device name (every substring must occur in torch.cuda.get_device_name): HBM bytes/s and
# dense bfloat16 FLOP/s.
GPU_SPECS = (
    (("H200",), "H200", 4.8e12, 989e12),
    (("H100", "HBM3"), "H100 SXM", 3.35e12, 989e12),
    (("H100", "PCIe"), "H100 PCIe", 2.0e12, 756e12),
    (("A100", "80GB"), "A100 80GB", 2.0e12, 312e12),
)
TRAINING_FLOPS_FORMULA = (
    "6 * N_body * tokens + 6 * N_head * scored_tokens + 12 * layers * attention_width * sequence_length * tokens: "
    "PaLM's model FLOPs (forward 2 and backward 4 FLOPs per weight and token, plus attention scores and values), "
    "with N_body the language model's parameters without the input embedding table (a lookup) and N_head the head's, "
    "which runs only at the scored positions; the same count for both models (the vision tower, the gaze modules and "
    "the LoRA adapters are not counted), and recomputation under activation checkpointing is not counted either. "
    "The frozen base weights need no weight gradients, so the work done is nearer 4 than 6 FLOPs per weight and "
    "token: this MFU is the conventional one, not the hardware's utilisation."
)
HBM_LIMIT_FORMULA = (
    "(weight_bytes + kv_cache_bytes) / bandwidth: weight_bytes = the language model's parameter bytes read in a "
    "decode step (all but an input embedding table not shared with the head, whose lookup reads batch rows only); "
    "kv_cache_bytes = 2 * layers * batch * kv_heads * head_dim * cached_positions * element bytes, with "
    "cached_positions = prompt + new_tokens / 2 (the mean over the decode steps) for the dynamic cache and prompt + "
    "new_tokens (the whole static buffer, which attention reads every step) for the static cache"
)
GREEDY_NOTE = (
    "run in float32: with random weights the top two logits are close, and bfloat16 rounds differently in the two "
    "caches' attention shapes and in compiled kernels, so a bfloat16 difference would not tell a cache bug from "
    "rounding"
)


@dataclass(frozen=True)
class Run:
    """What every section needs: the scale's shapes and counts, the device and dtype, the data-sheet figures, the
    seed and `save` (rewrites the JSON with the figures so far)."""

    scale: dict
    device: torch.device
    dtype: torch.dtype
    spec: dict
    seed: int
    save: Callable[[], None]


def say(message: str) -> None:
    print(f"[gpu_check] {message}", flush=True)


def device_spec(device: torch.device) -> dict:
    """The device's name, HBM bandwidth and dense bfloat16 peak (`gpu_spec`); null figures on a CPU."""
    if device.type != "cuda":
        return {
            "device_name": f"cpu ({platform.machine()})",
            "table_name": None,
            "hbm_bytes_per_second": None,
            "bf16_dense_flops_per_second": None,
            "note": "not a GPU: the HBM limit and the MFU are null",
        }
    return gpu_spec(torch.cuda.get_device_name(device))


def gpu_spec(name: str) -> dict:
    """The first entry of `GPU_SPECS` whose substrings all occur in the device name `name`; null figures with a note
    where none matches."""
    for substrings, table_name, bandwidth, flops in GPU_SPECS:
        if all(substring in name for substring in substrings):
            return {
                "device_name": name,
                "table_name": table_name,
                "hbm_bytes_per_second": bandwidth,
                "bf16_dense_flops_per_second": flops,
                "note": "data-sheet figures (gpu_check.GPU_SPECS)",
            }
    return {
        "device_name": name,
        "table_name": None,
        "hbm_bytes_per_second": None,
        "bf16_dense_flops_per_second": None,
        "note": f"{name!r} is not in gpu_check.GPU_SPECS: the HBM limit and the MFU are null",
    }


def build_model(run: Run, shape: str):
    """`(model, processor)`: Gaze2Report with random weights, the scale's vision tower and gaze modules around the
    language model of `shape` ("1b", "8b"), in the run's dtype with sdpa attention, bound to its processor."""
    torch.manual_seed(run.seed)
    model, processor = build_gpu_model(
        run.scale["text_configs"][shape], run.scale["vision_config"], run.scale["gaze_config"], run.device, run.dtype
    )
    model.get_decoder().set_attn_implementation(ATTN_IMPLEMENTATION)
    return model, processor


def build_bare(model, run: Run):
    """The Gaze2Report model's language model and head as a plain causal LM (train_step.build_baseline), sdpa."""
    bare = build_baseline(model, run.device, run.dtype)
    bare.set_attn_implementation(ATTN_IMPLEMENTATION)
    return bare


def extend_to_sequence_length(batch: dict, length: int, prompt_length: int) -> dict:
    """A collated training batch made exactly `length` tokens long. The synthetic reports are far shorter than a
    training sequence of 512 tokens, so each row keeps the processor's prompt (its first `prompt_length` tokens: the
    <gaze> placeholders, or the baseline's ordinary token in their place, and the instruction) and then repeats its
    own report tokens (EOS included) up to `length`; every position is attended and every report position labelled.
    Applied to Gaze2Report's and the baseline's batches alike, it leaves their labels equal and their prompts as
    `make_batches` wrote them, so the two still do the same language-model work."""
    if prompt_length >= length:
        raise ValueError(f"The prompt holds {prompt_length} tokens: a sequence of {length} leaves no report tokens")
    input_ids, labels = batch["input_ids"], batch["labels"]  # (batch, collated length) each
    report_length = length - prompt_length
    rows = []
    for row_ids, row_labels in zip(input_ids, labels):
        report = row_ids[row_labels != -100]  # (report tokens + EOS,)
        repeated = report.repeat(-(-report_length // len(report)))[:report_length]  # (length - prompt_length,)
        rows.append(torch.cat([row_ids[:prompt_length], repeated]))
    extended = torch.stack(rows)  # (batch, length)
    in_prompt = torch.arange(length, device=extended.device) < prompt_length  # (length,)
    return {
        **batch,
        "input_ids": extended,
        "attention_mask": torch.ones_like(extended),
        "labels": extended.masked_fill(in_prompt, -100),
    }


def extend_prompt(inputs: dict, length: int, filler_ids: list[int]) -> dict:
    """Generation prompts made `length` tokens long by ordinary text before the processor's prompt (`filler_ids`
    repeated, standing for a clinical history), all attended; the visual-gaze placeholders and the instruction stay
    as the processor wrote them. Applied to Gaze2Report's and the bare model's prompts alike, it keeps them equally
    long."""
    input_ids = inputs["input_ids"]  # (batch, processor prompt length)
    missing = length - input_ids.shape[1]
    if missing < 0:
        raise ValueError(f"The processor's prompt holds {input_ids.shape[1]} tokens, more than the {length} asked for")
    repeated = torch.tensor(filler_ids, device=input_ids.device).repeat(-(-missing // len(filler_ids)))
    filler = repeated[:missing].expand(input_ids.shape[0], -1)  # (batch, missing)
    return {
        **inputs,
        "input_ids": torch.cat([filler, input_ids], dim=1),
        "attention_mask": torch.cat([torch.ones_like(filler), inputs["attention_mask"]], dim=1),
    }


def generation_inputs(model, processor, run: Run) -> tuple[dict, dict]:
    """`generate.make_inputs`' prompts for the scale's batch, lengthened to the scale's prompt length."""
    gaze_inputs, bare_inputs = make_inputs(model, processor, run.scale["generate_batch_size"], run.seed, run.device)
    filler_ids = processor.tokenizer.encode(processor.instruction, add_special_tokens=False)
    return tuple(extend_prompt(inputs, run.scale["prompt_length"], filler_ids) for inputs in (gaze_inputs, bare_inputs))


def training_batches(model, processor, run: Run) -> tuple[dict, dict, int]:
    """`train_step.make_batches`' two batches for the scale's batch size, made the scale's sequence length."""
    gaze_batch, baseline_batch, num_with_gaze = make_batches(
        processor,
        model.config.gaze_token_id,
        run.scale["train_batch_size"],
        model.config.image_size,
        run.seed,
        run.device,
        run.dtype,
    )
    length, prompt_length = run.scale["train_sequence_length"], len(processor.prompt_ids)
    return (
        extend_to_sequence_length(gaze_batch, length, prompt_length),
        extend_to_sequence_length(baseline_batch, length, prompt_length),
        num_with_gaze,
    )


def apply_stage_two_lora(model):
    """LoRA as stage 2 trains it: `apply_lora` with `LORA`, the vision tower trained only where the config says so."""
    return apply_lora(
        model,
        r=LORA["r"],
        alpha=LORA["alpha"],
        dropout=LORA["dropout"],
        train_vision_tower=not model.config.freeze_vision_tower,
    )


def text_model_summary(model) -> dict:
    text_config = model.config.text_config
    return {
        name: getattr(text_config, name)
        for name in (
            "model_type",
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "tie_word_embeddings",
        )
    }


def training_flops(model, batch: dict) -> dict:
    """Model FLOPs of one training step by `TRAINING_FLOPS_FORMULA`, for the model before LoRA wraps it."""
    text_config = model.config.text_config
    body = model.model.language_model
    body_parameters = sum(p.numel() for p in body.parameters()) - body.get_input_embeddings().weight.numel()
    head_parameters = model.lm_head.weight.numel()
    batch_size, sequence_length = batch["input_ids"].shape
    tokens = batch_size * sequence_length
    scored_tokens = int((batch["labels"][:, 1:] != -100).sum())
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    attention_width = text_config.num_attention_heads * head_dim
    flops = (
        6 * body_parameters * tokens
        + 6 * head_parameters * scored_tokens
        + 12 * text_config.num_hidden_layers * attention_width * sequence_length * tokens
    )
    return {
        "formula": TRAINING_FLOPS_FORMULA,
        "flops_per_step": flops,
        "N_body": body_parameters,
        "N_head": head_parameters,
        "tokens": tokens,
        "scored_tokens": scored_tokens,
        "layers": text_config.num_hidden_layers,
        "attention_width": attention_width,
        "sequence_length": sequence_length,
    }


def set_activation_checkpointing(language_models: list, enabled: bool) -> None:
    """Activation checkpointing (transformers' default: non-reentrant) on or off in each language-model body, and a
    check that all agree."""
    for language_model in language_models:
        if enabled:
            language_model.activation_checkpointing_enable()
        else:
            language_model.activation_checkpointing_disable()
    states = [language_model.is_activation_checkpointing for language_model in language_models]
    if states != [enabled] * len(language_models):
        raise RuntimeError(f"Activation checkpointing should be {enabled} in every language model, got {states}")


def measure_train_step(record: dict, run: Run, shape: str, checkpointing_settings: tuple) -> None:
    """The stage-2 step against the LoRA baseline (`train_step.compare_training`), once per checkpointing setting."""
    if run.device.type == "cpu" and not cpu_peak_memory_supported():
        raise RuntimeError("Measuring CPU peak memory needs Linux's /proc/self/clear_refs and /proc/self/status.")
    model, processor = build_model(run, shape)
    baseline = build_bare(model, run)
    gaze_batch, baseline_batch, num_with_gaze = training_batches(model, processor, run)
    flops = training_flops(model, gaze_batch)
    gaze_model = apply_stage_two_lora(model)
    baseline_model, target_modules, num_lora_layers = apply_same_lora(
        baseline, gaze_model, LORA["r"], LORA["alpha"], LORA["dropout"]
    )
    batch_size, sequence_length = gaze_batch["input_ids"].shape
    record.update(
        {
            "text_model": text_model_summary(model),
            "batch_size": batch_size,
            "sequence_length": sequence_length,
            "gaze_tokens_per_study": model.config.num_gaze_tokens,
            "studies_with_recorded_gaze": num_with_gaze,
            "vision_tower_trained": not model.config.freeze_vision_tower,
            "lora": {**LORA, "target_modules": target_modules, "layers": num_lora_layers},
            "model_flops": flops,
            "memory_in_use_before_steps_mb": start_memory_measurement(run.device) / MEGABYTE,
            "memory_note": "peak_memory_mb is what a model's training steps add over the memory in use with both "
            "models loaded (train_step.measure_peak_memory; CUDA: allocated bytes, CPU: the process's RSS); a "
            "model trained alone peaks near parameter_mb + peak_memory_mb",
            "runs": {},
        }
    )
    peak = run.spec["bf16_dense_flops_per_second"] if run.dtype == torch.bfloat16 else None
    bodies = [gaze_model.get_base_model().model.language_model, baseline_model.get_base_model().base_model]
    for checkpointing in checkpointing_settings:
        set_activation_checkpointing(bodies, checkpointing)
        comparison = compare_training(
            gaze_model,
            gaze_batch,
            baseline_model,
            baseline_batch,
            run.scale["train_warmup"],
            run.scale["train_steps"],
            run.device,
        )
        for name, peft_model in (("gaze2report", gaze_model), ("baseline", baseline_model)):
            summary = comparison[name]
            achieved = flops["flops_per_step"] / (summary["median_step_ms"] / 1000)
            summary["model_flops_per_second"] = achieved
            summary["mfu"] = achieved / peak if peak is not None else None
            summary["parameter_mb"] = sum(p.numel() * p.element_size() for p in peft_model.parameters()) / MEGABYTE
        if not checkpointing:
            comparison["gaze2report"]["forward_breakdown_ms"] = measure_forward_parts(
                gaze_model, gaze_batch, run.scale["train_steps"], run.device
            )
        run_name = "activation_checkpointing" if checkpointing else "no_checkpointing"
        record["runs"][run_name] = {"activation_checkpointing": checkpointing, **comparison}
        gaze, base, spread = comparison["gaze2report"], comparison["baseline"], comparison["overhead_ratio_spread"]
        for label, summary in (("Gaze2Report", gaze), ("baseline", base)):
            mfu = "n/a" if summary["mfu"] is None else f"{summary['mfu']:.3f}"
            say(
                f"train {shape} {run_name} {label}: {summary['median_step_ms']:.1f} ms/step, "
                f"{summary['tokens_per_second']:.0f} tokens/s, MFU {mfu}, peak +{summary['peak_memory_mb']:.0f} MB"
            )
        say(f"train {shape} {run_name}: overhead {spread['median']:.3f}x ({spread['min']:.3f}-{spread['max']:.3f})")
        run.save()


def hbm_limit(bare, batch_size: int, cached_positions: float, bandwidth: float | None) -> dict:
    """The bytes a decode step must read from HBM and the time that takes at `bandwidth` (`HBM_LIMIT_FORMULA`)."""
    config = bare.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    embedding = bare.get_input_embeddings().weight
    weight_bytes = sum(p.numel() * p.element_size() for p in bare.parameters())
    if embedding is not bare.get_output_embeddings().weight:
        weight_bytes -= embedding.numel() * embedding.element_size()
    kv_cache_bytes = (
        2
        * config.num_hidden_layers
        * batch_size
        * config.num_key_value_heads
        * head_dim
        * cached_positions
        * embedding.element_size()
    )
    limit_ms = None if bandwidth is None else 1000 * (weight_bytes + kv_cache_bytes) / bandwidth
    return {
        "formula": HBM_LIMIT_FORMULA,
        "weight_bytes": weight_bytes,
        "kv_cache_bytes": kv_cache_bytes,
        "cached_positions": cached_positions,
        "bandwidth_bytes_per_second": bandwidth,
        "limit_ms_per_step": limit_ms,
    }


def measure_generation(record: dict, run: Run, shape: str) -> None:
    """Greedy generation of Gaze2Report against its bare language model (`generate.measure_case`), per cache."""
    model, processor = build_model(run, shape)
    model.eval()
    bare = build_bare(model, run).eval()
    gaze_inputs, bare_inputs = generation_inputs(model, processor, run)
    batch_size, prompt_length = gaze_inputs["input_ids"].shape
    new_tokens = run.scale["new_tokens"]
    record.update(
        {
            "text_model": text_model_summary(model),
            "batch_size": batch_size,
            "prompt_length": prompt_length,
            "gaze_tokens_per_prompt": model.config.num_gaze_tokens,
            "new_tokens": new_tokens,
            "repeats": run.scale["generate_repeats"],
            "caches": {},
        }
    )
    cached_positions = {"dynamic": prompt_length + new_tokens / 2, "static": prompt_length + new_tokens}
    for cache in CACHES:
        start = time.perf_counter()
        case = measure_case(
            model,
            bare,
            gaze_inputs,
            bare_inputs,
            new_tokens,
            cache,
            run.scale["generate_repeats"],
            processor.tokenizer.pad_token_id,
            run.device,
        )
        case["case_wall_s"] = time.perf_counter() - start  # warm-up runs (and compilation) included
        # generate keeps the torch.compile'd forward it decodes with as `_compiled_call` (GenerationMixin's
        # get_compiled_call): on CUDA it compiles by itself with a static cache, on a CPU it does not.
        case["decode_compiled"] = {
            "gaze2report": hasattr(model, "_compiled_call"),
            "bare": hasattr(bare, "_compiled_call"),
        }
        limit = hbm_limit(bare, batch_size, cached_positions[cache], run.spec["hbm_bytes_per_second"])
        limit_ms = limit["limit_ms_per_step"]
        limit["limit_over_measured_decode_step"] = {
            name: None if limit_ms is None else limit_ms / case[name]["decode_step_ms"]
            for name in ("gaze2report", "bare")
        }
        case["hbm_limit"] = limit
        record["caches"][cache] = case
        hbm = "n/a" if limit_ms is None else f"{limit_ms:.2f} ms"
        say(
            f"generate {shape} {cache} cache (compiled: {case['decode_compiled']['gaze2report']}): Gaze2Report "
            f"{case['gaze2report']['decode_step_ms']:.2f} ms/step {case['gaze2report']['tokens_per_second']:.0f} "
            f"tokens/s, bare {case['bare']['decode_step_ms']:.2f} ms/step {case['bare']['tokens_per_second']:.0f} "
            f"tokens/s, ratio {case['throughput_ratio']:.3f}, HBM limit {hbm}/step"
        )
        run.save()


def measure_gaze_modules(record: dict, run: Run, shape: str) -> None:
    """Images/s of the scanpath predictor, the gaze graph encoder (graph building + GNN) and the projector, in eval
    mode without gradients, on patch features the vision tower computed beforehand."""
    model, _ = build_model(run, shape)
    model.eval()
    batch_size, image_size = run.scale["gaze_batch_size"], model.config.image_size
    with torch.no_grad():
        pixel_values = torch.randn(
            batch_size, 3, image_size, image_size, device=run.device, dtype=run.dtype
        )  # (batch, 3, image_size, image_size)
        # (batch, channels, grid, grid): (256, 768, 14, 14) for the ViT-B/16 at 224 px
        patch_features = encode_patch_features(model.model.vision_tower, pixel_values)
    parts = ("scanpath_predictor", "gaze_encoder", "projector")
    seconds = {part: [] for part in parts}
    passes, warmup = run.scale["gaze_passes"], run.scale["train_warmup"]
    with torch.no_grad():
        for index in range(warmup + passes):
            stamps = [time.perf_counter()]
            # the calls of Gaze2ReportModel.get_image_features after the vision tower (no gradients to detach here)
            scanpath = model.model.scanpath_predictor(patch_features)  # fixations (batch, max_fixations, 3)
            synchronize(run.device)
            stamps.append(time.perf_counter())
            # (batch, patch_pool_size**2 + max_fixations, gnn_hidden_size): the graph is built inside
            node_states = model.model.gaze_encoder(patch_features, scanpath.fixations, scanpath.fixation_mask)
            synchronize(run.device)
            stamps.append(time.perf_counter())
            model.model.projector(node_states)  # (batch, num_gaze_tokens, text_hidden_size)
            synchronize(run.device)
            stamps.append(time.perf_counter())
            if index >= warmup:
                for part, begin, end in zip(parts, stamps, stamps[1:]):
                    seconds[part].append(end - begin)
    median_ms = {part: 1000 * statistics.median(seconds[part]) for part in parts}
    predictor_and_graph_s = statistics.median(
        predictor + encoder for predictor, encoder in zip(seconds["scanpath_predictor"], seconds["gaze_encoder"])
    )
    with_projector_s = statistics.median(map(sum, zip(*seconds.values())))
    record.update(
        {
            "batch_size": batch_size,
            "patch_features_shape": list(patch_features.shape),
            "passes": passes,
            "median_ms": median_ms,
            "images_per_second": batch_size / predictor_and_graph_s,  # scanpath predictor + graph + GNN
            "images_per_second_with_projector": batch_size / with_projector_s,
        }
    )
    say(
        f"gaze modules, batch {batch_size}: {record['images_per_second']:.0f} images/s (predictor + graph + GNN), "
        f"{record['images_per_second_with_projector']:.0f} with the projector; median ms {median_ms}"
    )


def check_reload(model, inputs: dict, run: Run) -> dict:
    """save_pretrained -> from_pretrained gives the same eval-mode logits (torch.testing.assert_close)."""
    with torch.no_grad():
        expected = model(**inputs).logits  # (batch, prompt length, vocab)
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        reloaded = Gaze2ReportForConditionalGeneration.from_pretrained(directory, dtype=run.dtype).to(run.device)
    reloaded.eval().get_decoder().set_attn_implementation(ATTN_IMPLEMENTATION)
    with torch.no_grad():
        actual = reloaded(**inputs).logits  # (batch, prompt length, vocab)
    message = None
    try:
        torch.testing.assert_close(actual, expected)
    except AssertionError as error:
        message = str(error)
    return {
        "passed": message is None,
        "max_abs_difference": (actual - expected).abs().max().item(),
        "dtype": str(actual.dtype).removeprefix("torch."),
        "message": message,
    }


def check_greedy_caches(model, inputs: dict, pad_token_id: int, run: Run) -> dict:
    """Greedy reports with the dynamic and the static cache (compiled on CUDA), the model in float32 (`GREEDY_NOTE`);
    the model returns to the run's dtype."""
    model.to(torch.float32)
    try:
        generated = {
            cache: timed_generate(model, inputs, run.scale["new_tokens"], cache, pad_token_id, run.device)[1]
            for cache in CACHES
        }  # (batch, new tokens) each
    finally:
        model.to(run.dtype)
    same = generated["dynamic"] == generated["static"]  # (batch, new tokens)
    first_differences = [None if row.all() else int((~row).nonzero()[0]) for row in same]
    return {
        "passed": bool(same.all()),
        "dtype": "float32",
        "new_tokens": run.scale["new_tokens"],
        "matching_token_fraction": same.float().mean().item(),
        "first_differing_step": first_differences,
        "static_decode_compiled": hasattr(model, "_compiled_call"),
        "note": GREEDY_NOTE,
    }


def check_forward_backward(model, processor, run: Run) -> dict:
    """One stage-2 forward/backward (LoRA as `apply_stage_two_lora`, train mode, the training batch) in the run's
    dtype: the loss and every trainable parameter's gradient are finite."""
    gaze_model = apply_stage_two_lora(model)
    gaze_batch, _, _ = training_batches(model, processor, run)
    gaze_model.train()
    loss = gaze2report_loss(gaze_model, gaze_batch)
    loss.backward()
    trainable = [(name, p) for name, p in gaze_model.named_parameters() if p.requires_grad]
    without_gradient = [name for name, p in trainable if p.grad is None]
    non_finite = [name for name, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    return {
        "passed": math.isfinite(loss.item()) and not non_finite,
        "dtype": str(run.dtype).removeprefix("torch."),
        "loss": loss.item(),
        "trainable_tensors": len(trainable),
        "tensors_without_gradient": without_gradient[:20],
        "tensors_with_non_finite_gradient": non_finite[:20],
    }


def check_correctness(record: dict, run: Run, shape: str) -> None:
    """Reload, greedy-cache and forward/backward checks on one model of `shape`; `all_passed` sums them up."""
    model, processor = build_model(run, shape)
    model.eval()
    gaze_inputs, _ = generation_inputs(model, processor, run)
    checks = (
        ("reload_same_logits", lambda: check_reload(model, gaze_inputs, run)),
        (
            "greedy_identical_across_caches",
            lambda: check_greedy_caches(model, gaze_inputs, processor.tokenizer.pad_token_id, run),
        ),
        ("forward_backward_finite", lambda: check_forward_backward(model, processor, run)),
    )
    for name, check in checks:
        record[name] = check()
        details = {key: value for key, value in record[name].items() if key not in ("passed", "note")}
        say(f"correctness {name}: {'passed' if record[name]['passed'] else 'FAILED'} {details}")
        run.save()
    record["all_passed"] = all(record[name]["passed"] for name, _ in checks)


def section_measures(run: Run) -> dict:
    """Each section's name and the call that fills its record."""
    return {
        "correctness": lambda record: check_correctness(record, run, "1b"),
        "gaze_modules": lambda record: measure_gaze_modules(record, run, "1b"),
        "train_step_1b": lambda record: measure_train_step(record, run, "1b", (False,)),
        "generate_1b": lambda record: measure_generation(record, run, "1b"),
        "train_step_8b": lambda record: measure_train_step(record, run, "8b", (False, True)),
        "generate_8b": lambda record: measure_generation(record, run, "8b"),
    }


def free_device_memory(device: torch.device) -> None:
    """Drops compiled graphs (which hold their models and, on CUDA, their CUDA-graph memory pools), collects garbage
    and returns freed memory (train_step.release_freed_memory)."""
    torch.compiler.reset()
    release_freed_memory(device)


def run_section(name: str, measure, report: dict, run: Run) -> None:
    """Runs one section into `report[name]`, records an exception as the section's error instead of raising it (the
    next section still runs), frees the device memory and rewrites the JSON."""
    record = report[name] = {"status": "running"}
    say(f"{name}: started")
    start = time.perf_counter()
    try:
        measure(record)
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - a failing section must not cost the later ones their device time
        record.update(
            {
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
                "traceback_tail": traceback.format_exc()[-4000:],
            }
        )
        say(f"{name}: ERROR {record['error']}")
    record["wall_s"] = time.perf_counter() - start
    free_device_memory(run.device)
    run.save()
    say(f"{name}: {record['status']} in {record['wall_s']:.1f} s")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the results (written atomically)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="the same code paths at tiny shapes on the CPU in float32 (under a minute)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="the sections to run (default: all); the others are written as not selected",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    check_arguments(parser, args, {"seed": 0})
    return args


def main(argv=None) -> dict:
    """Runs the selected sections in order, printing each figure, and returns the JSON report it writes."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit(
            "gpu_check.py needs a CUDA GPU, and torch.cuda.is_available() is False on this machine; nothing was "
            "written. Run it on a GPU machine, or pass --dry-run for the same code paths at tiny shapes on the "
            "CPU."
        )
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    scale = DRY_RUN_SCALE if args.dry_run else GPU_SCALE
    report = {
        "setup": {
            "dry_run": args.dry_run,
            "device": device_spec(device),
            "dtype": str(dtype).removeprefix("torch."),
            "attn_implementation": ATTN_IMPLEMENTATION,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "seed": args.seed,
            "sections_selected": args.sections,
            "scale": scale,
        },
        **{name: {"status": "pending" if name in args.sections else "not selected"} for name in SECTIONS},
    }
    run = Run(
        scale=scale,
        device=device,
        dtype=dtype,
        spec=report["setup"]["device"],
        seed=args.seed,
        save=lambda: write_json_atomically(args.output, report),
    )
    say(f"{report['setup']['device']['device_name']}, {report['setup']['dtype']}, sections {args.sections}")
    run.save()
    start = time.perf_counter()
    measures = section_measures(run)
    for name in SECTIONS:
        if name in args.sections:
            run_section(name, measures[name], report, run)
    report["setup"]["wall_s"] = time.perf_counter() - start
    run.save()
    say(
        f"done in {report['setup']['wall_s']:.1f} s: "
        + ", ".join(f"{name} {report[name]['status']}" for name in SECTIONS)
    )
    return report


if __name__ == "__main__":
    main()
