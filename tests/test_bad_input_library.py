"""Bad input to the library, round two: images, fixations, findings, reports, prompt templates, grounding,
checkpoints, the pipeline's model folder and the config's numbers each give a clear error naming the file, field or
value, or a correct result."""

import json
import shutil

import numpy as np
import pytest
import torch

from modeling_gaze2report import (
    Gaze2ReportConfig,
    Gaze2ReportForConditionalGeneration,
    Gaze2ReportProcessor,
    gaze2report_pipeline,
    load_image,
)
from modeling_gaze2report.grounding_gaze2report import ground_report
from modeling_gaze2report.observations import FINDING_OBSERVATIONS

from .conftest import REPOSITORY_ROOT

FIXATIONS = [(20.0, 30.0, 0.3), (60.0, 90.0, 0.5), (45.0, 10.0, 0.2)]  # inside the 90 x 120 test image


def test_a_text_file_named_dcm_is_no_dicom_file(tmp_path):
    path = tmp_path / "chest.dcm"
    path.write_text("Patient: anonymous\nFindings: none\n")
    with pytest.raises(ValueError, match=f"{path} is not a DICOM file"):
        load_image(path)


@pytest.mark.parametrize("url", ["https://example.com/cxr.png", "http://example.com//a/cxr.dcm", "s3://bucket/x.png"])
def test_a_url_is_refused_intact_with_what_to_do(url):
    with pytest.raises(ValueError, match="is a URL; load_image reads local files only: download the file first") as e:
        load_image(url)
    assert str(e.value).startswith(url)


@pytest.fixture
def dicom_copy(rg1_uncr, tmp_path):
    """A writable copy of the real radiograph, with a function that sets one of its fields."""
    import pydicom

    def with_field(name, value):
        dataset = pydicom.dcmread(rg1_uncr)
        dataset.RescaleSlope, dataset.RescaleIntercept = 1.0, 0.0
        setattr(dataset, name, value)
        path = tmp_path / f"{name}.dcm"
        dataset.save_as(path)
        return path

    return with_field


@pytest.mark.parametrize("name", ["RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_dicom_with_a_non_finite_rescale_or_window_names_the_field(dicom_copy, name, value):
    path = dicom_copy(name, value)
    with pytest.raises(ValueError, match=f"DICOM file {path}: {name} is .*, not a finite number"):
        load_image(path)


def test_a_finite_rescale_still_loads(dicom_copy):
    image = np.asarray(load_image(dicom_copy("RescaleSlope", 2.0)))
    assert image.min() < image.max()


@pytest.mark.parametrize("window", [(float("nan"), 400.0), (40.0, float("inf"))])
def test_a_non_finite_window_is_refused(dicom_copy, window):
    with pytest.raises(ValueError, match="window centre and width must be finite numbers"):
        load_image(dicom_copy("RescaleSlope", 1.0), window=window)


@pytest.mark.parametrize("fixations", [[5], [5.0], ["abc"]])
def test_a_scanpath_that_is_no_sequence_names_its_image(tiny_processor, xray, fixations):
    with pytest.raises(ValueError, match=r"fixations\[0\] = .* is not a scanpath; give a list of \(x, y, duration\)"):
        tiny_processor(images=[xray], fixations=fixations)


def test_fixations_that_are_no_list_per_image_are_refused(tiny_processor, xray):
    with pytest.raises(ValueError, match=r"fixations must be a list with one entry per image \(None .*\), got int"):
        tiny_processor(images=[xray], fixations=5)


def test_a_scanpath_given_as_columns_is_the_same_scanpath(tiny_processor, xray):
    records = tiny_processor(images=[xray], fixations=[FIXATIONS])
    x, y, duration = (list(column) for column in zip(*FIXATIONS))
    columns = tiny_processor(images=[xray], fixations=[{"x": x, "y": y, "duration": duration}])
    assert int(columns["fixation_mask"].sum()) == len(FIXATIONS)
    torch.testing.assert_close(columns["fixations"], records["fixations"])
    torch.testing.assert_close(columns["fixation_mask"], records["fixation_mask"])
    as_array = tiny_processor(images=[xray], fixations=np.array([FIXATIONS]))  # (1, 3, 3): one scanpath per image
    torch.testing.assert_close(as_array["fixations"], records["fixations"])


@pytest.mark.parametrize(
    "scanpath, message",
    [
        ({"x": [1.0, 2.0], "y": [1.0]}, r"fixations\[0\] is a dict without the key\(s\) \['duration'\]"),
        ({"x": [1.0, 2.0], "y": [1.0], "duration": [0.1, 0.2]}, "x, y and duration lists differ in length"),
        ({"x": 10.0, "y": 10.0, "duration": 0.3}, r"fixations\[0\]\['x'\] = 10.0 is not a list"),
        ({"x": [10.0], "y": [10.0], "duration": [-1.0]}, r"fixations\[0\]\[0\] has a negative duration"),
    ],
)
def test_a_bad_column_scanpath_says_what_form_is_expected(tiny_processor, xray, scanpath, message):
    with pytest.raises(ValueError, match=message):
        tiny_processor(images=[xray], fixations=[scanpath])


@pytest.mark.parametrize(
    "fixation_findings, message",
    [
        ({"Edema": 0}, r"fixation_findings must be a list with one entry per image .*, got dict"),
        ([{"Edema": 0}], r"fixation_findings\[0\] = \{'Edema': 0\} must be a list with one entry per fixation"),
        ([[{"Edema": 0}, None, None]], r"fixation_findings\[0\]\[0\] = \{'Edema': 0\} must be a list of finding"),
        ([["Edema", None, None]], r"fixation_findings\[0\]\[0\] = 'Edema' must be a list of finding names"),
        ([[[1], None, None]], r"fixation_findings\[0\]\[0\] = \[1\] must be a list of finding names"),
    ],
)
def test_findings_that_are_no_lists_of_names_are_refused(tiny_processor, xray, fixation_findings, message):
    with pytest.raises(ValueError, match=message):
        tiny_processor(images=[xray], fixations=[FIXATIONS], fixation_findings=fixation_findings)


def test_findings_for_an_image_without_fixations_are_refused(tiny_processor, xray):
    with pytest.raises(ValueError, match=r"fixation_findings\[0\] has 1 entries for 0 fixations"):
        tiny_processor(images=[xray], fixations=[None], fixation_findings=[[["Edema"]]])


def test_findings_given_as_lists_of_names_are_read(tiny_processor, xray):
    inputs = tiny_processor(images=[xray], fixations=[FIXATIONS], fixation_findings=[[["Edema"], [], None]])
    edema = FINDING_OBSERVATIONS.index("Edema")
    assert inputs["fixation_finding_mask"][0, :3].tolist() == [True, True, False]
    assert inputs["fixation_finding_labels"][0, 0, edema] == 1 and inputs["fixation_finding_labels"][0, 1].sum() == 0


def test_a_report_with_a_lone_surrogate_names_the_report(tiny_processor, xray):
    with pytest.raises(ValueError, match=r"reports\[1\] holds '\\ud800' at character 3, a lone surrogate"):
        tiny_processor(images=[xray, xray], reports=["No effusion.", "No \ud800 effusion."])


@pytest.mark.parametrize(
    "template, message",
    [
        ("{gaze} {foo}", r"has the unknown field\(s\) \['foo'\]; it may use only \{gaze\} and \{instruction\}"),
        ("{gaze} {}", r"has the unknown field\(s\) \[''\]"),
        ("{gaze.real} {instruction}", r"has the unknown field\(s\) \['gaze.real'\]"),
        ("{gaze} {", "is no format string"),
        ("{instruction} Report:", "prompt_template must contain '{gaze}'"),
    ],
)
def test_a_prompt_template_with_an_unknown_field_is_refused_at_construction(tiny_processor, template, message):
    with pytest.raises(ValueError, match=message):
        Gaze2ReportProcessor(tiny_processor.image_processor, tiny_processor.tokenizer, prompt_template=template)


def test_a_prompt_template_with_literal_braces_works(tiny_processor):
    processor = Gaze2ReportProcessor(
        tiny_processor.image_processor, tiny_processor.tokenizer, prompt_template="{{note}} {gaze}\n{instruction}"
    )
    assert "{note}" in processor.tokenizer.decode(processor.prompt_ids)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.index_fill(0, torch.tensor([1]), float("nan")), "hold NaN or infinite values"),
        (lambda p: p.index_fill(0, torch.tensor([0]), float("inf")), "hold NaN or infinite values"),
        (lambda p: p * 8 - 4, r"must lie in \[0, 1\], got values from -4 to 4; for logits, pass their sigmoid"),
        (lambda p: p[:, :12], r"must have shape \(num_fixations, 13\), got \(3, 12\)"),
        (lambda p: p[None], r"must have shape \(num_fixations, 13\), got \(1, 3, 13\)"),
        (lambda p: p.tolist(), "must be a floating-point torch.Tensor, got list"),
        (lambda p: (p > 0.5).long(), "must be a floating-point torch.Tensor, got torch.int64"),
    ],
)
def test_grounding_refuses_what_are_no_probabilities(change, message):
    probabilities = torch.linspace(0, 1, 3 * len(FINDING_OBSERVATIONS)).view(3, -1)  # (3, 13), from 0 to 1
    assert ground_report("Small pleural effusion.", probabilities)[0]["fixations"]
    with pytest.raises(ValueError, match=message):
        ground_report("Small pleural effusion.", change(probabilities))


@pytest.fixture
def pickled_model_dir(tiny_model, tiny_model_dir, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(tiny_model.state_dict(), pickled / "pytorch_model.bin")
    return pickled


def test_pickled_weights_are_refused_saying_why_and_how_to_opt_in(pickled_model_dir):
    message = (
        f"{pickled_model_dir}: the weights do not load: it holds only pickled weights \\(pytorch_model.bin\\), which "
        "are refused because unpickling can run code; if you trust their source, pass use_safetensors=False"
    )
    with pytest.raises(ValueError, match=message):
        Gaze2ReportForConditionalGeneration.from_pretrained(pickled_model_dir)
    assert Gaze2ReportForConditionalGeneration.from_pretrained(pickled_model_dir, use_safetensors=False) is not None


def another_model_type(tiny_model_dir, tmp_path, model_type):
    other = tmp_path / model_type
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    return other


def test_the_pipeline_entry_names_a_missing_folder_before_transformers(tmp_path, monkeypatch):
    import modeling_gaze2report.pipeline_gaze2report as pipeline_module

    monkeypatch.setattr(pipeline_module, "pipeline", lambda *a, **k: pytest.fail("transformers was reached"))
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=f"{missing}: no such model folder"):
        gaze2report_pipeline(missing)
    with pytest.raises(ValueError, match=f"{tmp_path}: no config.json with a model_type was found"):
        gaze2report_pipeline(str(tmp_path))  # a folder without config.json


@pytest.mark.parametrize("model_type", ["bert", "not-a-model-type"])
def test_the_pipeline_entry_names_another_model_type_before_transformers(tiny_model_dir, tmp_path, model_type):
    other = another_model_type(tiny_model_dir, tmp_path, model_type)
    with pytest.raises(ValueError, match=f"{other}: its config's model_type is '{model_type}', not 'gaze2report'"):
        gaze2report_pipeline(str(other), trust_remote_code=True)


def test_the_pipeline_entry_builds_the_pipeline_for_a_gaze2report_folder(tiny_model_dir, xray):
    pipe = gaze2report_pipeline(tiny_model_dir, language_model_dtype="float32")
    [result] = pipe(xray, max_new_tokens=2)
    assert isinstance(result["report"], str)


def test_the_pipeline_class_refuses_a_model_of_another_type(tiny_processor):
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling_gaze2report import Gaze2ReportPipeline

    other = LlamaForCausalLM(LlamaConfig(**Gaze2ReportConfig().text_config.to_dict()))
    with pytest.raises(ValueError, match="The gaze2report pipeline got a 'llama' model \\(LlamaForCausalLM\\)"):
        Gaze2ReportPipeline(model=other, processor=tiny_processor)


@pytest.mark.parametrize("name", ["gaze_loss_weight", "fixation_finding_loss_weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5])
def test_a_loss_weight_must_be_finite_and_not_negative(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0, got {value!r}"):
        Gaze2ReportConfig(**{name: value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -0.1])
def test_the_fixation_patch_radius_must_be_a_finite_positive_distance(value):
    with pytest.raises(ValueError, match="fixation_patch_radius must be a finite distance > 0"):
        Gaze2ReportConfig(fixation_patch_radius=value)


def test_a_config_json_with_a_nan_weight_is_refused_at_load(tmp_path):
    Gaze2ReportConfig().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "gaze_loss_weight": float("nan")}))
    with pytest.raises(ValueError, match="gaze_loss_weight must be a finite number >= 0, got nan"):
        Gaze2ReportConfig.from_pretrained(tmp_path)
    assert Gaze2ReportConfig(gaze_loss_weight=0.0).gaze_loss_weight == 0.0


def test_a_processor_of_another_image_size_is_refused_when_the_pipeline_loads(tiny_processor, tmp_path):
    from transformers import ViTImageProcessorPil

    Gaze2ReportForConditionalGeneration(Gaze2ReportConfig()).save_pretrained(tmp_path)  # reads 64x64 images
    processor = Gaze2ReportProcessor(ViTImageProcessorPil(size={"height": 96, "width": 96}), tiny_processor.tokenizer)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"The processor makes 96x96 images; the model reads 64x64"):
        gaze2report_pipeline(tmp_path)


def test_a_truncated_tokenizer_file_is_named(tmp_path):
    folder = tmp_path / "processor"
    shutil.copytree(REPOSITORY_ROOT / "processors" / "tiny", folder)
    tokenizer_file = folder / "tokenizer.json"
    tokenizer_file.write_text(tokenizer_file.read_text()[:2000])
    with pytest.raises(ValueError, match=f"{tokenizer_file}: not valid JSON"):
        Gaze2ReportProcessor.from_pretrained(folder)
