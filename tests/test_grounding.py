"""Grounding at inference: the per-sentence rule, the pipeline's `return_grounding`, the records and the overlays."""

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

import modeling_gaze2report  # noqa: F401  (registers the pipeline task)
from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.data import make_synthetic_dataset
from modeling_gaze2report.data.render import PREDICTED_COLOUR, SENTENCE_COLOURS, render_scanpath
from modeling_gaze2report.grounding_gaze2report import ground_report
from modeling_gaze2report.labeler_gaze2report import report_sentences
from modeling_gaze2report.observations import FINDING_OBSERVATIONS
from modeling_gaze2report.reporting import generate_records

EFFUSION, NODULE = FINDING_OBSERVATIONS.index("Pleural Effusion"), FINDING_OBSERVATIONS.index("Lung Lesion")


def test_sentences_keep_their_text_and_do_not_split_decimals():
    report = "A 1.5 cm nodule in the Right upper lobe. No pneumothorax!\nHeart size is normal"
    assert report_sentences(report) == [
        "A 1.5 cm nodule in the Right upper lobe.",
        "No pneumothorax!",
        "Heart size is normal",
    ]
    assert report_sentences("") == []


def test_a_sentence_is_grounded_by_the_fixations_that_see_its_findings():
    probabilities = torch.full((5, len(FINDING_OBSERVATIONS)), 0.05)
    probabilities[[1, 3], EFFUSION] = 0.9
    probabilities[4, NODULE] = 0.3  # below the threshold everywhere: the best fixation stands in
    report = (
        "Small left pleural effusion. The heart is normal in size. No pneumothorax. A nodule in the right upper lobe."
    )
    assert ground_report(report, probabilities) == [
        {"sentence": "Small left pleural effusion.", "fixations": [1, 3]},
        {"sentence": "The heart is normal in size.", "fixations": []},
        {"sentence": "No pneumothorax.", "fixations": []},
        {"sentence": "A nodule in the right upper lobe.", "fixations": [4]},
    ]
    both = ground_report("Pleural effusion and a lung nodule.", probabilities)
    assert both == [{"sentence": "Pleural effusion and a lung nodule.", "fixations": [1, 3, 4]}]
    assert ground_report("Small pleural effusion.", probabilities[:0]) == [
        {"sentence": "Small pleural effusion.", "fixations": []}
    ]


def test_grounding_rejects_probabilities_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"must have shape \(num_fixations, 13\), got \(4, 14\)"):
        ground_report("Effusion.", torch.zeros(4, 14))


@pytest.fixture(scope="module")
def grounded_model_dir(tmp_path_factory, tiny_processor):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True)).eval()
    directory = tmp_path_factory.mktemp("grounded")
    model.save_pretrained(directory)
    tiny_processor.save_pretrained(directory)
    return directory


def test_pipeline_returns_one_grounding_entry_per_sentence_indexing_the_scanpath(grounded_model_dir, xray):
    pipe = pipeline("gaze2report", model=str(grounded_model_dir))
    [result] = pipe(xray, max_new_tokens=24, return_grounding=True)
    assert [entry["sentence"] for entry in result["grounding"]] == report_sentences(result["report"])
    pixel_values = pipe.processor(images=[xray])["pixel_values"]
    fixations, mask, probabilities = pipe.model.predict_fixation_findings(pixel_values)
    assert len(result["scanpath"]) == int(mask.sum())
    assert result["grounding"] == ground_report(result["report"], probabilities[0][mask[0]])
    assert "grounding" not in pipe(xray, max_new_tokens=4)[0], "grounding only when asked for"
    with pytest.raises(ValueError, match="needs return_scanpath=True"):
        pipe(xray, return_grounding=True, return_scanpath=False)


def test_pipeline_refuses_grounding_without_the_fixation_node_head(tiny_model_dir, xray):
    pipe = pipeline("gaze2report", model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="needs a model with the fixation-node head"):
        pipe(xray, return_grounding=True)


def test_records_of_a_model_with_the_head_carry_the_grounding(grounded_model_dir, tiny_processor):
    model = Gaze2ReportForConditionalGeneration.from_pretrained(grounded_model_dir)
    dataset = make_synthetic_dataset(num_studies=20, seed=0, image_size=64)["test"]
    records = generate_records(model, tiny_processor, dataset, batch_size=2, max_new_tokens=12)
    for record in records:
        assert [entry["sentence"] for entry in record["grounding"]] == report_sentences(record["generated_report"])
        indices = [index for entry in record["grounding"] for index in entry["fixations"]]
        assert all(0 <= index < len(record["predicted_scanpath"]) for index in indices)


def test_overlay_colours_each_sentence_and_lists_it_in_a_legend(xray):
    predicted = [{"x": 20.0, "y": 30.0, "duration": 0.3}, {"x": 60.0, "y": 90.0, "duration": 0.3}]
    grounding = [{"sentence": "Heart normal.", "fixations": []}, {"sentence": "Effusion.", "fixations": [1]}]
    plain = np.asarray(render_scanpath(xray, [], predicted=predicted))
    grounded = np.asarray(render_scanpath(xray, [], predicted=predicted, grounding=grounding))
    assert grounded.shape[0] > plain.shape[0] and grounded.shape[1] == plain.shape[1], "a legend band below"
    scale = plain.shape[1] / xray.shape[1]
    x, y = round(60 * scale), round(90 * scale)
    radius = round(0.04 * min(xray.shape) * np.sqrt(0.3) * scale)
    ring = grounded[y, x + radius - 1].astype(int)  # the circle's outline, in the sentence's colour
    assert np.abs(ring - SENTENCE_COLOURS[0]).sum() < np.abs(ring - PREDICTED_COLOUR).sum()
    assert np.array_equal(plain[: plain.shape[0] // 8], grounded[: plain.shape[0] // 8]), "the picture is unchanged"
    with pytest.raises(ValueError, match=r"names fixations \[2\]; the predicted scanpath has 2"):
        render_scanpath(xray, [], predicted=predicted, grounding=[{"sentence": "x.", "fixations": [2]}])
    with pytest.raises(ValueError, match="pass predicted too"):
        render_scanpath(xray, [], grounding=grounding)


def test_generate_command_prints_and_draws_the_grounding(grounded_model_dir, tmp_path, xray, capsys):
    from PIL import Image

    from modeling_gaze2report.cli import main

    png = tmp_path / "chest.png"
    Image.fromarray(xray).save(png)
    overlays = tmp_path / "overlays"
    main(["generate", str(png), "--model", str(grounded_model_dir), "--json", "--overlay", str(overlays)])
    [line] = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [entry["sentence"] for entry in line["grounding"]] == report_sentences(line["report"])
    expected = render_scanpath(xray, [], predicted=line["scanpath"], grounding=line["grounding"])
    assert np.array_equal(np.asarray(Image.open(overlays / "chest.png")), np.asarray(expected))
