"""The synthetic chest X-ray world: phantom radiographs, reports that say what was drawn, and radiologist-like gaze.

`make_synthetic_study` draws one study and returns its example (GAZE2REPORT_FEATURES) with the ground truth;
`make_synthetic_dataset` builds a train/validation/test DatasetDict. Save and load it with
`DatasetDict.save_to_disk(path)` and `datasets.load_from_disk(path)`. Study `i` of `make_synthetic_dataset(seed=s)`
is `make_synthetic_study((s, i))`, so a dataset is reproducible study by study. See docs/synthetic.md.
"""

from dataclasses import dataclass, replace

import datasets
import numpy as np
from PIL import Image

from .schema import GAZE2REPORT_FEATURES, SPLITS, make_example, report_from_sections
from .synthetic_anatomy import CM, SIDE_SIGN, Anatomy, rib_curve, sample_anatomy
from .synthetic_gaze import simulate_reading
from .synthetic_phantom import FINDING_KINDS, Device, Finding, device_paths, draw_study
from .synthetic_reports import FINDING_OBSERVATIONS, write_report

PATHOLOGY_KINDS = tuple(kind for kind in FINDING_KINDS if kind != "support_devices")
SEVERITIES = ("mild", "moderate", "severe")
DEVICE_NAMES = ("endotracheal tube", "central venous catheter", "nasogastric tube", "pacemaker")


@dataclass(frozen=True)
class SyntheticTruth:
    """What was drawn: the anatomy (pose, view, exposure) and the findings, each with its pixel `region`."""

    anatomy: Anatomy
    findings: tuple
    image_size: int

    def draw(self, findings=None):
        """The uint8 (image_size, image_size) image of this study, optionally with another list of findings."""
        return draw_study(self.anatomy, self.findings if findings is None else findings, self.image_size)


def _pixel_region(anatomy, box, image_size):
    u0, v0, u1, v1 = box
    corners = anatomy.pose.to_pixels([[u0, v0], [u1, v0], [u0, v1], [u1, v1]], image_size)
    low = np.clip(corners.min(axis=0), 0, image_size - 1)
    high = np.clip(corners.max(axis=0), 0, image_size - 1)
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))


def _lung_point(anatomy, side, lobe, rng):
    """A canonical point well inside a lobe zone, lateral to the heart and mediastinum."""
    _, v0, _, v1 = anatomy.lobe_box(side, lobe)
    reach = anatomy.mediastinum_half_width + rng.uniform(0.4, 0.75) * (
        anatomy.lung_half_width - anatomy.mediastinum_half_width
    )
    if lobe != "upper":
        reach = max(reach, 0.5 * anatomy.cardiothoracic_ratio * anatomy.thoracic_width + 0.04)
    return (
        0.5 + SIDE_SIGN[side] * min(reach, anatomy.lung_half_width - 0.05),
        rng.uniform(v0 + 0.25 * (v1 - v0), v1 - 0.25 * (v1 - v0)),
    )


def _sample_finding(kind, anatomy, rng):
    """A finding of `kind` with its canonical box (the region is filled in by the caller)."""
    side = ("right", "left")[rng.integers(2)]
    severity = SEVERITIES[rng.integers(3)]
    shape_seed = int(rng.integers(2**31))
    if kind == "cardiomegaly":
        ratio = {
            "mild": rng.uniform(0.53, 0.57),
            "moderate": rng.uniform(0.57, 0.62),
            "severe": rng.uniform(0.62, 0.68),
        }[severity]
        return Finding(
            kind, severity, severity == "mild", anatomy.heart_box(ratio), (), cardiothoracic_ratio=float(ratio)
        )
    if kind == "pleural_effusion":
        depth = {
            "mild": rng.uniform(0.02, 0.04),
            "moderate": rng.uniform(0.07, 0.11),
            "severe": rng.uniform(0.15, 0.22),
        }[severity]
        u0, _, u1, _ = anatomy.lung_box(side)
        box = (u0, anatomy.diaphragm_v[side] - depth - 0.06, u1, anatomy.costophrenic_v[side] + 0.02)
        return Finding(kind, severity, severity == "mild", box, (), side=side, depth=float(depth))
    if kind == "pneumothorax":
        depth = {
            "mild": rng.uniform(0.015, 0.022),
            "moderate": rng.uniform(0.03, 0.045),
            "severe": rng.uniform(0.06, 0.08),
        }[severity]
        u0, v0, u1, _ = anatomy.lung_box(side)
        box = (u0, v0 - 0.01, u1, anatomy.diaphragm_v[side] - 0.06)
        return Finding(kind, severity, severity == "mild", box, (), side=side, depth=float(depth))
    if kind in ("nodule", "mass"):
        lobe = ("upper", "middle", "lower")[rng.integers(3)]
        size_cm = round(float(rng.uniform(0.8, 2.9) if kind == "nodule" else rng.uniform(3.0, 6.0)), 1)
        centre = _lung_point(anatomy, side, lobe, rng)
        radius = 0.65 * size_cm * CM + 0.01
        box = (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
        subtle = kind == "nodule" and size_cm < 1.5
        return Finding(
            kind, severity, subtle, box, (), side=side, lobe=lobe, size_cm=size_cm, centre=centre, shape_seed=shape_seed
        )
    if kind == "consolidation":
        lobe = ("upper", "middle", "lower")[rng.integers(3)]
        centre = _lung_point(anatomy, side, lobe, rng)
        _, v0, _, v1 = anatomy.lobe_box(side, lobe)
        half_width = 0.06 + 0.02 * SEVERITIES.index(severity)
        box = (centre[0] - half_width, v0, centre[0] + half_width, v1)
        return Finding(
            kind, severity, severity == "mild", box, (), side=side, lobe=lobe, centre=centre, shape_seed=shape_seed
        )
    if kind == "atelectasis":
        lobe = ("middle", "lower")[rng.integers(2)]
        centre = _lung_point(anatomy, side, lobe, rng)
        box = (centre[0] - 0.085, centre[1] - 0.04, centre[0] + 0.085, centre[1] + 0.07)
        return Finding(
            kind, severity, severity == "mild", box, (), side=side, lobe=lobe, centre=centre, shape_seed=shape_seed
        )
    if kind == "edema":
        return Finding(kind, severity, severity == "mild", (0.22, 0.28, 0.78, 0.66), ())
    if kind == "rib_fracture":
        rib_number = int(rng.integers(4, 10))
        curve = rib_curve(anatomy, side, rib_number - 1)
        centre = tuple(curve[int(rng.integers(12, 18))])
        offset = float(rng.uniform(0.003, 0.005) if severity == "mild" else rng.uniform(0.01, 0.016))
        lateral = curve[curve[:, 0] * SIDE_SIGN[side] >= centre[0] * SIDE_SIGN[side] - 0.02]
        box = (
            lateral[:, 0].min() - 0.02,
            lateral[:, 1].min() - 0.03,
            lateral[:, 0].max() + 0.02,
            lateral[:, 1].max() + 0.03,
        )
        return Finding(
            kind, severity, severity == "mild", box, (), side=side, rib_number=rib_number, centre=centre, depth=offset
        )
    if kind == "support_devices":
        chosen = rng.permutation(len(DEVICE_NAMES))[: int(rng.integers(1, 4))]
        devices = tuple(
            Device(
                DEVICE_NAMES[index],
                side={"central venous catheter": ("right", "left")[rng.integers(2)], "pacemaker": "left"}.get(
                    DEVICE_NAMES[index]
                ),
                tip_above_carina_cm=float(rng.integers(3, 7)) if DEVICE_NAMES[index] == "endotracheal tube" else None,
            )
            for index in sorted(chosen)
        )
        points = np.concatenate([path for device in devices for path in device_paths(device, anatomy)])
        box = (
            points[:, 0].min() - 0.05,
            points[:, 1].min() - 0.01,
            points[:, 0].max() + 0.05,
            points[:, 1].max() + 0.03,
        )
        return Finding(kind, "moderate", False, box, (), devices=devices)
    raise ValueError(f"unknown finding kind {kind!r}; known: {FINDING_KINDS}")


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    if (
        isinstance(seed, (tuple, list))
        and seed
        and all(isinstance(part, (int, np.integer)) and part >= 0 for part in seed)
    ):
        return np.random.default_rng([int(part) for part in seed])
    raise ValueError(f"seed must be a non-negative int, a sequence of them or a numpy Generator, got {seed!r}")


def make_synthetic_study(
    seed=0,
    image_size=224,
    abnormal_fraction=2 / 3,
    device_fraction=0.2,
    finding_kinds=None,
    study_id="synthetic",
    split="train",
):
    """Draw one study. Returns (example, truth): `example` is a GAZE2REPORT_FEATURES dict (PIL "L" image,
    report text, fixations in pixels and seconds with their start times, the dictation's transcript (one phrase per
    report sentence, its text exactly the report), one region per finding labelled with its CheXpert observation
    (certainty 5), labels, view, source "synthetic"), `truth` a SyntheticTruth.

    `seed` is an int, a sequence of ints or a numpy Generator. Without `finding_kinds`, a study is abnormal with
    probability `abnormal_fraction` (1 to 3 pathologies) and carries support devices with probability
    `device_fraction`; `finding_kinds` (e.g. ("pneumothorax", "support_devices")) forces exactly those findings.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 64:
        raise ValueError(f"image_size must be an int >= 64, got {image_size!r}")
    for name, fraction in (("abnormal_fraction", abnormal_fraction), ("device_fraction", device_fraction)):
        if not 0 <= fraction <= 1:
            raise ValueError(f"{name} must be within [0, 1], got {fraction!r}")
    rng = _rng(seed)
    if finding_kinds is None:
        count = int(rng.integers(1, 4)) if rng.random() < abnormal_fraction else 0
        kinds = [PATHOLOGY_KINDS[index] for index in rng.permutation(len(PATHOLOGY_KINDS))[:count]]
        if "nodule" in kinds and "mass" in kinds:
            kinds.remove("nodule")
        if rng.random() < device_fraction:
            kinds.append("support_devices")
    else:
        kinds = list(finding_kinds)
        unknown = [kind for kind in kinds if kind not in FINDING_KINDS]
        if unknown or len(set(kinds)) != len(kinds):
            raise ValueError(f"finding_kinds must be distinct names from {FINDING_KINDS}, got {finding_kinds!r}")
    has_tube = "support_devices" in kinds
    view = "AP" if (has_tube and rng.random() < 0.7) or rng.random() < 0.15 else "PA"
    anatomy = sample_anatomy(rng, view)
    findings = []
    for kind in sorted(kinds, key=FINDING_KINDS.index):
        finding = _sample_finding(kind, anatomy, rng)
        findings.append(replace(finding, region=_pixel_region(anatomy, finding.box, image_size)))
    truth = SyntheticTruth(anatomy, tuple(findings), image_size)
    findings_sentences, impression_sentences, labels = write_report(findings, rng)
    findings_text, impression_text = (
        " ".join(sentence.text for sentence in sentences) for sentences in (findings_sentences, impression_sentences)
    )
    fixations, transcript = simulate_reading(  # (num_fixations, 4): x, y, duration, start; [(text, start, end)]
        anatomy, findings, findings_sentences, impression_sentences, image_size, rng
    )
    example = make_example(
        id=study_id,
        image=Image.fromarray(truth.draw()),
        **report_from_sections(findings_text, impression_text),
        fixations=[
            {"x": float(x), "y": float(y), "duration": float(duration), "start": float(start)}
            for x, y, duration, start in fixations
        ],
        transcript=[{"text": text, "start": start, "end": end} for text, start, end in transcript],
        regions=[
            {
                "label": FINDING_OBSERVATIONS[finding.kind],
                **dict(zip(("x0", "y0", "x1", "y1"), finding.region)),
                "certainty": 5,
            }
            for finding in findings
        ],
        labels=labels,
        view=view,
        source="synthetic",
        split=split,
    )
    return example, truth


def make_synthetic_dataset(
    num_studies=200,
    seed=0,
    image_size=224,
    split_fractions=(0.8, 0.1, 0.1),
    abnormal_fraction=2 / 3,
    device_fraction=0.2,
):
    """A DatasetDict with "train", "validation" and "test" splits of synthetic studies (features
    GAZE2REPORT_FEATURES, source "synthetic", ids "synthetic-{seed}-{index:05d}"). The first
    round(num_studies * split_fractions[0]) studies are train, the next round(num_studies * split_fractions[1])
    validation, the rest test."""
    if not isinstance(num_studies, int) or isinstance(num_studies, bool) or num_studies < 1:
        raise ValueError(f"num_studies must be a positive int, got {num_studies!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if (
        len(split_fractions) != 3
        or any(fraction < 0 for fraction in split_fractions)
        or abs(sum(split_fractions) - 1) > 1e-6
    ):
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {split_fractions!r}")
    num_train = round(num_studies * split_fractions[0])
    num_validation = min(round(num_studies * split_fractions[1]), num_studies - num_train)
    split_of = (
        ["train"] * num_train + ["validation"] * num_validation + ["test"] * (num_studies - num_train - num_validation)
    )
    rows = {split: [] for split in SPLITS}
    for index, split in enumerate(split_of):
        example, _ = make_synthetic_study(
            (seed, index),
            image_size=image_size,
            abnormal_fraction=abnormal_fraction,
            device_fraction=device_fraction,
            study_id=f"synthetic-{seed}-{index:05d}",
            split=split,
        )
        rows[split].append(example)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {name: [row[name] for row in rows[split]] for name in GAZE2REPORT_FEATURES},
                features=GAZE2REPORT_FEATURES,
            )
            for split in SPLITS
        }
    )
