"""pipeline("gaze2report"): reports and scanpaths in original pixels, from PNG and DICOM."""

import pytest
import torch
from PIL import Image
from transformers import pipeline

import modeling_gaze2report  # noqa: F401  (registers the task)
from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration, Gaze2ReportPipeline, load_image


def test_pipeline_on_png_and_dicom(tiny_model_dir, tmp_path, xray, rg1_uncr):
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    pipe = pipeline("gaze2report", model=str(tiny_model_dir))
    assert isinstance(pipe, Gaze2ReportPipeline)
    [png_result] = pipe(str(png), max_new_tokens=4)
    assert isinstance(png_result["report"], str)
    assert 1 <= len(png_result["scanpath"]) <= 16
    for point in png_result["scanpath"]:
        assert 0 <= point["x"] <= 90 and 0 <= point["y"] <= 120 and point["duration"] > 0
    [dicom_result] = pipe(str(rg1_uncr), max_new_tokens=4)
    width, height = load_image(rg1_uncr).size
    assert all(0 <= p["x"] <= width and 0 <= p["y"] <= height for p in dicom_result["scanpath"])
    assert max(p["x"] for p in dicom_result["scanpath"]) > 90, "scanpath is mapped back to the DICOM's own pixels"


def test_pipeline_batches_and_scanpath_matches_the_model(tiny_model_dir, tiny_model, tiny_processor, xray):
    pipe = pipeline("gaze2report", model=str(tiny_model_dir))
    results = pipe([xray, xray[:, ::-1].copy(), xray], batch_size=2, max_new_tokens=3)
    assert len(results) == 3 and all(len(r) == 1 for r in results)
    assert results[0] == results[2]
    with torch.no_grad():
        scanpath = tiny_model.get_image_features(tiny_processor(images=[xray])["pixel_values"]).scanpath
    expected = tiny_processor.post_process_scanpath(scanpath.fixations, scanpath.fixation_mask, [(90, 120)])[0]
    scanpath = results[0][0]["scanpath"]
    assert [sorted(point) for point in scanpath] == [sorted(point) for point in expected]
    for point, expected_point in zip(scanpath, expected, strict=True):
        for field in ("x", "y", "duration"):
            assert point[field] == pytest.approx(expected_point[field], abs=1e-4), field


def test_pipeline_without_scanpath_and_bad_arguments(tiny_model_dir, xray):
    pipe = pipeline("gaze2report", model=str(tiny_model_dir))
    [result] = pipe(xray, max_new_tokens=2, return_scanpath=False)
    assert set(result) == {"report"}
    with pytest.raises(ValueError, match="Unknown argument"):
        pipe(xray, temperature=0.5)
    with pytest.raises(FileNotFoundError, match="missing.dcm"):
        pipe("missing.dcm")


def test_no_gaze_model_returns_no_scanpath(tiny_processor, tmp_path, xray):
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_gaze=False))
    model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    pipe = pipeline("gaze2report", model=str(tmp_path))
    [result] = pipe(xray, max_new_tokens=2)
    assert set(result) == {"report"}
    with pytest.raises(ValueError, match="use_gaze=False"):
        pipe(xray, return_scanpath=True)
