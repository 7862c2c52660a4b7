"""Batches Gaze2Report examples for training and evaluation."""

import io
import random

import torch
from PIL import Image
from transformers import BatchFeature

from ..checks_gaze2report import is_positive_integer
from ..image_loading_gaze2report import ResizedImage, load_image
from ..observations import CHEXPERT_OBSERVATIONS
from .alignment import fixation_finding_names
from .schema import LABEL_VALUES

GAZE_SOURCES = ("recorded", "predicted", "mix")


class Gaze2ReportCollator:
    """Turns a list of `GAZE2REPORT_FEATURES` examples into model inputs with the processor, and says per example
    whether its gaze graph is built from the recorded fixations (teacher forcing) or from the predicted scanpath.
    Examples of the preprocessing cache (`build_image_cache`: an image at the model's input size with
    `original_width` and `original_height`) are passed as `ResizedImage`s, so no image file is read.

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
            otherwise, and `finding_label_mask` (batch, 14) (see `finding_label_tensors`); stage 1 trains a trainable
            vision tower with them.
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
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.processor = processor
        self.gaze_source = gaze_source
        self.recorded_gaze_probability = recorded_gaze_probability
        self.include_reports = include_reports
        self.max_report_tokens = max_report_tokens
        self.seed = seed
        self.include_finding_labels = include_finding_labels
        self.include_fixation_findings = include_fixation_findings

    def __call__(self, examples: list[dict]) -> BatchFeature:
        if not isinstance(examples, (list, tuple)) or not examples:
            raise ValueError("Gaze2ReportCollator needs a non-empty list of examples")
        for index, example in enumerate(examples):
            if not isinstance(example, dict) or "image" not in example:
                raise ValueError(f"examples[{index}] must be a dict with an 'image' field")
            if self.include_reports and not isinstance(example.get("report"), str):
                raise ValueError(f"examples[{index}] (id {example.get('id')!r}) has no 'report' string")
        images = [example_image_source(example, index) for index, example in enumerate(examples)]
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
            draws = torch.tensor(
                [random.Random(f"{self.seed}:gaze:{example.get('id')}").random() for example in examples]
            )
            use_recorded_gaze = has_gaze & (draws < self.recorded_gaze_probability)  # (batch,)
        batch["use_recorded_gaze"] = use_recorded_gaze
        if self.include_finding_labels:
            batch["finding_labels"], batch["finding_label_mask"] = finding_label_tensors(examples)
        return batch


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


def example_image_source(example: dict, index: int):
    """What the processor reads an example's image from: a `ResizedImage` for an example of the preprocessing cache
    (`original_width` and `original_height` set), else the decoded image (`load_example_image`)."""
    image = example["image"]
    if example.get("original_width") is not None or example.get("original_height") is not None:
        width, height = example.get("original_width"), example.get("original_height")
        if not (is_positive_integer(width) and is_positive_integer(height)):
            raise ValueError(
                f"examples[{index}] (id {example.get('id')!r}): a cached example needs integer original_width and "
                f"original_height >= 1, got {width!r} and {height!r}"
            )
        return ResizedImage(load_example_image(image), (width, height))
    return load_example_image(image)


def example_original_size(example: dict, index: int) -> tuple[int, int]:
    """(width, height) of an example's image as its file holds it: the recorded original size of a cached example,
    else the decoded image's size. Scanpaths map back to these pixels."""
    source = example_image_source(example, index)
    return source.original_size if isinstance(source, ResizedImage) else source.size


def load_example_image(image) -> Image.Image:
    """An example's image: a PIL image, a path, or the {"bytes", "path"} dict of an undecoded `datasets.Image`."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return load_image(Image.open(io.BytesIO(image["bytes"])))
        return load_image(image["path"])
    return load_image(image)
