"""Bad input never loses data, never hangs, never passes silently: the demo's output folder, the CLI's overlays,
generation settings and the context bound."""

import json
import os
import shutil
import stat

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import pipeline

import modeling_gaze2report  # noqa: F401  (registers the pipeline task)
from modeling_gaze2report import Gaze2ReportForConditionalGeneration, load_image, reduce_scanpath
from modeling_gaze2report.cli import main
from modeling_gaze2report.demo import run as demo_run
from modeling_gaze2report.files import write_text_atomically


def run_tiny_demo(output, seed=0):
    return demo_run.run_demo(output, preset="tiny", seed=seed, num_studies=20, report_steps=2)


def folder_contents(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def leftovers(parent):
    return [path.name for path in parent.iterdir() if ".partial-" in path.name or ".old-" in path.name]


@pytest.mark.slow
def test_a_failed_demo_run_leaves_the_earlier_run_whole_and_a_good_one_replaces_it(tmp_path, monkeypatch):
    output = tmp_path / "demo"
    run_tiny_demo(output)
    earlier = folder_contents(output)
    assert {"metrics.json", "reports.jsonl", "model/config.json"} <= set(earlier)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(demo_run, "write_overlays", fail)
        with pytest.raises(RuntimeError, match="disk full"):
            run_tiny_demo(output, seed=1)
    assert folder_contents(output) == earlier
    assert leftovers(tmp_path) == []

    run_tiny_demo(output, seed=1)
    assert json.loads((output / "metrics.json").read_text())["seed"] == 1
    assert leftovers(tmp_path) == []
    assert stat.S_IMODE((output / "metrics.json").stat().st_mode) == 0o666 & ~current_umask()


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


@pytest.mark.parametrize("kind", ["file", "foreign folder"])
def test_the_demo_refuses_an_output_that_is_not_its_own_before_any_work(tmp_path, kind, monkeypatch):
    output = tmp_path / "out"
    if kind == "file":
        output.write_text("mine")
    else:
        output.mkdir()
        (output / "notes.txt").write_text("mine")
    monkeypatch.setattr(demo_run, "make_synthetic_dataset", lambda *a, **k: pytest.fail("the demo started working"))
    with pytest.raises(ValueError, match="is a file|holds no earlier demo run"):
        run_tiny_demo(output)
    assert (output.read_text() if kind == "file" else (output / "notes.txt").read_text()) == "mine"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "num_studies, report_steps, message",
    [
        (0, None, "at least 10 studies"),
        (5, None, "at least 10 studies"),
        (None, 0, "integer >= 1"),
        (None, -5, "integer >= 1"),
        (None, 2.5, "integer >= 1"),
    ],
)
def test_the_demo_refuses_bad_budgets(tmp_path, num_studies, report_steps, message):
    with pytest.raises(ValueError, match=message):
        demo_run.run_demo(tmp_path / "out", preset="tiny", num_studies=num_studies, report_steps=report_steps)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_overlays_of_images_with_one_stem_get_distinct_names(tiny_model_dir, tmp_path, xray, capsys):
    images = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(xray).save(tmp_path / folder / "x.png")
        images.append(str(tmp_path / folder / "x.png"))
    overlays = tmp_path / "overlays"
    main(
        [
            "generate",
            *images,
            "--model",
            str(tiny_model_dir),
            "--json",
            "--overlay",
            str(overlays),
            "--max-new-tokens",
            "2",
        ]
    )
    assert sorted(path.name for path in overlays.iterdir()) == ["x-2.png", "x.png"]
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["overlay"] for record in records] == [str(overlays / "x.png"), str(overlays / "x-2.png")]
    assert stat.S_IMODE((overlays / "x.png").stat().st_mode) == 0o666 & ~current_umask()
    # a second run would overwrite them: refused before any report is generated
    with pytest.raises(SystemExit, match="would overwrite"):
        main(["generate", *images, "--model", str(tiny_model_dir), "--overlay", str(overlays)])
    assert capsys.readouterr().out == ""


def test_an_overlay_path_that_is_a_file_is_refused_before_generating(tiny_model_dir, tmp_path, xray, capsys):
    Image.fromarray(xray).save(tmp_path / "x.png")
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        main(
            ["generate", str(tmp_path / "x.png"), "--model", str(tiny_model_dir), "--overlay", str(tmp_path / "taken")]
        )
    assert capsys.readouterr().out == ""


@pytest.fixture
def pipe(tiny_model_dir):
    return pipeline("gaze2report", model=str(tiny_model_dir), language_model_dtype="float32")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 10**9}, "exceeds the language model's context of 512 positions"),
        ({"max_new_tokens": 600}, "at most .* new tokens fit"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 1, got 2.5"),
        ({"max_new_tokens": True}, "max_new_tokens must be an integer >= 1, got True"),
        ({"generate_kwargs": {"num_beams": 0}}, "num_beams must be an integer >= 1, got 0"),
        ({"generate_kwargs": "greedy"}, "generate_kwargs must be a dict"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
        ({"return_scanpath": "no"}, "return_scanpath must be True or False, got 'no'"),
    ],
)
def test_bad_generation_settings_are_refused(pipe, xray, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(xray, **kwargs)


def test_the_longest_generation_that_fits_the_context_runs(pipe, xray):
    prompt_length = pipe.processor(images=[xray])["input_ids"].shape[1]
    fitting = pipe.model.config.text_config.max_position_embeddings - prompt_length
    with pytest.raises(ValueError, match=f"at most {fitting} new tokens fit"):
        pipe(xray, max_new_tokens=fitting + 1)
    [result] = pipe(xray, max_new_tokens=fitting, generate_kwargs={"min_new_tokens": 1})
    assert isinstance(result["report"], str)


def test_an_empty_list_of_images_is_refused(pipe):
    with pytest.raises(ValueError, match="empty list of images"):
        pipe([])


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    write_text_atomically(tmp_path / "a.json", "{}")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~current_umask()
    assert [path.name for path in tmp_path.iterdir()] == ["a.json"]


def test_zero_duration_fixations_reduce_to_their_mean_not_the_last_one():
    xs = np.linspace(0.1, 0.88, 40)  # 40 fixations with no dwell, spread over 78% of the width
    path = np.stack([xs, np.full(40, 0.5), np.zeros(40)], axis=1)
    [[x, y, duration]] = reduce_scanpath(path, max_fixations=1, merge_radius=0.05)
    assert x == pytest.approx(xs.mean()) and y == pytest.approx(0.5) and duration == 0
    # with dwell, the centre is the dwell-weighted mean, and zero-dwell members carry no weight
    weighted = np.array([[0.2, 0.5, 0.0], [0.4, 0.5, 1.0], [0.6, 0.5, 3.0]])
    [[x, _, duration]] = reduce_scanpath(weighted, max_fixations=1, merge_radius=0.05)
    assert x == pytest.approx(0.55) and duration == pytest.approx(4.0)


@pytest.mark.parametrize(
    "reports, kwargs, message",
    [
        ([""], {}, r"reports\[0\] is empty or only whitespace"),
        (["  \n\t"], {}, r"reports\[0\] is empty or only whitespace"),
        ({"No effusion.": 1}, {}, "reports must be a string or a list of strings, got dict"),
        (["No effusion."], {"max_report_tokens": -3}, "max_report_tokens must be None or an integer >= 1, got -3"),
        (["No effusion."], {"max_report_tokens": 0}, "max_report_tokens must be None or an integer >= 1, got 0"),
        (
            ["effusion " * 20000],
            {},
            r"reports\[0\] makes a sequence of \d+ tokens, longer than the tokenizer's "
            "model_max_length \\(512\\)",
        ),
    ],
)
def test_bad_reports_are_refused(tiny_processor, xray, reports, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_processor(images=[xray], reports=reports, **kwargs)


def test_a_long_report_is_cut_when_asked(tiny_processor, xray):
    inputs = tiny_processor(images=[xray], reports=["effusion " * 20000], max_report_tokens=40)
    assert int((inputs["labels"] != -100).sum()) == 41  # 40 report tokens and EOS


@pytest.mark.parametrize(
    "fixation, message",
    [
        ((True, 10.0, 0.3), "is not an \\(x, y, duration\\) triple of numbers"),
        ({"x": 10.0, "y": False, "duration": 0.3}, "is not an \\(x, y, duration\\) triple of numbers"),
        ((10.0, 10.0, 1e9), "lasts 1e\\+09 s, longer than any fixation"),
        ("abc", "is not an \\(x, y, duration\\) triple of numbers"),
    ],
)
def test_bad_fixations_are_refused(tiny_processor, xray, fixation, message):
    with pytest.raises(ValueError, match=r"fixations\[0\]\[0\]"):
        tiny_processor(images=[xray], fixations=[[fixation]])
    with pytest.raises(ValueError, match=message):
        tiny_processor(images=[xray], fixations=[[fixation]])


def test_no_images_is_refused(tiny_processor):
    with pytest.raises(ValueError, match="empty list of images"):
        tiny_processor(images=[])


@pytest.mark.parametrize("image", [np.full((1, 1), 128, np.uint8), np.zeros((120, 90), np.uint8)])
def test_an_image_with_nothing_to_read_is_warned_about(tiny_processor, image, caplog):
    inputs = tiny_processor(images=[image])
    assert inputs["pixel_values"].shape[0] == 1
    assert "has nothing to read" in caplog.text


def test_an_ordinary_image_gets_no_warning(tiny_processor, xray, caplog):
    tiny_processor(images=[xray])
    assert "nothing to read" not in caplog.text


def saved_copy(tiny_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def test_pickled_weights_are_refused_unless_asked_for(tiny_model, tiny_model_dir, tmp_path):
    pickled = saved_copy(tiny_model_dir, tmp_path)
    (pickled / "model.safetensors").unlink()
    torch.save(tiny_model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="the weights do not load"):
        Gaze2ReportForConditionalGeneration.from_pretrained(pickled)
    with pytest.raises(ValueError, match="the weights do not load"):
        pipeline("gaze2report", model=str(pickled))
    loaded = Gaze2ReportForConditionalGeneration.from_pretrained(pickled, use_safetensors=False)
    torch.testing.assert_close(loaded.lm_head.weight, tiny_model.lm_head.weight)


def test_a_config_of_another_model_type_is_refused(tiny_model_dir, tmp_path):
    other = saved_copy(tiny_model_dir, tmp_path)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type is 'bert', not 'gaze2report'"):
        Gaze2ReportForConditionalGeneration.from_pretrained(other)


def rewrite_weights(directory, change):
    weights = load_file(directory / "model.safetensors")
    save_file(change(weights), str(directory / "model.safetensors"), metadata={"format": "pt"})


def test_missing_weights_are_refused_unless_allowed(tiny_model_dir, tmp_path):
    partial = saved_copy(tiny_model_dir, tmp_path)
    rewrite_weights(
        partial,
        lambda weights: {name: tensor for name, tensor in weights.items() if ".scanpath_predictor." not in f".{name}"},
    )
    with pytest.raises(ValueError, match=r"weights are missing from the checkpoint \(e\.g\. model\.scanpath_predictor"):
        Gaze2ReportForConditionalGeneration.from_pretrained(partial)
    model, info = Gaze2ReportForConditionalGeneration.from_pretrained(
        partial, allow_missing_weights=True, output_loading_info=True
    )
    assert info["missing_keys"] and all("scanpath_predictor" in name for name in info["missing_keys"])


def test_non_finite_weights_are_refused(tiny_model_dir, tmp_path):
    broken = saved_copy(tiny_model_dir, tmp_path)
    rewrite_weights(
        broken,
        lambda weights: {
            name: tensor.fill_(float("nan")) if ".projector." in f".{name}" else tensor
            for name, tensor in weights.items()
        },
    )
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        Gaze2ReportForConditionalGeneration.from_pretrained(broken)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file"])
def test_a_truncated_weights_file_names_the_checkpoint(tiny_model_dir, tmp_path, content):
    truncated = saved_copy(tiny_model_dir, tmp_path)
    (truncated / "model.safetensors").write_bytes(content)
    with pytest.raises(ValueError, match=f"{truncated}: the weights do not load"):
        Gaze2ReportForConditionalGeneration.from_pretrained(truncated)


def test_content_decides_over_a_dcm_suffix(tmp_path, xray):
    png_named_dcm = tmp_path / "chest.dcm"
    Image.fromarray(xray).save(png_named_dcm, format="PNG")
    assert np.array_equal(np.asarray(load_image(png_named_dcm)), xray)


def test_a_decompression_bomb_names_the_file(tmp_path, xray, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(xray).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 120 x 90 is then more than twice the limit
    with pytest.raises(ValueError, match=f"Cannot read image file {path}: DecompressionBombError"):
        load_image(path)


def test_a_dicom_conversion_failure_names_the_file(rg1_uncr, monkeypatch):
    import pydicom.pixels

    def broken(*args, **kwargs):
        raise KeyError("(0028,1053) RescaleSlope")

    monkeypatch.setattr(pydicom.pixels, "apply_modality_lut", broken)
    with pytest.raises(ValueError, match=f"Cannot read image file {rg1_uncr}: KeyError"):
        load_image(rg1_uncr)


def test_a_model_folder_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=f"{missing}: no such model folder"):
        Gaze2ReportForConditionalGeneration.from_pretrained(missing)


def test_the_pipeline_says_why_the_weights_do_not_load(tiny_model_dir, tmp_path):
    without_weights = saved_copy(tiny_model_dir, tmp_path)
    (without_weights / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=f"{without_weights}: the weights do not load"):
        pipeline("gaze2report", model=str(without_weights))
