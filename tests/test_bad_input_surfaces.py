"""Bad input, round two, on the rendering, the app's uploads and settings, and the training arguments: each gives a
clear error naming the value, or a correct result within bounds; nothing already written is lost."""

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainingArguments

from modeling_gaze2report import app as app_module
from modeling_gaze2report.app import Gaze2ReportApp, check_generation_settings, load_chest_xray
from modeling_gaze2report.cli import overlay_paths
from modeling_gaze2report.data import make_synthetic_dataset
from modeling_gaze2report.data.render import (
    MAX_RENDERED_PIXELS,
    MAX_RENDERED_SIDE,
    PREDICTED_COLOUR,
    overlay_file_names,
    render_scanpath,
)
from modeling_gaze2report.training import DataArguments, ModelArguments, RecipeArguments, main, run_training


def assert_within_the_cap(image: Image.Image) -> None:
    assert max(image.size) <= MAX_RENDERED_SIDE and image.width * image.height <= MAX_RENDERED_PIXELS, image.size


# --- rendering: one size cap -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(2, 1024), (1, 600), (1024, 2), (4000, 4000)])
def test_any_image_shape_renders_within_the_size_cap(size):
    width, height = size
    image = Image.new("L", size, 90)
    predicted = [{"x": width / 2, "y": height / 2, "duration": 0.5}, {"x": width / 2, "y": height / 4, "duration": 0.2}]
    grounding = [{"sentence": "A long sentence about a small right pleural effusion.", "fixations": [0, 1]}]
    rendered = render_scanpath(image, [], predicted=predicted, grounding=grounding)  # a legend on a thin picture
    assert_within_the_cap(rendered)
    plain = render_scanpath(image, predicted)
    assert_within_the_cap(plain)
    assert plain.width / plain.height == pytest.approx(width / height, rel=0.5)  # the shape is kept


def test_the_size_cap_keeps_small_images_upscaled_and_fixations_in_place():
    image = Image.new("L", (100, 50), 0)
    rendered = np.asarray(render_scanpath(image, [], predicted=[{"x": 80.0, "y": 25.0, "duration": 0.5}]))
    assert rendered.shape[:2] == (512, 1024)  # the shorter side reaches 512
    cyan = (np.abs(rendered.astype(int) - PREDICTED_COLOUR).max(axis=-1) < 60).nonzero()
    assert abs(cyan[1].mean() - 80 * 10.24) < 20 and abs(cyan[0].mean() - 25 * 10.24) < 20


def test_many_legend_lines_are_counted_not_drawn_one_by_one():
    image = Image.new("L", (64, 64), 0)
    grounding = [{"sentence": f"Sentence {index}.", "fixations": [0]} for index in range(500)]
    rendered = render_scanpath(image, [], predicted=[{"x": 5, "y": 5, "duration": 0.1}], grounding=grounding)
    assert_within_the_cap(rendered)
    assert rendered.height < 4 * 512


@pytest.mark.parametrize(
    "kwargs, message",
    [({"min_size": 0}, "min_size"), ({"min_size": 10**6}, "min_size"), ({"radius_per_second": float("nan")}, "radius")],
)
def test_bad_render_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_scanpath(Image.new("L", (8, 8)), [], **kwargs)


# --- overlay file names --------------------------------------------------------------------------------------------


def test_overlay_names_are_distinct_even_where_an_image_is_named_like_a_numbered_one(tmp_path):
    images = ["a/x.png", "b/x-2.png", "c/x.png", "d/x.dcm", "e/X.png"]
    names = overlay_file_names(images)
    assert names[:2] == ["x.png", "x-2.png"]
    assert len({name.casefold() for name in names}) == len(images)
    paths = overlay_paths(images, tmp_path / "overlays")
    assert [path.name for path in paths] == names and len(set(paths)) == len(images)


# --- the app: settings and uploads ---------------------------------------------------------------------------------


def png_header_only(path, width: int, height: int) -> None:
    """A PNG file whose header declares `width` x `height` pixels, with no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_a_non_finite_window_is_refused(tmp_path, xray):
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    for centre, width, message in [
        (float("nan"), 400.0, "window centre must be a finite number, got nan"),
        (40.0, float("inf"), "window width must be a finite number, got inf"),
        (40.0, "wide", "window width must be a finite number, got 'wide'"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_chest_xray(png, centre, width)


@pytest.mark.parametrize(
    "max_new_tokens, num_beams, message",
    [
        (float("nan"), 1, "max_new_tokens must be an integer >= 1, got nan"),
        (10**6, 1, "max_new_tokens must be at most 512 in the app, got 1000000"),
        (8, float("inf"), "num_beams must be an integer >= 1, got inf"),
        (8, 64, "num_beams must be at most 4 in the app, got 64"),
    ],
)
def test_bad_generation_settings_are_refused(max_new_tokens, num_beams, message):
    with pytest.raises(ValueError, match=message):
        check_generation_settings(max_new_tokens, num_beams)


def test_uploads_too_large_are_refused_from_their_header(tmp_path, xray, monkeypatch):
    huge = tmp_path / "huge.png"
    png_header_only(huge, 8000, 8000)  # 64 megapixels declared in a 57-byte file
    with pytest.raises(ValueError, match=r"huge\.png is a 8000x8000 image \(64,000,000 pixels\); .* at most"):
        load_chest_xray(huge)
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 30000, 30000)
    with pytest.raises(ValueError, match=r"bomb\.png is too large to decode"):
        load_chest_xray(bomb)
    from pydicom.dataset import Dataset

    dicom = Dataset()  # a DICOM whose header declares 10000 x 10000 pixels, with two bytes of pixel data
    dicom.Rows, dicom.Columns, dicom.BitsAllocated, dicom.SamplesPerPixel, dicom.PixelData = 10000, 10000, 16, 1, b"00"
    dicom.save_as(tmp_path / "huge.dcm", implicit_vr=True, little_endian=True)
    with pytest.raises(ValueError, match=r"huge\.dcm is a 10000x10000 image"):
        load_chest_xray(tmp_path / "huge.dcm")
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    assert load_chest_xray(png).size == (90, 120)
    monkeypatch.setattr(app_module, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(ValueError, match=r"chest\.png has [\d,]+ bytes; the app takes files of at most 100 bytes"):
        load_chest_xray(png)


def test_the_app_refuses_bad_requests_and_keeps_serving(tiny_model_dir, tmp_path, xray):
    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    huge = tmp_path / "huge.png"
    png_header_only(huge, 2, 30_000_000)
    app = Gaze2ReportApp(tiny_model_dir)
    try:
        for image, settings, message in [
            (png, {"window_centre": float("nan"), "window_width": 400.0}, "window centre must be a finite number"),
            (png, {"max_new_tokens": 10**6}, "max_new_tokens must be at most 512"),
            (huge, {}, r"huge\.png is a 2x30000000 image"),
        ]:
            with pytest.raises(app.gradio.Error, match=message):
                app.generate(str(image), **settings)
        report, overlay, _, reading = app.generate(str(png), max_new_tokens=2)
    finally:
        app.close()
    assert isinstance(report, str) and reading.scanpath
    assert_within_the_cap(overlay)


# --- training arguments --------------------------------------------------------------------------------------------


def training_arguments(output_dir, seed=0, **recipe):
    model_args = ModelArguments(lora_r=4, lora_alpha=8, train_language_model=False, language_model_dtype="float32")
    data_args = DataArguments(num_synthetic_studies=20, synthetic_image_size=64, max_report_tokens=48)
    recipe_args = RecipeArguments(**{"stages": "scanpath", "scanpath_max_steps": 2, **recipe})
    training_args = TrainingArguments(
        output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4, report_to=[], seed=seed, use_cpu=True
    )
    return model_args, data_args, recipe_args, training_args


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("learning_rate", "nan", "--learning_rate must be a finite number > 0, got nan"),
        ("learning_rate", "0", "--learning_rate must be a finite number > 0, got 0.0"),
        ("scanpath_learning_rate", "inf", "--scanpath_learning_rate must be a finite number > 0, got inf"),
        ("finding_loss_weight", "-1", "--finding_loss_weight must be a finite number >= 0, got -1.0"),
        ("recorded_gaze_probability", "1.5", r"--recorded_gaze_probability must be a finite number in \[0, 1\]"),
        ("lora_dropout", "nan", r"--lora_dropout must be a finite number in \[0, 1\], got nan"),
        ("scanpath_max_steps", "0", "--scanpath_max_steps must be an integer >= 1, got 0"),
        ("max_steps", "0", "--max_steps must be an integer >= 1, got 0"),
        ("max_grad_norm", "nan", "--max_grad_norm must be a finite number >= 0, got nan"),
        ("weight_decay", "-0.1", "--weight_decay must be a finite number >= 0, got -0.1"),
    ],
)
def test_bad_numeric_training_arguments_are_named_before_anything_is_built(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        main([f"--{option}", value, "--output_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "scanpath_stage.safetensors").exists()


@pytest.fixture(scope="module")
def small_dataset():
    return make_synthetic_dataset(num_studies=20, seed=0, image_size=64)


def test_stage_one_is_reused_only_by_a_run_with_its_settings(tmp_path, small_dataset, monkeypatch):
    run_training("tiny", *training_arguments(tmp_path), dataset=small_dataset)
    weights_path = tmp_path / "scanpath_stage.safetensors"
    weights = load_file(weights_path)
    record = json.loads((tmp_path / "scanpath_stage.json").read_text())
    assert record["training"]["seed"] == 0 and record["recipe"]["scanpath_max_steps"] == 2

    how = r"delete .*scanpath_stage\.safetensors to train stage 1 again .*, or use another --output_dir"
    for arguments, config_overrides, differs in [
        (training_arguments(tmp_path, seed=1), None, "training.seed was 0, now 1"),
        (training_arguments(tmp_path, scanpath_learning_rate=0.5), None, "recipe.scanpath_learning_rate was 0.001"),
        (training_arguments(tmp_path, scanpath_max_steps=3), None, "recipe.scanpath_max_steps was 2, now 3"),
        (training_arguments(tmp_path), {"max_fixations": 8}, "config.max_fixations was 16, now 8"),
    ]:
        with pytest.raises(ValueError, match=f"other settings .*{differs}.*; {how}"):
            run_training("tiny", *arguments, config_overrides, dataset=small_dataset)
    other_studies = make_synthetic_dataset(num_studies=20, seed=1, image_size=64)
    with pytest.raises(ValueError, match="studies.ids_sha256 was"):
        run_training("tiny", *training_arguments(tmp_path), dataset=other_studies)

    # the same settings resume: stage 1 is loaded, not trained again
    monkeypatch.setattr(
        "modeling_gaze2report.training.recipe.Gaze2ReportTrainer.train",
        lambda *args, **kwargs: pytest.fail("stage 1 trained again"),
    )
    model, _, _ = run_training("tiny", *training_arguments(tmp_path), dataset=small_dataset)
    for name, tensor in weights.items():
        torch.testing.assert_close(model.model.state_dict()[name], tensor)
    assert load_file(weights_path).keys() == weights.keys()

    # weights without a record of what made them are not reused either
    (tmp_path / "scanpath_stage.json").unlink()
    with pytest.raises(ValueError, match=f"has no record of the settings stage 1 ran with .*; {how}"):
        run_training("tiny", *training_arguments(tmp_path), dataset=small_dataset)
