"""Gaze2ReportCollator: the processor receives the right lists and `use_recorded_gaze` follows `gaze_source`."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BatchFeature

from modeling_gaze2report.data import Gaze2ReportCollator

FIXATION = {"x": 3.0, "y": 4.0, "duration": 0.2}


class RecordingProcessor:
    """Stands in for Gaze2ReportProcessor: records what it is called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, images, reports, fixations, return_tensors, **text_kwargs):
        self.calls.append(
            {
                "images": images,
                "reports": reports,
                "fixations": fixations,
                "return_tensors": return_tensors,
                **text_kwargs,
            }
        )
        return BatchFeature({"pixel_values": torch.zeros(len(images), 1)})


def make_examples(tmp_path, count=4):
    """Examples as a reader gives them: a path, a PIL image, datasets' {"bytes", "path"} dict; every other one
    without gaze."""
    path = tmp_path / "xray.png"
    Image.fromarray(np.full((6, 8), 100, dtype=np.uint8)).save(path)
    buffer = io.BytesIO()
    Image.fromarray(np.full((5, 7, 3), 50, dtype=np.uint8)).save(buffer, format="PNG")
    images = [str(path), Image.new("RGB", (9, 4)), {"bytes": buffer.getvalue(), "path": None}, Path(path)]
    return [
        {"id": str(i), "image": images[i % 4], "report": f"report {i}", "fixations": [FIXATION] if i % 2 == 0 else []}
        for i in range(count)
    ]


def test_processor_receives_grayscale_images_reports_and_fixations_or_none(tmp_path):
    processor = RecordingProcessor()
    batch = Gaze2ReportCollator(processor)(make_examples(tmp_path))
    (call,) = processor.calls
    assert [image.mode for image in call["images"]] == ["L"] * 4
    assert [image.size for image in call["images"]] == [(8, 6), (9, 4), (7, 5), (8, 6)]
    assert call["reports"] == ["report 0", "report 1", "report 2", "report 3"]
    assert call["fixations"] == [[FIXATION], None, [FIXATION], None]
    assert call["return_tensors"] == "pt"
    assert batch["use_recorded_gaze"].tolist() == [True, False, True, False]
    assert batch["use_recorded_gaze"].dtype == torch.bool


def test_predicted_gaze_still_passes_recorded_fixations_and_generation_passes_no_reports(tmp_path):
    processor = RecordingProcessor()
    batch = Gaze2ReportCollator(processor, gaze_source="predicted", include_reports=False)(make_examples(tmp_path))
    assert batch["use_recorded_gaze"].tolist() == [False] * 4
    assert processor.calls[0]["fixations"][0] == [FIXATION] and processor.calls[0]["reports"] is None


def test_mix_draws_are_seeded_and_never_pick_missing_gaze(tmp_path):
    examples = make_examples(tmp_path, count=8)
    draws = [
        Gaze2ReportCollator(RecordingProcessor(), "mix", 0.5, seed=3)(examples)["use_recorded_gaze"] for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1])
    assert not draws[0][1::2].any()
    many = make_examples(tmp_path, count=400)
    half = Gaze2ReportCollator(RecordingProcessor(), "mix", 0.5, seed=3)(many)["use_recorded_gaze"][::2].float()
    assert 0.4 < half.mean() < 0.6
    # the draw belongs to the example, not to its batch: reordering or splitting the batch keeps it
    split = torch.cat(
        [
            Gaze2ReportCollator(RecordingProcessor(), "mix", 0.5, seed=3)(many[i : i + 7])["use_recorded_gaze"]
            for i in range(0, 400, 7)
        ]
    )
    assert torch.equal(split[::2].float(), half)
    other_seed = Gaze2ReportCollator(RecordingProcessor(), "mix", 0.5, seed=4)(many)["use_recorded_gaze"][::2].float()
    assert not torch.equal(other_seed, half)
    assert Gaze2ReportCollator(RecordingProcessor(), "mix", 0.0)(examples)["use_recorded_gaze"].sum() == 0


def test_arguments_and_examples_are_validated(tmp_path):
    with pytest.raises(ValueError, match="gaze_source must be one of"):
        Gaze2ReportCollator(RecordingProcessor(), gaze_source="teacher")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got 1.5"):
        Gaze2ReportCollator(RecordingProcessor(), "mix", 1.5)
    with pytest.raises(ValueError, match="only applies to gaze_source='mix'"):
        Gaze2ReportCollator(RecordingProcessor(), "recorded", 0.5)
    with pytest.raises(ValueError, match="processor must be callable"):
        Gaze2ReportCollator("processors/tiny")
    collator = Gaze2ReportCollator(RecordingProcessor())
    with pytest.raises(ValueError, match="non-empty list"):
        collator([])
    with pytest.raises(ValueError, match=r"examples\[0\] \(id 'x'\) has no 'report'"):
        collator([{"id": "x", "image": make_examples(tmp_path)[0]["image"]}])


def test_real_processor_batches_recorded_gaze(tmp_path):
    from modeling_gaze2report import Gaze2ReportProcessor

    processor = Gaze2ReportProcessor.from_pretrained(str(Path(__file__).parent.parent / "processors" / "tiny"))
    batch = Gaze2ReportCollator(processor)(make_examples(tmp_path))
    assert batch["pixel_values"].shape[0] == 4
    assert batch["fixations"].shape == (4, processor.max_fixations, 3)
    assert batch["fixation_mask"][:, 0].tolist() == [True, False, True, False]
    assert batch["labels"].shape == batch["input_ids"].shape
    assert batch["use_recorded_gaze"].tolist() == [True, False, True, False]


def test_finding_labels_follow_chexpert_training_conventions(tmp_path):
    examples = make_examples(tmp_path, count=3)
    positive_effusion = [None] * 14
    positive_effusion[10] = 1  # Pleural Effusion
    uncertain_edema = [0] * 14
    uncertain_edema[5] = -1  # Edema
    examples[0]["labels"], examples[1]["labels"], examples[2]["labels"] = (
        positive_effusion,
        uncertain_edema,
        [None] * 14,
    )
    batch = Gaze2ReportCollator(RecordingProcessor(), include_finding_labels=True)(examples)
    targets, mask = batch["finding_labels"], batch["finding_label_mask"]
    assert targets.shape == mask.shape == (3, 14) and targets.dtype == torch.float32 and mask.dtype == torch.bool
    # blank = not mentioned = negative; the positive stays positive
    assert targets[0].tolist() == [1.0 if index == 10 else 0.0 for index in range(14)] and mask[0].all()
    # uncertain is left out, certain negatives are kept
    assert mask[1].tolist() == [index != 5 for index in range(14)] and not targets[1].any()
    # a study without any label trains nothing
    assert not mask[2].any()
    assert "finding_labels" not in Gaze2ReportCollator(RecordingProcessor())(examples)


def test_malformed_finding_labels_name_the_example(tmp_path):
    examples = make_examples(tmp_path, count=2)
    examples[1]["labels"] = [2] * 14
    with pytest.raises(ValueError, match=r"examples\[1\] \(id '1'\): 'labels' must hold 14 values"):
        Gaze2ReportCollator(RecordingProcessor(), include_finding_labels=True)(examples)
    examples[1]["labels"] = [1] * 13
    with pytest.raises(ValueError, match=r"examples\[1\]"):
        Gaze2ReportCollator(RecordingProcessor(), include_finding_labels=True)(examples)
