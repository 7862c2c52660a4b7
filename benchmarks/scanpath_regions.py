"""Does the predicted scanpath find disease? For the held-out studies of a `gaze2report demo` run (its reports.jsonl,
and the synthetic studies the demo drew, made again from its metrics.json's budget and seed), per finding label: the
share of the predicted fixations that fall inside the finding's labelled region, the same share for the recorded
(simulated radiologist's) fixations, and chance (the region's share of the image's area). For a model with the
fixation-node head (records with "grounding"), also: of the generated sentences that name a finding the study has
(as present, by the project's labeler), how many of the fixations grounding the sentence lie inside a region of
that finding, against chance. Written as JSON.

    python benchmarks/scanpath_regions.py --demo-output outputs/demo --output benchmarks/results/scanpath_regions.json
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from modeling_gaze2report.data import fixation_in_region
from modeling_gaze2report.demo.run import DemoBudget, demo_dataset
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.labeler_gaze2report import label_reports

SOURCES = {"predicted": "predicted_scanpath", "recorded": "recorded_fixations"}


def region_hits(records: list[dict], examples) -> dict:
    """{label (and "all"): counts and rates} over every labelled region of the studies in `records`: the predicted
    and recorded fixations of its study, how many fall inside it, and its mean share of the image's area (chance).
    A record whose id is not among `examples` is a ValueError naming it."""
    by_id = {example["id"]: example for example in examples}
    counts = defaultdict(lambda: defaultdict(float))
    for record in records:
        if record["id"] not in by_id:
            raise ValueError(f"reports.jsonl: study {record['id']!r} is not among the demo's held-out studies")
        width, height = record["image_size"]
        for region in by_id[record["id"]]["regions"]:
            area = (region["x1"] - region["x0"]) * (region["y1"] - region["y0"]) / (width * height)
            for label in (region["label"], "all"):
                counts[label]["regions"] += 1
                counts[label]["area_share_sum"] += area
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
    by_id = {example["id"]: example for example in examples}
    counts = defaultdict(lambda: defaultdict(float))
    for record in records:
        if record["id"] not in by_id:
            raise ValueError(f"reports.jsonl: study {record['id']!r} is not among the demo's held-out studies")
        if "grounding" not in record:
            raise ValueError(f"reports.jsonl: study {record['id']!r} has no grounding (a model without the head?)")
        width, height = record["image_size"]
        regions = by_id[record["id"]]["regions"]
        sentences = [entry["sentence"] for entry in record["grounding"]]
        for entry, labels in zip(record["grounding"], label_reports(sentences)):
            fixations = [record["predicted_scanpath"][index] for index in entry["fixations"]]
            for label in sorted({region["label"] for region in regions if labels[region["label"]] == 1}):
                label_regions = [region for region in regions if region["label"] == label]
                inside = sum(any(fixation_in_region(f, region) for region in label_regions) for f in fixations)
                area = sum((r["x1"] - r["x0"]) * (r["y1"] - r["y0"]) for r in label_regions) / (width * height)
                for key in (label, "all"):
                    counts[key]["sentences"] += 1
                    counts[key]["fixations"] += len(fixations)
                    counts[key]["inside"] += inside
                    counts[key]["area_share_sum"] += min(area, 1.0)
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
    budget = DemoBudget(**summary["budget"])
    records = [json.loads(line) for line in reports_path.read_text().splitlines() if line.strip()]
    test_studies = demo_dataset(budget, summary["seed"], budget.num_studies)["test"]
    result = {
        "demo_output": str(arguments.demo_output),
        "preset": summary["preset"],
        "seed": summary["seed"],
        "studies": len(records),
        "by_label": region_hits(records, test_studies),
    }
    if any("grounding" in record for record in records):
        result["grounding_by_label"] = grounding_hits(records, test_studies)
    write_text_atomically(arguments.output, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["by_label"].get("all", {}), indent=2))
    if "grounding_by_label" in result:
        print(json.dumps({"grounding": result["grounding_by_label"].get("all", {})}, indent=2))
    return result


if __name__ == "__main__":
    main()
