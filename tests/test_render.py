import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling_gaze2report.data.render import PREDICTED_COLOUR, RECORDED_COLOUR, render_scanpath
from modeling_gaze2report.data.synthetic import make_synthetic_study

REPOSITORY = Path(__file__).resolve().parents[1]


def _colour_fraction(image, colour):
    pixels = np.asarray(image).astype(int)
    return (np.abs(pixels - np.array(colour)).sum(axis=-1) < 60).mean()


def test_render_upscales_and_draws_the_recorded_scanpath_in_its_colour():
    example, _ = make_synthetic_study(0, image_size=128)
    rendered = render_scanpath(example["image"], example["fixations"])
    assert rendered.mode == "RGB" and rendered.size == (512, 512)
    assert _colour_fraction(rendered, RECORDED_COLOUR) > 0.005
    assert _colour_fraction(rendered, PREDICTED_COLOUR) == 0


def test_predicted_scanpath_is_drawn_in_another_colour_where_its_fixations_are():
    image = np.full((200, 200), 60, dtype=np.uint8)
    recorded = np.array([[20.0, 20.0, 0.3], [40.0, 30.0, 0.5]])
    predicted = [{"x": 160.0, "y": 170.0, "duration": 0.8}]
    rendered = np.asarray(render_scanpath(image, recorded, predicted=predicted, min_size=200))
    assert _colour_fraction(rendered[150:190, 140:180], PREDICTED_COLOUR) > 0.005
    assert _colour_fraction(rendered[0:60, 0:60], RECORDED_COLOUR) > 0.005
    assert _colour_fraction(rendered[0:60, 0:60], PREDICTED_COLOUR) == 0


def test_render_writes_a_png_without_leaving_temporary_files(tmp_path):
    image = Image.new("L", (64, 64), 100)
    target = tmp_path / "nested" / "scanpath.png"
    rendered = render_scanpath(image, [{"x": 10, "y": 10, "duration": 0.2}], path=target)
    assert list(target.parent.iterdir()) == [target]
    with Image.open(target) as written:
        assert written.format == "PNG" and written.size == rendered.size


@pytest.mark.parametrize(
    "fixations",
    [
        [{"x": 1.0, "y": 2.0}],
        np.zeros((3, 2)),
        [{"x": 1.0, "y": 2.0, "duration": -0.5}],
        [{"x": float("nan"), "y": 1.0, "duration": 0.2}],
    ],
)
def test_bad_fixations_are_rejected(fixations):
    with pytest.raises(ValueError, match="render_scanpath"):
        render_scanpath(Image.new("L", (32, 32)), fixations)


def test_bad_image_is_rejected():
    with pytest.raises(ValueError, match="image"):
        render_scanpath(np.zeros((8, 8), dtype=np.float32), [])


@pytest.mark.slow
def test_example_script_renders_studies_with_sidecar_reports(tmp_path):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPOSITORY)}
    subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "examples" / "render_synthetic.py"),
            "--num",
            "2",
            "--seed",
            "3",
            "--image-size",
            "128",
            "--output",
            str(tmp_path),
        ],
        check=True,
        env=environment,
        capture_output=True,
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "synthetic-3-00000.png",
        "synthetic-3-00000.txt",
        "synthetic-3-00001.png",
        "synthetic-3-00001.txt",
    ]
    example, _ = make_synthetic_study((3, 1), image_size=128)
    assert f"report: {example['report']}" in (tmp_path / "synthetic-3-00001.txt").read_text()
