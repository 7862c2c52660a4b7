"""Render a few synthetic studies with their simulated scanpaths: one PNG and one sidecar .txt (report, labels and
the drawn findings) per study.

    python examples/render_synthetic.py --num 6 --seed 0 --output outputs/synthetic
"""

import argparse
from pathlib import Path

from modeling_gaze2report.cli import run_command
from modeling_gaze2report.data.render import render_scanpath
from modeling_gaze2report.data.synthetic import make_synthetic_study
from modeling_gaze2report.files import write_text_atomically
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS


def describe(example, truth):
    lines = [f"id: {example['id']}", f"view: {example['view']}", f"report: {example['report']}", "labels:"]
    lines += [
        f"  {name}: {value}" for name, value in zip(CHEXPERT_OBSERVATIONS, example["labels"]) if value is not None
    ]
    lines.append("findings drawn (side = patient side; region = x0, y0, x1, y1 pixels):")
    for finding in truth.findings:
        region = ", ".join(f"{value:.0f}" for value in finding.region)
        lines.append(
            f"  {finding.kind} side={finding.side} lobe={finding.lobe} severity={finding.severity} "
            f"subtle={finding.subtle} region=({region})"
        )
    lines.append(
        f"fixations: {len(example['fixations'])}, total {sum(f['duration'] for f in example['fixations']):.1f} s"
    )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=6, help="number of studies")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: study i is make_synthetic_study((seed, i))")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--output", type=Path, required=True, help="folder for the PNG and .txt files")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be >= 1, got {args.num}")
    args.output.mkdir(parents=True, exist_ok=True)
    for index in range(args.num):
        study_id = f"synthetic-{args.seed}-{index:05d}"
        example, truth = make_synthetic_study((args.seed, index), image_size=args.image_size, study_id=study_id)
        render_scanpath(example["image"], example["fixations"], path=args.output / f"{study_id}.png")
        write_text_atomically(args.output / f"{study_id}.txt", describe(example, truth))
        print(f"{study_id}.png  {example['impression']}")


if __name__ == "__main__":
    run_command(main, Path(__file__).name)
