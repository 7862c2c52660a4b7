"""The one inference path (`inference_gaze2report`): each image batch is encoded once, for the pipeline and the
records alike; beams and `num_return_sequences` keep each sequence with its own image's scanpath; the layers import
downwards only."""

import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers import pipeline

import modeling_gaze2report  # noqa: F401  (registers the pipeline task)
from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.data import make_synthetic_dataset
from modeling_gaze2report.reporting import generate_records

from .conftest import REPOSITORY_ROOT


@pytest.fixture(scope="module")
def grounded_model(tiny_processor):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True)).eval()
    model.bind_processor(tiny_processor)
    return model


@contextmanager
def counting_encodings(model):
    """A list that gains an entry each time the vision tower runs (each encoding of a batch of images)."""
    calls = []
    handle = model.model.vision_tower.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_the_pipeline_encodes_each_batch_once_for_report_scanpath_and_grounding(
    grounded_model, tiny_processor, tmp_path, xray
):
    grounded_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    pipe = pipeline("gaze2report", model=str(tmp_path), language_model_dtype="float32")
    images = [xray, xray[:, ::-1].copy(), np.roll(xray, 30, axis=0)]
    with counting_encodings(pipe.model) as encodings:
        results = pipe(images, batch_size=2, max_new_tokens=6, return_scanpath=True, return_grounding=True)
    assert len(encodings) == 2, "three images in batches of two: two encodings, generation included"
    assert [len(result) for result in results] == [1, 1, 1]
    assert all(set(result) == {"report", "scanpath", "grounding"} for [result] in results)


def test_records_encode_each_batch_once(grounded_model, tiny_processor):
    dataset = make_synthetic_dataset(num_studies=20, seed=0, image_size=64)["train"].select(range(5))
    with counting_encodings(grounded_model) as encodings:
        records = generate_records(grounded_model, tiny_processor, dataset, batch_size=2, max_new_tokens=6)
    assert len(records) == 5 and len(encodings) == 3, "five studies in batches of two: three encodings"
    assert all(record["predicted_scanpath"] and "grounding" in record for record in records)
    with pytest.raises(ValueError, match="one record per example: num_return_sequences must be 1, got 2"):
        generate_records(grounded_model, tiny_processor, dataset, generate_kwargs={"num_return_sequences": 2})


def test_beams_return_each_images_sequences_with_its_own_scanpath(tiny_model, tiny_processor, tmp_path, xray):
    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    pipe = pipeline("gaze2report", model=str(tmp_path), language_model_dtype="float32")
    images = [xray, xray[:, ::-1].copy()]
    beams = {"num_beams": 3, "num_return_sequences": 2, "eos_token_id": None}
    with counting_encodings(pipe.model) as encodings:
        results = pipe(images, batch_size=2, max_new_tokens=5, generate_kwargs=beams)
    assert len(encodings) == 1
    # the same beams as generate encoding the images itself, image by image, best first
    inputs = tiny_processor(images=images)
    expected = tiny_processor.batch_decode(
        pipe.model.generate(**inputs, max_new_tokens=5, do_sample=False, **beams)
    )  # (2 images x 2 sequences), each image's side by side
    assert [[result["report"] for result in image_results] for image_results in results] == [
        expected[:2],
        expected[2:],
    ]
    for image, image_results in zip(images, results):
        [alone] = pipe(image, max_new_tokens=1)
        assert [result["scanpath"] for result in image_results] == [alone["scanpath"]] * 2
    assert results[0][0]["scanpath"] != results[1][0]["scanpath"], "the two images have their own scanpaths"


def test_a_model_without_gaze_encodes_once_and_returns_reports_only(tiny_processor, tmp_path, xray):
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_gaze=False))
    model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    pipe = pipeline("gaze2report", model=str(tmp_path), language_model_dtype="float32")
    with counting_encodings(pipe.model) as encodings:
        [result] = pipe(xray, max_new_tokens=3, generate_kwargs={"num_beams": 2})
    assert set(result) == {"report"} and len(encodings) == 1


def test_the_library_does_not_import_the_layers_above_it():
    code = (
        "import sys, modeling_gaze2report, modeling_gaze2report.presets, modeling_gaze2report.reporting; "
        "above = sorted(name for name in sys.modules if name.startswith(('modeling_gaze2report.demo', "
        "'modeling_gaze2report.training', 'modeling_gaze2report.app', 'modeling_gaze2report.cli'))); "
        "assert not above, above"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPOSITORY_ROOT)
