"""Batches Gaze2Report examples for training and evaluation."""

import io
import random

import torch
from PIL import Image
from transformers import BatchFeature

from ..image_loading_gaze2report import load_image
from ..observations import CHEXPERT_OBSERVATIONS
from .alignment import fixation_finding_names
from .schema import LABEL_VALUES

GAZE_SOURCES = ("recorded", "predicted", "mix")


class Gaze2ReportCollator:
    """Turns a list of `GAZE2REPORT_FEATURES` examples into model inputs with the processor, and says per example
    whether its gaze graph is built from the recorded fixations (teacher forcing) or from the predicted scanpath.

    Args:
        processor: a `Gaze2ReportProcessor` (or any callable with its signature).
        gaze_source: "recorded" (recorded gaze wherever an example has it), "predicted" (always the predicted
            scanpath; recorded fixations are still passed so they supervise the predictor) or "mix" (recorded gaze,
            where present, with probability `recorded_gaze_probability`).
        recorded_gaze_probability: only for "mix".
        seed: with the example's id, decides each "mix" draw: an example is always teacher-forced or always not for
            a given seed, so a run is reproducible whatever the batching, the DataLoader workers or a resumed
            checkpoint.
        include_reports: pass the reports to the processor (training: labels are built); False for generation.
        max_report_tokens: report tokens kept per report (the processor cuts longer ones and says how many).
        include_finding_labels: add `finding_labels` (batch, 14) floats, 1 for a positive CheXpert observation and 0
            otherwise, and `finding_label_mask` (batch, 14) (see `finding_label_tensors`); stage 1 trains the vision
            tower with them.
        labelled_finding_probability: with `include_finding_labels`, the probability that an example's finding
            tokens carry its labels instead of the classifier's probabilities (teacher forcing); drawn per example id
            like the "mix" gaze draws and returned as `use_labelled_findings` (batch,).
        include_fixation_findings: add `fixation_finding_labels` (batch, max_fixations, 13) and
            `fixation_finding_mask` (batch, max_fixations): what the radiologist saw at each recorded fixation
            (`fixation_finding_names`: the dictation aligned to the fixations and the labelled regions), which
            trains the model's fixation-node head (config `use_fixation_findings`).
    """

    def __init__(
        self,
        processor,
        gaze_source: str = "recorded",
        recorded_gaze_probability: float = 1.0,
        seed: int = 0,
        include_reports: bool = True,
        max_report_tokens: int | None = None,
        include_finding_labels: bool = False,
        labelled_finding_probability: float = 0.0,
        include_fixation_findings: bool = False,
    ):
        if not callable(processor):
            raise ValueError(f"processor must be callable (a Gaze2ReportProcessor), got {type(processor).__name__}")
        if gaze_source not in GAZE_SOURCES:
            raise ValueError(f"gaze_source must be one of {GAZE_SOURCES}, got {gaze_source!r}")
        if not 0.0 <= recorded_gaze_probability <= 1.0:
            raise ValueError(f"recorded_gaze_probability must lie in [0, 1], got {recorded_gaze_probability}")
        if gaze_source != "mix" and recorded_gaze_probability != 1.0:
            raise ValueError(
                f"recorded_gaze_probability={recorded_gaze_probability} only applies to gaze_source='mix', "
                f"not {gaze_source!r}"
            )
        if not 0.0 <= labelled_finding_probability <= 1.0:
            raise ValueError(f"labelled_finding_probability must lie in [0, 1], got {labelled_finding_probability}")
        if labelled_finding_probability > 0 and not include_finding_labels:
            raise ValueError(
                "labelled_finding_probability > 0 teacher-forces the finding labels: it needs "
                "include_finding_labels=True"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.processor = processor
        self.gaze_source = gaze_source
        self.recorded_gaze_probability = recorded_gaze_probability
        self.include_reports = include_reports
        self.max_report_tokens = max_report_tokens
        self.seed = seed
        self.include_finding_labels = include_finding_labels
        self.labelled_finding_probability = labelled_finding_probability
        self.include_fixation_findings = include_fixation_findings

    def __call__(self, examples: list[dict]) -> BatchFeature:
        if not isinstance(examples, (list, tuple)) or not examples:
            raise ValueError("Gaze2ReportCollator needs a non-empty list of examples")
        for index, example in enumerate(examples):
            if not isinstance(example, dict) or "image" not in example:
                raise ValueError(f"examples[{index}] must be a dict with an 'image' field")
            if self.include_reports and not isinstance(example.get("report"), str):
                raise ValueError(f"examples[{index}] (id {example.get('id')!r}) has no 'report' string")
        images = [load_example_image(example["image"]) for example in examples]
        reports = [example["report"] for example in examples] if self.include_reports else None
        fixations = [example.get("fixations") or None for example in examples]
        processor_kwargs = {"max_report_tokens": self.max_report_tokens} if self.include_reports else {}
        if self.include_fixation_findings:
            processor_kwargs["fixation_findings"] = [
                fixation_finding_names(example) if sequence is not None else None
                for example, sequence in zip(examples, fixations)
            ]
        batch = self.processor(
            images=images, reports=reports, fixations=fixations, return_tensors="pt", **processor_kwargs
        )
        has_gaze = torch.tensor([sequence is not None for sequence in fixations])  # (batch,)
        if self.gaze_source == "recorded":
            use_recorded_gaze = has_gaze
        elif self.gaze_source == "predicted":
            use_recorded_gaze = torch.zeros_like(has_gaze)
        else:
            use_recorded_gaze = has_gaze & (self.draws(examples, "gaze") < self.recorded_gaze_probability)
        batch["use_recorded_gaze"] = use_recorded_gaze
        if self.include_finding_labels:
            batch["finding_labels"], batch["finding_label_mask"] = finding_label_tensors(examples)
            if self.labelled_finding_probability > 0:
                batch["use_labelled_findings"] = self.draws(examples, "findings") < self.labelled_finding_probability
        return batch

    def draws(self, examples: list[dict], purpose: str) -> torch.Tensor:
        """One uniform draw in [0, 1) per example (batch,), fixed by the seed, the purpose and the example's id."""
        return torch.tensor(
            [random.Random(f"{self.seed}:{purpose}:{example.get('id')}").random() for example in examples]
        )


def finding_label_tensors(examples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples' CheXpert labels as (batch, 14) float targets and a (batch, 14) mask of the usable ones. As in
    CheXpert training, a blank (None: not mentioned) counts as negative and an uncertain label (-1) is left out; an
    example whose labels are all blank (a study without labels) is left out entirely."""
    targets, mask = [], []
    for index, example in enumerate(examples):
        labels = example.get("labels")
        if labels is None:
            labels = [None] * len(CHEXPERT_OBSERVATIONS)
        if len(labels) != len(CHEXPERT_OBSERVATIONS) or any(value not in LABEL_VALUES for value in labels):
            raise ValueError(
                f"examples[{index}] (id {example.get('id')!r}): 'labels' must hold {len(CHEXPERT_OBSERVATIONS)} values "
                f"from {LABEL_VALUES} (the CheXpert observations in order), got {labels!r}"
            )
        labelled = any(value is not None for value in labels)
        targets.append([1.0 if value == 1 else 0.0 for value in labels])
        mask.append([labelled and value != -1 for value in labels])
    return torch.tensor(targets), torch.tensor(mask)  # (batch, 14) each


def load_example_image(image) -> Image.Image:
    """An example's image: a PIL image, a path, or the {"bytes", "path"} dict of an undecoded `datasets.Image`."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return load_image(Image.open(io.BytesIO(image["bytes"])))
        return load_image(image["path"])
    return load_image(image)
