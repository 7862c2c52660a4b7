"""How well the synthetic world's dictation points at its findings: of the fixations that
`align_fixations_to_transcript` assigns to a phrase naming a finding (by `fixation_finding_targets`), the share that
falls inside that finding's region, against the share of all the study's fixations that does. Per region label and
overall, at several alignment lags; written as JSON.

    python -m benchmarks.synthetic_alignment --num-studies 200 --output benchmarks/results/synthetic_alignment.json
"""

import argparse
from collections import defaultdict
from pathlib import Path

from modeling_gaze2report.data import DEFAULT_EYE_VOICE_LAG, fixation_finding_targets, fixation_in_region
from modeling_gaze2report.data.synthetic import make_synthetic_study

from .common import write_json


def measure(examples, lag: float) -> dict:
    """{label: counts} and "all": fixations naming the region's label (and how many of them are inside it) and all
    the fixations of the studies with such a region (and how many are inside it)."""
    counts = defaultdict(lambda: {"naming": 0, "naming_inside": 0, "all": 0, "all_inside": 0})
    for example in examples:
        targets = fixation_finding_targets(example["fixations"], example["transcript"], lag=lag)
        for region in example["regions"]:
            for label in (region["label"], "all"):
                for fixation, named in zip(example["fixations"], targets):
                    is_inside = fixation_in_region(fixation, region)
                    counts[label]["all"] += 1
                    counts[label]["all_inside"] += is_inside
                    if named is not None and region["label"] in named:
                        counts[label]["naming"] += 1
                        counts[label]["naming_inside"] += is_inside
    return {
        label: {
            **values,
            "naming_inside_rate": values["naming_inside"] / values["naming"] if values["naming"] else None,
            "all_inside_rate": values["all_inside"] / values["all"],
        }
        for label, values in sorted(counts.items())
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-studies", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--lags", type=float, nargs="+", default=[0.0, DEFAULT_EYE_VOICE_LAG, 3.0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/synthetic_alignment.json"))
    args = parser.parse_args()
    if args.num_studies < 1:
        parser.error(f"--num-studies must be >= 1, got {args.num_studies}")
    examples = [
        make_synthetic_study((args.seed, index), image_size=args.image_size)[0] for index in range(args.num_studies)
    ]
    results = {
        "num_studies": args.num_studies, "seed": args.seed, "image_size": args.image_size,
        "studies_with_regions": sum(1 for example in examples if example["regions"]),
        "by_lag": {str(lag): measure(examples, lag) for lag in args.lags},
    }  # fmt: skip
    write_json(args.output, results)
    for lag, by_label in results["by_lag"].items():
        overall = by_label["all"]
        print(
            f"lag {lag} s: {overall['naming_inside_rate']:.3f} of {overall['naming']} fixations naming a finding "
            f"fall in its region; {overall['all_inside_rate']:.3f} of all {overall['all']}"
        )


if __name__ == "__main__":
    main()
