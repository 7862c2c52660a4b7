"""The literature's table of report metrics for any model's reports, each column with a 95% bootstrap interval over
studies, and the paired comparison of two models' reports on the same studies. Used by `gaze2report evaluate`,
examples/evaluate_models.py and the demo's metrics.md.

Columns: BLEU-1..4, METEOR, ROUGE-L, CIDEr (`report_nlg`), the offline labeler's CheXpert micro- and macro-F1 over 14
observations (`clinical_efficacy`), and, where asked for and available, the model-based metrics of `clinical_metrics`
(CheXbert F1 over 14 and 5 observations, RadGraph F1 at its three reward levels, BERTScore). Each value is the metric
module's or package's own output; its interval resamples the studies' statistics (`report_statistics`)."""

from modeling_gaze2report.evaluation.clinical_metrics import score_clinical_metrics
from modeling_gaze2report.evaluation.intervals import (
    BOOTSTRAP_METHOD,
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    PAIRED_METHOD,
    bootstrap_interval,
    mean_statistics,
    paired_comparison,
)
from modeling_gaze2report.evaluation.report_statistics import (
    chexbert_statistics,
    nlg_statistics,
    offline_labeler_statistics,
)

NLG_COLUMNS = {
    "BLEU-1": "bleu_1",
    "BLEU-2": "bleu_2",
    "BLEU-3": "bleu_3",
    "BLEU-4": "bleu_4",
    "METEOR": "meteor",
    "ROUGE-L": "rouge_l",
    "CIDEr": "cider",
}
OFFLINE_LABELER_COLUMNS = {
    "Offline labeler micro-F1 (14)": ("micro_f1", "chexpert_micro_f1"),
    "Offline labeler macro-F1 (14)": ("macro_14_f1", "chexpert_macro_f1"),
}
CHEXBERT_COLUMNS = {
    "CheXbert micro-F1 (14)": "chexbert_14_micro_f1",
    "CheXbert macro-F1 (14)": "chexbert_14_macro_f1",
    "CheXbert micro-F1 (5)": "chexbert_5_micro_f1",
    "CheXbert macro-F1 (5)": "chexbert_5_macro_f1",
}
RADGRAPH_COLUMNS = {f"RadGraph F1 ({level})": level for level in ("simple", "partial", "complete")}
BERTSCORE_COLUMNS = {"BERTScore F1": "bertscore_f1"}
OFFLINE_LABELER_NOTE = "offline labeler: gaze2report's rule-based CheXpert labeler (the default; not CheXbert)"


def _clinical_columns(name: str, result: dict | None) -> dict:
    """{column: (value, StudyStatistics)} of one model-based metric's result (None: not available)."""
    if name == "chexbert":
        statistics = None
        if result is not None:
            protocol = result["protocol"]
            observations = protocol["observations_14"], protocol["observations_5"]
            statistics = chexbert_statistics(result["per_study"], *observations)
        return {
            column: (None, None) if result is None else (result[key], statistics[key])
            for column, key in CHEXBERT_COLUMNS.items()
        }
    if name == "radgraph":
        return {
            column: (None, None)
            if result is None
            else (result[f"radgraph_{level}"], mean_statistics(result["per_study"][level]))
            for column, level in RADGRAPH_COLUMNS.items()
        }
    if name == "bertscore":
        return {
            column: (None, None) if result is None else (result[key], mean_statistics(result["per_study"]["f1"]))
            for column, key in BERTSCORE_COLUMNS.items()
        }
    raise ValueError(f"no table columns for clinical metric {name!r}")


def score_columns(
    predictions: list[str],
    references: list[str],
    clinical_metrics=(),
    normalization: str = "r2gen",
    uncertain_as: int = 0,
    scores: dict | None = None,
) -> dict:
    """{"columns": {column: (value, StudyStatistics or None)}, "report_nlg", "offline_labeler", "clinical_metrics"}
    for `predictions` against `references`. `scores`: `reporting.score_records`' results for these reports when
    already computed (they are not computed again)."""
    from modeling_gaze2report.reporting import score_records

    if scores is None:
        records = [
            {"id": str(index), "generated_report": prediction, "reference_report": reference}
            for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True))
        ]
        scores = score_records(records, normalization=normalization, uncertain_as=uncertain_as)
    nlg, efficacy = scores["report_nlg"], scores["clinical_efficacy"]
    nlg_stats = nlg_statistics(predictions, references, normalization)
    labeler_stats = offline_labeler_statistics(predictions, references, uncertain_as)
    columns = {column: (nlg[key], nlg_stats.get(key)) for column, key in NLG_COLUMNS.items()}
    columns.update(
        {column: (efficacy[key], labeler_stats[name]) for column, (key, name) in OFFLINE_LABELER_COLUMNS.items()}
    )
    clinical = score_clinical_metrics(predictions, references, metrics=clinical_metrics) if clinical_metrics else None
    for name in clinical_metrics:
        columns.update(_clinical_columns(name, clinical["scores"].get(name)))
    return {"columns": columns, "report_nlg": nlg, "offline_labeler": efficacy, "clinical_metrics": clinical}


def _interval_cell(value, statistics, num_resamples, confidence, seed) -> dict:
    if value is None:
        return {"value": None, "low": None, "high": None}
    interval = bootstrap_interval(statistics, num_resamples, confidence, seed)
    return {"value": value, "low": interval["low"], "high": interval["high"]}


def report_table(
    predictions: list[str],
    references: list[str],
    clinical_metrics=(),
    normalization: str = "r2gen",
    uncertain_as: int = 0,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    scores: dict | None = None,
) -> dict:
    """The literature's table for `predictions` against `references`: {"num_studies", "columns": {column: {"value",
    "low", "high"}} (None where a metric could not run), "interval", the full "report_nlg", "offline_labeler" and
    "clinical_metrics" results with their protocols}."""
    scored = score_columns(predictions, references, clinical_metrics, normalization, uncertain_as, scores)
    columns = {
        column: _interval_cell(value, statistics, num_resamples, confidence, seed)
        for column, (value, statistics) in scored.pop("columns").items()
    }
    interval = {"confidence": confidence, "num_resamples": num_resamples, "seed": seed, "method": BOOTSTRAP_METHOD}
    return {"num_studies": len(predictions), "columns": columns, "interval": interval, **scored}


def compare_table(
    predictions_a: list[str],
    predictions_b: list[str],
    references: list[str],
    clinical_metrics=(),
    normalization: str = "r2gen",
    uncertain_as: int = 0,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict:
    """Model a against model b on the same studies (position i of both lists and of `references` is study i): per
    column {"a", "b", "difference" (a - b), "low", "high" (its bootstrap interval), "p_value" (paired permutation
    test)}, None where a metric could not run for either."""
    if len(predictions_a) != len(predictions_b):
        raise ValueError(f"compare_table: {len(predictions_a)} reports of a but {len(predictions_b)} of b")
    scored_a = score_columns(predictions_a, references, clinical_metrics, normalization, uncertain_as)
    scored_b = score_columns(predictions_b, references, clinical_metrics, normalization, uncertain_as)
    columns = {}
    for column, (value_a, statistics_a) in scored_a["columns"].items():
        value_b, statistics_b = scored_b["columns"][column]
        if value_a is None or value_b is None:
            columns[column] = {"a": value_a, "b": value_b} | dict.fromkeys(("difference", "low", "high", "p_value"))
            continue
        paired = paired_comparison(statistics_a, statistics_b, num_resamples, confidence, seed)
        columns[column] = {
            "a": value_a,
            "b": value_b,
            "difference": value_a - value_b,
            "low": paired["low"],
            "high": paired["high"],
            "p_value": paired["p_value"],
        }
    return {
        "num_studies": len(references),
        "columns": columns,
        "interval": {"confidence": confidence, "num_resamples": num_resamples, "seed": seed, "method": PAIRED_METHOD},
        "a": {key: scored_a[key] for key in ("report_nlg", "offline_labeler", "clinical_metrics")},
        "b": {key: scored_b[key] for key in ("report_nlg", "offline_labeler", "clinical_metrics")},
    }


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def markdown_table(table: dict) -> str:
    """`report_table`'s result as Markdown: one row of values, one of their 95% intervals, then the notes."""
    columns = table["columns"]
    percent = round(table["interval"]["confidence"] * 100)
    lines = [
        "| | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
        "| value | " + " | ".join(_number(cell["value"]) for cell in columns.values()) + " |",
        f"| {percent}% interval | "
        + " | ".join(
            "n/a" if cell["low"] is None else f"{cell['low']:.4f}–{cell['high']:.4f}" for cell in columns.values()
        )
        + " |",
        "",
        f"{table['num_studies']} studies; intervals: {table['interval']['method']}, "
        f"{table['interval']['num_resamples']} resamples; {OFFLINE_LABELER_NOTE}.",
    ]
    clinical = table.get("clinical_metrics") or {}
    lines += [f"n/a {name}: {reason}" for name, reason in (clinical.get("unavailable") or {}).items()]
    return "\n".join(lines) + "\n"


def markdown_comparison(comparison: dict, name_a: str = "a", name_b: str = "b") -> str:
    """`compare_table`'s result as Markdown: per column both values, the difference with its interval, the p-value."""
    percent = round(comparison["interval"]["confidence"] * 100)
    lines = [
        f"| column | {name_a} | {name_b} | difference | {percent}% interval | p (permutation) |",
        "|---|---|---|---|---|---|",
    ]
    for column, cell in comparison["columns"].items():
        interval = "n/a" if cell["low"] is None else f"{cell['low']:+.4f} to {cell['high']:+.4f}"
        difference = "n/a" if cell["difference"] is None else f"{cell['difference']:+.4f}"
        p_value = "n/a" if cell["p_value"] is None else f"{cell['p_value']:.4f}"
        values = f"{_number(cell['a'])} | {_number(cell['b'])}"
        lines.append(f"| {column} | {values} | {difference} | {interval} | {p_value} |")
    lines += [
        "",
        f"{comparison['num_studies']} paired studies; difference = {name_a} - {name_b}; "
        f"{comparison['interval']['method']}, {comparison['interval']['num_resamples']} resamples; "
        f"{OFFLINE_LABELER_NOTE}.",
    ]
    for side, name in (("a", name_a), ("b", name_b)):
        clinical = comparison[side]["clinical_metrics"] or {}
        lines += [f"n/a {metric} ({name}): {reason}" for metric, reason in (clinical.get("unavailable") or {}).items()]
    return "\n".join(lines) + "\n"
