"""One-process GPU check of Gaze2Report at real shapes, with random weights (nothing is downloaded): correctness on the
device, the gaze modules' throughput, and the training-step and generation cost against the baseline at
Llama-3.2-1B's and Llama-3.1-8B's shapes, in bfloat16, written to one JSON file. README.md describes each section.

    python -m benchmarks.gpu_check --output gpu_check.json
    python -m benchmarks.gpu_check --output gpu_check.json --sections generate_8b   # rerun one section
    python -m benchmarks.gpu_check --dry-run --output gpu_check_dry.json            # tiny shapes, CPU, float32
"""

import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration, Gaze2ReportProcessor
from modeling_gaze2report.backbones import smollm2_instruct_dir
from modeling_gaze2report.presets import load_preset

from . import common

SECTIONS = ("correctness", "gaze_modules", "train_step_1b", "generate_1b", "train_step_8b", "generate_8b")
ATTN_IMPLEMENTATION = "sdpa"
# Llama-3.2-1B's and Llama-3.1-8B's language models and a ViT-B/16 at 224 px (frozen, as in stage 2) around the
# rad-dino-llama3.2-1b preset's gaze modules (96 visual-gaze tokens).
LLAMA_1B = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
    "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
}  # fmt: skip
LLAMA_8B = {**LLAMA_1B, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "tie_word_embeddings": False}  # fmt: skip
GAZE_AROUND_VIT_B16 = {
    **load_preset("rad-dino-llama3.2-1b")["config"], "image_size": 224,
    "vision_config": {"model_type": "vit", "image_size": 224, "patch_size": 16, "hidden_size": 768,
                      "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}  # fmt: skip
GPU_SCALE = {
    "configs": {"1b": {**GAZE_AROUND_VIT_B16, "text_config": LLAMA_1B},
                "8b": {**GAZE_AROUND_VIT_B16, "text_config": LLAMA_8B}},
    "train_batch_size": 8, "train_sequence_length": 512, "train_steps": 8, "train_warmup": 2,
    "generate_batch_size": 16, "prompt_length": 256, "new_tokens": 128, "generate_repeats": 2,
    "gaze_batch_size": 256, "gaze_passes": 10,
}  # fmt: skip
# The tiny preset, its tower frozen as in stage 2; its language models hold SmolLM2's 49152 tokens and <gaze> (as
# Llama's 128256 do at full size); the "8b" one has an untied head, as Llama-3.1-8B, and a layer more.
TINY = {**load_preset("tiny")["config"], "freeze_vision_tower": True}
TINY_TEXT = {**TINY["text_config"], "vocab_size": 49280}
DRY_RUN_SCALE = {
    "configs": {"1b": {**TINY, "text_config": TINY_TEXT},
                "8b": {**TINY, "text_config": {**TINY_TEXT, "num_hidden_layers": 3, "tie_word_embeddings": False}}},
    "train_batch_size": 2, "train_sequence_length": 96, "train_steps": 2, "train_warmup": 1,
    "generate_batch_size": 2, "prompt_length": 64, "new_tokens": 8, "generate_repeats": 1,
    "gaze_batch_size": 8, "gaze_passes": 2,
}  # fmt: skip
# Data-sheet figures: (substrings that must all occur in the device's name, table name, HBM bytes/s, dense bfloat16
# FLOP/s); the first row that matches applies.
GPU_SPECS = (
    (("H200",), "H200", 4.8e12, 989e12),
    (("H100", "HBM3"), "H100 SXM", 3.35e12, 989e12),
    (("H100", "PCIe"), "H100 PCIe", 2.0e12, 756e12),
    (("A100", "80GB"), "A100 80GB", 2.0e12, 312e12),
)
TRAINING_FLOPS_FORMULA = (
    "6 * N_body * tokens + 6 * N_head * scored_tokens + 12 * layers * attention_width * sequence_length * tokens "
    "(PaLM's model FLOPs; benchmarks/README.md)"
)
HBM_LIMIT_FORMULA = "(weight_bytes + kv_cache_bytes) / bandwidth (benchmarks/README.md)"


@dataclass(frozen=True)
class Run:
    """What every section needs: the scale's configs and counts, the device and dtype, the data-sheet figures, the
    seed and `save` (rewrites the JSON with the figures so far)."""

    scale: dict
    device: torch.device
    dtype: torch.dtype
    spec: dict
    seed: int
    save: Callable[[], None]


def say(message: str) -> None:
    print(f"[gpu_check] {message}", flush=True)


def gpu_spec(name: str) -> dict:
    """The device's name and the data-sheet figures of the first `GPU_SPECS` row whose substrings all occur in it;
    null figures where none matches (a CPU included): the HBM limit and the MFU are then null."""
    row = next((row for row in GPU_SPECS if all(part in name for part in row[0])), (None, None, None, None))
    return {"device_name": name, "table_name": row[1], "hbm_bytes_per_second": row[2],
            "bf16_dense_flops_per_second": row[3]}  # fmt: skip


def build_model(run: Run, shape: str) -> tuple:
    """`(model, processor)`: Gaze2Report with random weights of the scale's config `shape` ("1b", "8b") on the run's
    device, in its dtype with sdpa attention, bound to a processor with SmolLM2's tokenizer."""
    torch.manual_seed(run.seed)
    config = Gaze2ReportConfig(**run.scale["configs"][shape])
    with run.device:
        model = Gaze2ReportForConditionalGeneration(config).to(run.dtype)
    sizes = {name: getattr(config, name) for name in ("image_size", "num_gaze_tokens", "max_fixations")}
    processor = Gaze2ReportProcessor.from_pretrained_backbones(None, str(smollm2_instruct_dir()), **sizes)
    model.bind_processor(processor)
    model.get_decoder().set_attn_implementation(ATTN_IMPLEMENTATION)
    return model, processor


def training_flops(model, batch: dict) -> dict:
    """Model FLOPs of one training step by `TRAINING_FLOPS_FORMULA`, counting the language model's own weights (not
    the input embedding table, a lookup, nor LoRA's adapters)."""
    text_config, body = model.config.text_config, model.model.language_model
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    batch_size, sequence_length = batch["input_ids"].shape
    counts = {
        "N_body": sum(p.numel() for name, p in body.named_parameters() if "lora_" not in name)
        - body.get_input_embeddings().weight.numel(),
        "N_head": model.lm_head.weight.numel(),
        "tokens": batch_size * sequence_length,
        "scored_tokens": int(common.scored_positions(batch["labels"]).sum()),
        "layers": text_config.num_hidden_layers,
        "attention_width": text_config.num_attention_heads * head_dim,
        "sequence_length": sequence_length,
    }
    flops = 6 * counts["N_body"] * counts["tokens"] + 6 * counts["N_head"] * counts["scored_tokens"]
    flops += 12 * counts["layers"] * counts["attention_width"] * sequence_length * counts["tokens"]
    return {"formula": TRAINING_FLOPS_FORMULA, "flops_per_step": flops, **counts}


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(parameter.numel() * parameter.element_size() for parameter in module.parameters())


def hbm_limit(bare, batch_size: int, cached_positions: float, bandwidth: float | None) -> dict:
    """The bytes a decode step must read from HBM and the time that takes at `bandwidth` (`HBM_LIMIT_FORMULA`): the
    language model's parameters (less an input embedding table not shared with the head, whose lookup reads a few
    rows) and the key-value cache of `cached_positions` positions."""
    config = bare.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    embedding = bare.get_input_embeddings().weight
    weight_bytes = parameter_bytes(bare)
    if embedding is not bare.get_output_embeddings().weight:
        weight_bytes -= embedding.numel() * embedding.element_size()
    kv_cache_bytes = 2 * config.num_hidden_layers * batch_size * config.num_key_value_heads * head_dim
    kv_cache_bytes *= cached_positions * embedding.element_size()
    return {
        "formula": HBM_LIMIT_FORMULA,
        "weight_bytes": weight_bytes,
        "kv_cache_bytes": kv_cache_bytes,
        "cached_positions": cached_positions,
        "bandwidth_bytes_per_second": bandwidth,
        "limit_ms_per_step": None if bandwidth is None else 1000 * (weight_bytes + kv_cache_bytes) / bandwidth,
    }


def measure_train_step(record: dict, run: Run, shape: str, checkpointing_settings: tuple) -> None:
    """The stage-2 step against the baseline (`common.compare_training`), once per activation-checkpointing setting,
    with model FLOPs, MFU and parameter memory beside each model's figures."""
    model, processor = build_model(run, shape)
    scale = run.scale
    runs, description = common.prepare_training(
        model, processor, scale["train_batch_size"], run.seed, scale["train_sequence_length"]
    )
    flops = training_flops(model, runs["gaze2report"][2])
    record.update({**description, "model_flops": flops, "runs": {}})
    peak = run.spec["bf16_dense_flops_per_second"] if run.dtype == torch.bfloat16 else None
    bodies = [peft_model.get_base_model().get_decoder() for peft_model, _, _ in runs.values()]
    for checkpointing in checkpointing_settings:
        for body in bodies:
            body.activation_checkpointing_enable() if checkpointing else body.activation_checkpointing_disable()
        if [body.is_activation_checkpointing for body in bodies] != [checkpointing] * 2:
            raise RuntimeError(f"Activation checkpointing should be {checkpointing} in both language models")
        comparison = common.compare_training(runs, scale["train_warmup"], scale["train_steps"])
        for name, (peft_model, _, _) in runs.items():
            summary = comparison[name]
            summary["model_flops_per_second"] = flops["flops_per_step"] / (summary["median_step_ms"] / 1000)
            summary["mfu"] = None if peak is None else summary["model_flops_per_second"] / peak
            summary["parameter_mb"] = parameter_bytes(peft_model) / common.MEGABYTE
        if not checkpointing:
            comparison["gaze2report"]["forward_breakdown_ms"] = common.forward_breakdown(
                runs["gaze2report"][0], runs["gaze2report"][2], scale["train_steps"]
            )
        run_name = "activation_checkpointing" if checkpointing else "no_checkpointing"
        record["runs"][run_name] = {"activation_checkpointing": checkpointing, **comparison}
        steps = {name: f"{comparison[name]['median_step_ms']:.1f} ms (MFU {comparison[name]['mfu']})" for name in runs}
        say(f"train {shape} {run_name}: {steps}, overhead {comparison['overhead_ratio_spread']}")
        run.save()


def measure_generation(record: dict, run: Run, shape: str) -> None:
    """Greedy generation of Gaze2Report against the baseline (`common.compare_generation`) per cache, with the HBM
    limit of a decode step beside it."""
    model, processor = build_model(run, shape)
    bare = common.build_baseline(model.eval()).eval()
    runs = common.make_generation_inputs(
        model, processor, bare, run.scale["generate_batch_size"], run.seed, run.scale["prompt_length"]
    )
    batch_size, prompt_length = runs["gaze2report"][1]["input_ids"].shape
    new_tokens, repeats = run.scale["new_tokens"], run.scale["generate_repeats"]
    record.update({"text_model": common.text_model(model), "batch_size": batch_size, "prompt_length": prompt_length,
                   "gaze_tokens_per_prompt": model.config.num_gaze_tokens, "new_tokens": new_tokens,
                   "repeats": repeats, "caches": {}})  # fmt: skip
    # the static cache's attention reads its whole buffer every step; the dynamic one grows: its mean over the steps
    cached_positions = {"dynamic": prompt_length + new_tokens / 2, "static": prompt_length + new_tokens}
    for cache in common.CACHES:
        start = time.perf_counter()
        case = common.compare_generation(runs, new_tokens, cache, repeats, processor.tokenizer.pad_token_id)
        case["case_wall_s"] = time.perf_counter() - start  # warm-up runs (and compilation) included
        # generate keeps the torch.compile'd forward it decodes with as `_compiled_call`: on CUDA it compiles by
        # itself with a static cache, on a CPU it does not
        case["decode_compiled"] = {name: hasattr(generator, "_compiled_call") for name, (generator, _) in runs.items()}
        limit = hbm_limit(bare, batch_size, cached_positions[cache], run.spec["hbm_bytes_per_second"])
        limit_ms = limit["limit_ms_per_step"]
        limit["limit_over_measured_decode_step"] = {
            name: None if limit_ms is None else limit_ms / case[name]["decode_step_ms"] for name in runs
        }
        record["caches"][cache] = {**case, "hbm_limit": limit}
        steps = {name: case[name]["decode_step_ms"] for name in runs}
        say(f"generate {shape} {cache}: decode step ms {steps}, HBM limit {limit['limit_ms_per_step']} ms")
        run.save()


def measure_gaze_modules(record: dict, run: Run, shape: str) -> None:
    """Images/s of the scanpath predictor and the gaze graph encoder (graph building + GNN), and with the projector,
    timed by hooks inside `get_image_features` (eval mode, no gradients; the vision tower runs but is not counted)."""
    model, _ = build_model(run, shape)
    batch_size, size, passes = run.scale["gaze_batch_size"], model.config.image_size, run.scale["gaze_passes"]
    pixel_values = torch.randn(batch_size, 3, size, size, device=run.device, dtype=run.dtype)  # (batch, 3, size, size)
    parts = {name: getattr(model.model, name) for name in ("scanpath_predictor", "gaze_encoder", "projector")}
    with torch.no_grad():
        encode = lambda: model.eval().model.get_image_features(pixel_values)  # noqa: E731
        median_ms = common.time_parts(encode, parts, passes, run.device, warmup=run.scale["train_warmup"])
    predictor_and_graph_s = (median_ms["scanpath_predictor"] + median_ms["gaze_encoder"]) / 1000
    with_projector_s = predictor_and_graph_s + median_ms["projector"] / 1000
    record.update({"batch_size": batch_size, "passes": passes, "median_ms": median_ms,
                   "images_per_second": batch_size / predictor_and_graph_s,
                   "images_per_second_with_projector": batch_size / with_projector_s})  # fmt: skip
    say(f"gaze modules, batch {batch_size}: {record['images_per_second']:.0f} images/s; median ms {median_ms}")


def check_reload(model, processor, inputs: dict, run: Run) -> dict:
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
    difference = (actual - expected).abs().max().item()
    return {"passed": message is None, "max_abs_difference": difference, "message": message}


def check_greedy_caches(model, processor, inputs: dict, run: Run) -> dict:
    """Greedy reports with the dynamic and the static cache (compiled on CUDA) are identical, the model in float32
    (with random weights the top two logits are close, so bfloat16 rounding would not tell a cache bug from
    rounding); the model returns to the run's dtype."""
    new_tokens = run.scale["new_tokens"]
    try:
        model.to(torch.float32)
        generated = [
            common.timed_generate(model, inputs, new_tokens, cache, processor.tokenizer.pad_token_id)[1]
            for cache in common.CACHES
        ]
    finally:
        model.to(run.dtype)
    same = generated[0] == generated[1]  # (batch, new tokens)
    return {"passed": bool(same.all()), "dtype": "float32", "new_tokens": new_tokens,
            "matching_token_fraction": same.float().mean().item(),
            "first_differing_step": [None if row.all() else int((~row).nonzero()[0]) for row in same],
            "static_decode_compiled": hasattr(model, "_compiled_call")}  # fmt: skip


def check_forward_backward(model, processor, inputs: dict, run: Run) -> dict:
    """One stage-2 forward/backward (LoRA and the batch of `common.prepare_training`, train mode) in the run's dtype:
    the loss and every trainable parameter's gradient are finite."""
    runs, _ = common.prepare_training(
        model, processor, run.scale["train_batch_size"], run.seed, run.scale["train_sequence_length"]
    )
    gaze_model, _, batch = runs["gaze2report"]
    loss = common.gaze2report_loss(gaze_model.train(), batch)
    loss.backward()
    trainable = [(name, p) for name, p in gaze_model.named_parameters() if p.requires_grad]
    non_finite = [name for name, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    return {"passed": bool(torch.isfinite(loss)) and not non_finite, "loss": loss.item(),
            "trainable_tensors": len(trainable),
            "tensors_without_gradient": [name for name, p in trainable if p.grad is None][:20],
            "tensors_with_non_finite_gradient": non_finite[:20]}  # fmt: skip


def check_correctness(record: dict, run: Run, shape: str) -> None:
    """Reload, greedy-cache and forward/backward checks on one model of `shape`; `all_passed` sums them up."""
    model, processor = build_model(run, shape)
    inputs = common.make_generation_inputs(
        model.eval(), processor, None, run.scale["generate_batch_size"], run.seed, run.scale["prompt_length"]
    )["gaze2report"][1]
    checks = {
        "reload_same_logits": check_reload,
        "greedy_identical_across_caches": check_greedy_caches,
        "forward_backward_finite": check_forward_backward,
    }
    for name, check in checks.items():
        record[name] = check(model, processor, inputs, run)
        say(f"correctness {name}: {record[name]}")
        run.save()
    record["all_passed"] = all(record[name]["passed"] for name in checks)


def run_section(name: str, report: dict, run: Run) -> None:
    """Runs one section into `report[name]`, records an exception as the section's error instead of raising it (the
    next section still runs), drops compiled graphs and frees the device memory, and rewrites the JSON."""
    measure = {
        "correctness": lambda record: check_correctness(record, run, "1b"),
        "gaze_modules": lambda record: measure_gaze_modules(record, run, "1b"),
        "train_step_1b": lambda record: measure_train_step(record, run, "1b", (False,)),
        "generate_1b": lambda record: measure_generation(record, run, "1b"),
        "train_step_8b": lambda record: measure_train_step(record, run, "8b", (False, True)),
        "generate_8b": lambda record: measure_generation(record, run, "8b"),
    }[name]
    record = report[name] = {"status": "running"}
    start = time.perf_counter()
    try:
        measure(record)
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - a failing section must not cost the later ones their device time
        error_text = f"{type(error).__name__}: {error}"
        record.update({"status": "error", "error": error_text, "traceback_tail": traceback.format_exc()[-4000:]})
    record["wall_s"] = time.perf_counter() - start
    torch.compiler.reset()  # compiled graphs hold their models and, on CUDA, their CUDA-graph memory pools
    common.release_freed_memory(run.device)
    run.save()
    say(f"{name}: {record['status']} in {record['wall_s']:.1f} s {record.get('error', '')}")


def parse_args(argv=None):
    parser = common.benchmark_parser(__doc__, output_required=True)
    parser.add_argument("--dry-run", action="store_true", help="the same code paths at tiny shapes on the CPU")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="default: all")
    return common.parse_arguments(parser, argv, {})


def main(argv=None) -> dict:
    """Runs the selected sections in order, printing each figure, and returns the JSON report it writes."""
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit(
            "gpu_check needs a CUDA GPU, and torch.cuda.is_available() is False on this machine; nothing was "
            "written. Run it on a GPU machine, or pass --dry-run for the same code paths at tiny shapes on the CPU."
        )
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    scale = DRY_RUN_SCALE if args.dry_run else GPU_SCALE
    setup = {"dry_run": args.dry_run, "device": gpu_spec(common.describe_device(device)),
             "dtype": str(dtype).removeprefix("torch."), "attn_implementation": ATTN_IMPLEMENTATION,
             **common.environment(args), "seed": args.seed, "sections_selected": args.sections,
             "scale": scale}  # fmt: skip
    report = {"setup": setup}
    report.update({name: {"status": "pending" if name in args.sections else "not selected"} for name in SECTIONS})
    run = Run(scale, device, dtype, setup["device"], args.seed, save=lambda: common.write_json(args.output, report))
    say(f"{setup['device']['device_name']}, {setup['dtype']}, sections {args.sections}")
    run.save()
    start = time.perf_counter()
    for name in SECTIONS:
        if name in args.sections:
            run_section(name, report, run)
    setup["wall_s"] = time.perf_counter() - start
    run.save()
    say(f"done in {setup['wall_s']:.1f} s: " + ", ".join(f"{name} {report[name]['status']}" for name in SECTIONS))
    return report


if __name__ == "__main__":
    main()
