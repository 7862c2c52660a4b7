"""Does the predicted scanpath find disease? For the held-out studies of a `gaze2report demo` run (its reports.jsonl,
and the synthetic studies the demo drew, made again from its metrics.json's budget and seed), per finding label: the
share of the predicted fixations inside the finding's labelled regions, the same share for the recorded (simulated
radiologist's) fixations, and chance (the region's share of the image). For a model with the fixation-node head
(records with "grounding"), also the share of the fixations grounding each generated sentence that lie inside a
region of a finding the sentence names as present, against chance. Written as JSON.

    python -m benchmarks.scanpath_regions --demo-output outputs/demo --output scanpath_regions.json
"""

import argparse
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from modeling_gaze2report.data import fixation_in_region
from modeling_gaze2report.demo.run import DemoBudget, demo_dataset
from modeling_gaze2report.labeler_gaze2report import label_reports

from .common import write_json

SOURCES = {"predicted": "predicted_scanpath", "recorded": "recorded_fixations"}


def studies_of(records: list[dict], examples) -> list[tuple[dict, list[dict], float]]:
    """Per record: the record, its study's labelled regions and its image's area in pixels; a record whose id is not
    among `examples` is a ValueError naming it."""
    regions = {example["id"]: example["regions"] for example in examples}
    for record in records:
        if record["id"] not in regions:
            raise ValueError(f"reports.jsonl: study {record['id']!r} is not among the demo's held-out studies")
    return [(record, regions[record["id"]], record["image_size"][0] * record["image_size"][1]) for record in records]


def area(region: dict) -> float:
    return (region["x1"] - region["x0"]) * (region["y1"] - region["y0"])


def region_hits(records: list[dict], examples) -> dict:
    """{label (and "all"): counts and rates} over every labelled region of the studies in `records`: the predicted
    and recorded fixations of its study, the share inside it, and its mean share of the image's area (chance)."""
    counts = defaultdict(lambda: defaultdict(float))
    for record, regions, image_area in studies_of(records, examples):
        for region in regions:
            for label in (region["label"], "all"):
                counts[label]["regions"] += 1
                counts[label]["area_share_sum"] += area(region) / image_area
                for source, field in SOURCES.items():
                    fixations = record[field] or []
                    counts[label][source] += len(fixations)
                    counts[label][f"{source}_inside"] += sum(fixation_in_region(f, region) for f in fixations)
    return {
        label: {
            "regions": int(values["regions"]),
            "chance": values["area_share_sum"] / values["regions"],
            **{f"{source}_inside_rate": values[f"{source}_inside"] / max(values[source], 1) for source in SOURCES},
            **{f"{source}_fixations": int(values[source]) for source in SOURCES},
        }
        for label, values in sorted(counts.items())
    }


def grounding_hits(records: list[dict], examples) -> dict:
    """{label (and "all"): counts and rates} over the grounded sentences of `records` that name as present a finding
    the study has a labelled region of: the sentence's grounding fixations, the share inside a region of that
    finding, and chance (the mean share of the image those regions cover). A record without grounding is a
    ValueError naming it."""
    counts = defaultdict(lambda: defaultdict(float))
    for record, regions, image_area in studies_of(records, examples):
        if "grounding" not in record:
            raise ValueError(f"reports.jsonl: study {record['id']!r} has no grounding (a model without the head?)")
        sentences = [entry["sentence"] for entry in record["grounding"]]
        for entry, labels in zip(record["grounding"], label_reports(sentences)):
            fixations = [record["predicted_scanpath"][index] for index in entry["fixations"]]
            for label in sorted({region["label"] for region in regions if labels[region["label"]] == 1}):
                label_regions = [region for region in regions if region["label"] == label]
                inside = sum(any(fixation_in_region(f, region) for region in label_regions) for f in fixations)
                for key in (label, "all"):
                    counts[key]["sentences"] += 1
                    counts[key]["fixations"] += len(fixations)
                    counts[key]["inside"] += inside
                    counts[key]["area_share_sum"] += min(sum(map(area, label_regions)) / image_area, 1.0)
    return {
        label: {
            "sentences": int(values["sentences"]),
            "fixations": int(values["fixations"]),
            "inside_rate": values["inside"] / max(values["fixations"], 1),
            "chance": values["area_share_sum"] / values["sentences"],
        }
        for label, values in sorted(counts.items())
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-output", type=Path, required=True, help="A gaze2report demo output folder.")
    parser.add_argument("--output", type=Path, required=True, help="The JSON file to write.")
    arguments = parser.parse_args(argv)
    metrics_path, reports_path = arguments.demo_output / "metrics.json", arguments.demo_output / "reports.jsonl"
    for path in (metrics_path, reports_path):
        if not path.is_file():
            parser.error(f"{path} does not exist: --demo-output must be a gaze2report demo output folder")
    summary = json.loads(metrics_path.read_text())
    if unknown := set(summary["budget"]) - {field.name for field in dataclasses.fields(DemoBudget)}:
        parser.error(f"{metrics_path}: budget fields {sorted(unknown)} are not DemoBudget's (an older demo's run?)")
    budget = DemoBudget(**summary["budget"])
    records = [json.loads(line) for line in reports_path.read_text().splitlines() if line.strip()]
    test_studies = demo_dataset(budget, summary["seed"], budget.num_studies)["test"]
    result = {"demo_output": str(arguments.demo_output), "preset": summary["preset"], "seed": summary["seed"],
              "studies": len(records), "by_label": region_hits(records, test_studies)}  # fmt: skip
    if any("grounding" in record for record in records):
        result["grounding_by_label"] = grounding_hits(records, test_studies)
    write_json(arguments.output, result)
    print(json.dumps({key: result[key].get("all") for key in ("by_label", "grounding_by_label") if key in result}))
    return result


if __name__ == "__main__":
    main()
