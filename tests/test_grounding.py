"""Grounding at inference: the per-sentence rule, the pipeline's `return_grounding`, the records and the overlays."""

import json

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, pipeline

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


class ForceReport(LogitsProcessor):
    """Greedy decoding that writes `token_ids` and then only the last of them."""

    def __init__(self, token_ids: list[int], prompt_length: int):
        self.token_ids, self.prompt_length = token_ids, prompt_length

    def __call__(self, input_ids, scores):
        step = min(input_ids.shape[1] - self.prompt_length, len(self.token_ids) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token_ids[step]] = 0.0
        return forced


def test_pipeline_grounds_each_sentence_on_the_fixations_whose_head_sees_its_finding(tiny_processor, tmp_path, xray):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True)).eval()
    with torch.no_grad():
        model.model.scanpath_predictor.validity_head.bias.fill_(10.0)  # every one of the 16 slots is a fixation
        model.model.fixation_head.scores.weight.zero_()  # every fixation sees an effusion and nothing else
        model.model.fixation_head.scores.bias.fill_(-6.0)
        model.model.fixation_head.scores.bias[EFFUSION] = 6.0
    model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    pipe = pipeline("gaze2report", model=str(tmp_path))
    report = "Small pleural effusion. The heart is normal."
    token_ids = tiny_processor.tokenizer(report, add_special_tokens=False).input_ids
    force = ForceReport(token_ids + [tiny_processor.tokenizer.eos_token_id], len(tiny_processor.prompt_ids))
    [result] = pipe(xray, return_grounding=True, generate_kwargs={"logits_processor": LogitsProcessorList([force])})
    assert result["report"] == report and len(result["scanpath"]) == 16
    assert result["grounding"] == [
        {"sentence": "Small pleural effusion.", "fixations": list(range(16))},
        {"sentence": "The heart is normal.", "fixations": []},
    ]
    assert "grounding" not in pipe(xray, max_new_tokens=4)[0], "grounding only when asked for"
    with pytest.raises(ValueError, match="needs return_scanpath=True"):
        pipe(xray, return_grounding=True, return_scanpath=False)


def test_pipeline_refuses_grounding_without_the_fixation_node_head(tiny_model_dir, xray):
    pipe = pipeline("gaze2report", model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="needs a model with gaze and the fixation-node head"):
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
