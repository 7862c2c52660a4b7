"""The main job: synthetic data -> two-stage training -> reports and scanpaths for held-out studies -> metrics.

Writes under the output folder: `model/` (loads with `from_pretrained` and `pipeline("gaze2report")`),
`reports.jsonl` (one line per held-out study), `metrics.json`, `metrics.md` and `overlays/*.png` (recorded gaze in
orange, predicted in cyan).
"""

import dataclasses
import json
import logging
import time
from pathlib import Path

from transformers import TrainingArguments

from ..checks_gaze2report import is_positive_integer
from ..data import make_synthetic_dataset
from ..evaluation.report_table import markdown_table, report_table
from ..files import write_output_folder, write_text_atomically
from ..precision_gaze2report import cast_language_model, resolve_language_model_dtype
from ..reporting import generate_records, headline_metrics, score_records, write_jsonl
from ..training import DataArguments, ModelArguments, RecipeArguments, run_training, write_model_card
from .diagnostics import image_reliance, write_overlays

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoBudget:
    num_studies: int
    held_out_studies: int  # in each of validation and test (test: unless test_studies is given); the rest train
    image_size: int
    scanpath_steps: int
    scanpath_learning_rate: float
    scanpath_batch_size: int
    finding_loss_weight: float
    report_steps: int
    batch_size: int
    lora_r: int
    learning_rate: float
    max_new_tokens: int
    generation_batch_size: int
    language_model_dtype: str  # "auto": the device's fast dtype (precision_gaze2report)
    attn_implementation: str | None
    test_studies: int | None = None  # held-out test studies when given (the gaze ablation's research setting)


# `tiny` is the smoke run (random tiny backbones); `demo-smollm2` the real demo, sized for 2 CPU cores of the slowest
# CPU it may meet (AVX2 only, where the language model trains in float32).
# fmt: off
BUDGETS = {
    "tiny": DemoBudget(num_studies=40, held_out_studies=4, image_size=64, scanpath_steps=20,
                       scanpath_learning_rate=1e-3, scanpath_batch_size=8, finding_loss_weight=1.0,
                       report_steps=30, batch_size=8, lora_r=8, learning_rate=2e-3, max_new_tokens=40,
                       generation_batch_size=8, language_model_dtype="float32", attn_implementation=None),
    "demo-smollm2": DemoBudget(num_studies=1000, held_out_studies=40, image_size=128, scanpath_steps=800,
                               scanpath_learning_rate=3e-3, scanpath_batch_size=8, finding_loss_weight=4.0,
                               report_steps=150, batch_size=4, lora_r=16, learning_rate=1e-3,
                               max_new_tokens=72, generation_batch_size=40, language_model_dtype="auto",
                               attn_implementation="eager"),
}
# fmt: on
MODEL_VARIANT_FIELDS = {"use_gaze": bool, "use_fixation_findings": bool, "visual_tokens": str}  # config values
DEMO_COMMAND = "demo"  # the name its output folders are marked with (files.mark_output_folder)


def demo_budget(
    preset: str, num_studies: int | None = None, report_steps: int | None = None, test_studies: int | None = None
) -> DemoBudget:
    """The budget a demo of `preset` runs with: the preset's, with `num_studies`, `report_steps` and `test_studies` in
    place of its own when given. `test_studies` must leave at least one training study beside the test and validation
    studies (`demo_dataset`)."""
    if preset not in BUDGETS:
        raise ValueError(f"The demo runs the presets {', '.join(BUDGETS)}; got {preset!r}")
    budget = BUDGETS[preset]
    num_studies = budget.num_studies if num_studies is None else num_studies
    if not is_positive_integer(num_studies) or num_studies < 10:
        raise ValueError(
            f"The demo needs at least 10 studies (2 held out for validation and 2 for test), got {num_studies!r}"
        )
    report_steps = budget.report_steps if report_steps is None else report_steps
    if not is_positive_integer(report_steps):
        raise ValueError(f"The demo's report-generation steps must be an integer >= 1, got {report_steps!r}")
    budget = dataclasses.replace(budget, num_studies=num_studies, report_steps=report_steps, test_studies=test_studies)
    if test_studies is not None:
        if not is_positive_integer(test_studies) or test_studies < 2:
            raise ValueError(f"The demo's test studies must be an integer >= 2, got {test_studies!r}")
        validation, test = held_out_counts(budget)
        if num_studies - validation - test < 1:
            raise ValueError(
                f"{test_studies} test and {validation} validation studies leave no training study of {num_studies}"
            )
    return budget


def held_out_counts(budget: DemoBudget) -> tuple[int, int]:
    """(validation, test) studies: `budget.held_out_studies` (at most a tenth of the studies, at least 2) in each, or
    `budget.test_studies` in test when given."""
    held_out = max(2, min(budget.held_out_studies, budget.num_studies // 10))
    return held_out, held_out if budget.test_studies is None else budget.test_studies


def run_demo(
    output_dir: str | Path = "outputs/demo",
    preset: str = "demo-smollm2",
    seed: int = 0,
    num_studies: int | None = None,
    report_steps: int | None = None,
    model_variant: dict | None = None,
    test_studies: int | None = None,
    compile_decoder_layers: bool = False,
) -> dict:
    """Runs the demo; returns the headline metrics (also in `metrics.json` with the budget that ran and the timings).

    `model_variant` changes what the preset builds (the gaze ablation's variants): config values among
    MODEL_VARIANT_FIELDS (`use_gaze`, `use_fixation_findings`, `visual_tokens`); the budget stays the demo's.
    `test_studies` (default: the budget's) sets how many held-out studies the reports are generated for.
    `compile_decoder_layers` runs stage 2's decoder layers compiled (the same computation; the first step pays the
    compilation, which pays back over long runs).

    Every output is written into a staging folder beside `output_dir` and moved into place at the end, replacing an
    earlier run's folder whole; a run that fails leaves `output_dir` as it was. `output_dir` must be new, empty or an
    earlier demo run's folder holding only what that run wrote (files.write_output_folder)."""
    budget = demo_budget(preset, num_studies, report_steps, test_studies)
    model_variant = dict(model_variant or {})
    wrong = [
        name
        for name, value in model_variant.items()
        if name not in MODEL_VARIANT_FIELDS or type(value) is not MODEL_VARIANT_FIELDS[name]
    ]
    if wrong:
        expected = ", ".join(f"{name} ({kind.__name__})" for name, kind in MODEL_VARIANT_FIELDS.items())
        raise ValueError(
            f"model_variant={model_variant!r} sets {', '.join(wrong)}, which it cannot: it sets {expected} alone"
        )

    def write(staging: Path) -> dict:
        return run_demo_into(staging, budget, preset, seed, model_variant, compile_decoder_layers)

    return write_output_folder(output_dir, "--output", DEMO_COMMAND, write)


def demo_dataset(budget: DemoBudget, seed: int, num_studies: int):
    """The demo's synthetic studies: the first ones train, then `held_out_counts(budget)` studies in validation and
    in test. Study i is the same whatever `num_studies` is, so a budget with more test studies keeps the training
    studies of one with fewer."""
    validation, test = held_out_counts(dataclasses.replace(budget, num_studies=num_studies))
    return make_synthetic_dataset(
        num_studies=num_studies,
        seed=seed,
        image_size=budget.image_size,
        split_fractions=((num_studies - validation - test) / num_studies, validation / num_studies, test / num_studies),
    )


def run_demo_into(
    output_dir: Path,
    budget: DemoBudget,
    preset: str,
    seed: int,
    model_variant: dict,
    compile_decoder_layers: bool,
) -> dict:
    """The demo's stages, each writing into `output_dir` (the staging folder); returns the summary."""
    timings, started = {}, time.perf_counter()
    dataset = demo_dataset(budget, seed, budget.num_studies)
    timings["data_s"] = time.perf_counter() - started
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=budget.report_steps,
        per_device_train_batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=seed,
        dataloader_num_workers=0,
    )
    dtype, dtype_reason = resolve_language_model_dtype(budget.language_model_dtype, training_args.device)
    dtype_name = str(dtype).removeprefix("torch.")
    logger.info("The demo runs the language model in %s: %s", dtype_name, dtype_reason)
    model_args = ModelArguments(
        lora_r=budget.lora_r,
        lora_alpha=2 * budget.lora_r,
        lora_dropout=0.0,
        language_model_dtype=dtype_name,
        attn_implementation=budget.attn_implementation,
        compile_decoder_layers=compile_decoder_layers,
    )
    data_args = DataArguments(
        data_source="synthetic",
        num_synthetic_studies=len(dataset["train"]),
        synthetic_image_size=budget.image_size,
        synthetic_seed=seed,
    )
    # the demo's vision tower starts from random weights: it learns at the graph modules' rate, not a fine-tuning one
    recipe = RecipeArguments(
        scanpath_max_steps=budget.scanpath_steps,
        scanpath_learning_rate=budget.scanpath_learning_rate,
        scanpath_batch_size=budget.scanpath_batch_size,
        finding_loss_weight=budget.finding_loss_weight,
        module_learning_rate=1e-3,
        vision_learning_rate=1e-3,
    )
    stage_started = time.perf_counter()
    model, processor, dataset = run_training(
        preset, model_args, data_args, recipe, training_args, model_variant, dataset=dataset, model_card=False
    )
    timings["training_s"] = time.perf_counter() - stage_started
    cast_language_model(model, dtype)  # generation runs in the dtype training did; model/ was saved in float32
    stage_started = time.perf_counter()
    records = generate_records(
        model, processor, dataset["test"], batch_size=budget.generation_batch_size, max_new_tokens=budget.max_new_tokens
    )
    timings["generation_s"] = time.perf_counter() - stage_started
    stage_started = time.perf_counter()
    reliance = image_reliance(model, processor, dataset["test"], num_studies=len(dataset["test"]))
    timings["image_reliance_s"] = time.perf_counter() - stage_started
    results = score_records(records)
    table = report_table(
        [record["generated_report"] for record in records],
        [record["reference_report"] for record in records],
        scores=results,
    )
    reliance_headline = {name: value for name, value in reliance.items() if name not in ("num_studies", "per_study")}
    headline = {**headline_metrics(results), **reliance_headline}
    write_jsonl(output_dir / "reports.jsonl", records)
    write_overlays(records, dataset["test"], output_dir / "overlays")
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "preset": preset,
        "seed": seed,
        "model_variant": model_variant,
        "budget": dataclasses.asdict(budget),
        "language_model_dtype": {"dtype": dtype_name, "reason": dtype_reason},
        "headline": headline,
        "timings": timings,
        "compile_decoder_layers": compile_decoder_layers,
        "table": table,
        "metrics": results,
        "image_reliance": reliance,
    }
    write_text_atomically(output_dir / "metrics.json", json.dumps(summary, indent=2, default=str) + "\n")
    write_text_atomically(output_dir / "metrics.md", metrics_table(headline, timings, table))
    write_model_card(output_dir / "model", model.config, f"preset `{preset}`", data_args, training_args, headline)
    return summary


def metrics_table(headline: dict, timings: dict, table: dict) -> str:
    """Markdown: the literature's table with intervals (`gaze2report evaluate`'s), the headline metrics, the timings."""
    lines = [f"Held-out synthetic studies: {table['num_studies']}", "", markdown_table(table).rstrip("\n")]
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {'n/a' if value is None else f'{value:.4f}'} |" for name, value in headline.items()]
    lines += ["", "| stage | seconds |", "|---|---|"] + [f"| {name} | {value:.1f} |" for name, value in timings.items()]
    return "\n".join(lines) + "\n"
