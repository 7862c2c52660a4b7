"""Generate reports and scanpaths for a dataset split, score them, and write the results (used by the demo,
examples/evaluate_models.py and the gaze ablation)."""

import json
from pathlib import Path

from .checks_gaze2report import check_positive_integer
from .data.collator import Gaze2ReportCollator, example_original_size
from .evaluation import load_metric
from .files import write_text_atomically
from .inference_gaze2report import DEFAULT_MAX_NEW_TOKENS, generate_with_one_encoding, read_generations


def generate_records(
    model,
    processor,
    dataset,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    generate_kwargs: dict | None = None,
) -> list[dict]:
    """One record per example: id, reference and generated report, the predicted scanpath and the recorded fixations
    (original pixels and seconds), the image size and, for a model with the fixation-node head, the grounding of each
    generated sentence (`ground_report`). Each batch of images is encoded once
    (`inference_gaze2report.generate_with_one_encoding`); decoding is greedy unless `generate_kwargs` says otherwise
    (a `num_return_sequences` other than 1 is refused)."""
    check_positive_integer("batch_size", batch_size)
    generate_kwargs = {"max_new_tokens": max_new_tokens, **(generate_kwargs or {})}
    if generate_kwargs.get("num_return_sequences", 1) != 1:
        raise ValueError(
            "generate_records writes one record per example: num_return_sequences must be 1, "
            f"got {generate_kwargs['num_return_sequences']!r}"
        )
    model.eval()
    collator = Gaze2ReportCollator(processor, include_reports=False)
    records = []
    for start in range(0, len(dataset), batch_size):
        examples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collator(examples).to(model.device)
        sizes = [example_original_size(example, index) for index, example in enumerate(examples)]  # (width, height)
        generated = generate_with_one_encoding(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            generate_kwargs,
            return_scanpath=model.config.use_gaze,
            return_grounding=model.config.grounds_findings,
        )
        for example, [result], (width, height) in zip(
            examples, read_generations(processor, original_sizes=sizes, **generated), sizes
        ):
            record = {
                "id": example["id"],
                "generated_report": result["report"],
                "reference_report": example["report"],
                "predicted_scanpath": result.get("scanpath", []),
                "recorded_fixations": list(example.get("fixations") or []),
                "image_size": [width, height],
            }
            if "grounding" in result:
                record["grounding"] = result["grounding"]
            records.append(record)
    return records


def score_records(records: list[dict], normalization: str = "r2gen", uncertain_as: int = 0) -> dict:
    """Report metrics (NLG, clinical efficacy with laterality) and, where a record has both a predicted scanpath and
    recorded fixations, scanpath metrics; records of reports alone (id, generated and reference report) are scored on
    the reports."""
    if not records:
        raise ValueError("score_records needs at least one record")
    predictions = [record["generated_report"] for record in records]
    references = [record["reference_report"] for record in records]
    results = {
        "num_studies": len(records),
        "report_nlg": load_metric("report_nlg").compute(
            predictions=predictions, references=references, normalization=normalization
        ),
        "clinical_efficacy": load_metric("clinical_efficacy").compute(
            predictions=predictions, references=references, uncertain_as=uncertain_as
        ),
    }
    with_gaze = [r for r in records if r.get("predicted_scanpath") and r.get("recorded_fixations")]
    if with_gaze:
        results["scanpath"] = load_metric("scanpath").compute(
            predictions=[r["predicted_scanpath"] for r in with_gaze],
            references=[  # the metric's schema: x, y, duration (a recorded fixation also has its start time)
                [{key: fixation[key] for key in ("x", "y", "duration")} for fixation in r["recorded_fixations"]]
                for r in with_gaze
            ],
            image_size=[tuple(r["image_size"]) for r in with_gaze],
        )
    results["scanpath_pairs"] = len(with_gaze)
    # a model that does not read the image writes the same few reports for every study
    results["distinct_reports"] = len(set(predictions))
    return results


def headline_metrics(results: dict) -> dict:
    """The few numbers a table or model card shows."""
    efficacy, nlg = results["clinical_efficacy"], results["report_nlg"]
    headline = {
        "chexpert_micro_f1": efficacy["micro_f1"],
        "chexpert_macro_f1": efficacy["macro_14_f1"],
        "chexpert_example_f1": efficacy["example_f1"],
        "chexpert_exact_match": efficacy["exact_match"],
        "laterality_accuracy": efficacy["laterality_accuracy"],
        "bleu_4": nlg["bleu_4"],
        "rouge_l": nlg["rouge_l"],
        "meteor": nlg["meteor"],
        "cider": nlg["cider"],
        "distinct_report_fraction": results["distinct_reports"] / results["num_studies"],
    }
    if "scanpath" in results:
        headline["scanpath_dtw_px"] = results["scanpath"]["dtw_pixels"]
        headline["scanpath_multimatch_position"] = results["scanpath"]["multimatch_position"]
    return headline


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object per line, written atomically."""
    write_text_atomically(Path(path), "".join(json.dumps(record) + "\n" for record in records))
