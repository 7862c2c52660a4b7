"""The fixation-node head (config `use_fixation_findings`): its targets from the dictation and the regions, how they
follow the processor's merges, the loss's masking, and that both training stages train it."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.data import Gaze2ReportCollator, fixation_finding_names, make_synthetic_dataset
from modeling_gaze2report.inference_gaze2report import check_requested_outputs
from modeling_gaze2report.observations import CHEXPERT_OBSERVATIONS, FINDING_OBSERVATIONS
from modeling_gaze2report.training import DataArguments, ModelArguments, RecipeArguments, run_training

EFFUSION, NODULE = FINDING_OBSERVATIONS.index("Pleural Effusion"), FINDING_OBSERVATIONS.index("Lung Lesion")


def fixation(x, y, start, duration=0.3):
    return {"x": x, "y": y, "duration": duration, "start": start}


def test_names_join_the_dictated_phrase_and_the_regions_and_are_unknown_without_either():
    example = {
        "fixations": [fixation(10, 10, 0.0), fixation(80, 80, 2.0), fixation(10, 12, 4.0), fixation(50, 50, 9.0)],
        "transcript": [
            {"text": "Small left pleural effusion.", "start": 1.0, "end": 2.5},
            {"text": "No pneumothorax.", "start": 3.0, "end": 4.0},
        ],
        "regions": [{"label": "Lung Lesion", "x0": 0, "y0": 0, "x1": 20, "y1": 20, "certainty": 5}],
    }
    # 0: spoken at 1.5 s (the effusion phrase) and inside the nodule's region; 1: spoken at 3.5 s, a phrase that
    # names no finding, so a known negative; 2: spoken at 5.5 s (a pause) but inside the region; 3: neither
    assert fixation_finding_names(example) == [["Lung Lesion", "Pleural Effusion"], [], ["Lung Lesion"], None]
    assert fixation_finding_names({"fixations": [fixation(1, 1, 0.0)]}) == [None]


def test_processor_merges_targets_with_their_fixations(tiny_processor, xray):
    # 20 fixations into 16 slots: the first five lie within the merge radius of each other and merge into one
    close = [(40 + i * 0.5, 60, 0.2) for i in range(5)]
    apart = [(5 + 5 * (i % 15), 10 + 6 * i, 0.2) for i in range(15)]
    findings = [None, ["Pleural Effusion"], None, [], None] + [["Lung Lesion"] if i == 3 else None for i in range(15)]
    batch = tiny_processor(images=[xray], fixations=[close + apart], fixation_findings=[findings])
    assert int(batch["fixation_mask"].sum()) == 16
    labels, known = batch["fixation_finding_labels"][0], batch["fixation_finding_mask"][0]
    assert labels.shape == (16, len(FINDING_OBSERVATIONS))
    # the merged fixation saw what any member saw (an effusion) and is known because two members are
    assert known[0] and labels[0, EFFUSION] == 1 and labels[0].sum() == 1
    assert known[4] and labels[4, NODULE] == 1 and labels[4].sum() == 1  # apart[3]
    assert known.sum() == 2, "a fixation whose every member is unknown stays unknown"


def test_processor_rejects_findings_that_do_not_fit_the_fixations(tiny_processor, xray):
    path = [(10, 10, 0.2), (20, 20, 0.2)]
    with pytest.raises(ValueError, match=r"fixation_findings\[0\] has 1 entries for 2 fixations"):
        tiny_processor(images=[xray], fixations=[path], fixation_findings=[[["Edema"]]])
    with pytest.raises(ValueError, match=r"names \['Emphysema'\], which are not findings"):
        tiny_processor(images=[xray], fixations=[path], fixation_findings=[[["Emphysema"], None]])
    with pytest.raises(ValueError, match="without fixations"):
        tiny_processor(images=[xray], fixation_findings=[[None]])


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_dataset(num_studies=20, seed=0, image_size=64)


def test_collator_gives_the_targets_of_the_recorded_fixations(tiny_processor, synthetic):
    examples = [synthetic["train"][i] for i in range(4)]
    batch = Gaze2ReportCollator(tiny_processor, include_fixation_findings=True)(examples)
    assert batch["fixation_finding_labels"].shape == (4, 16, len(FINDING_OBSERVATIONS))
    assert not (batch["fixation_finding_mask"] & ~batch["fixation_mask"]).any(), "only real fixations have targets"
    assert batch["fixation_finding_mask"].any()
    # a study's positives at its fixations are among its own positive labels
    for index, example in enumerate(examples):
        positive = {name for name, value in zip(("No Finding", *FINDING_OBSERVATIONS), example["labels"]) if value == 1}
        seen = batch["fixation_finding_labels"][index][batch["fixation_finding_mask"][index]].amax(0)
        assert {FINDING_OBSERVATIONS[i] for i in seen.nonzero().flatten().tolist()} <= positive


def model_and_batch(tiny_processor, synthetic, **config):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True, **config))
    batch = Gaze2ReportCollator(tiny_processor, include_fixation_findings=True)(
        [synthetic["train"][i] for i in range(4)]
    )
    return model.eval(), dict(batch)


def test_loss_counts_only_known_targets_of_graphs_built_on_recorded_gaze(tiny_processor, synthetic):
    model, batch = model_and_batch(tiny_processor, synthetic, fixation_finding_loss_weight=2.0)
    outputs = model(**batch)
    expected = outputs.lm_loss + outputs.scanpath_loss + 2.0 * outputs.fixation_finding_loss
    assert outputs.fixation_finding_loss > 0 and torch.allclose(outputs.loss, expected)
    unknown = (~batch["fixation_finding_mask"]).nonzero()[0].tolist()
    changed = batch["fixation_finding_labels"].clone()
    changed[unknown[0], unknown[1]] = 1 - changed[unknown[0], unknown[1]]
    assert model(**{**batch, "fixation_finding_labels": changed}).fixation_finding_loss == outputs.fixation_finding_loss
    known = batch["fixation_finding_mask"].nonzero()[0].tolist()
    changed[known[0], known[1]] = 1 - changed[known[0], known[1]]
    assert model(**{**batch, "fixation_finding_labels": changed}).fixation_finding_loss != outputs.fixation_finding_loss
    # an image whose graph read its predicted scanpath: its targets, which belong to the recorded fixations, drop out
    predicted = model(**{**batch, "use_recorded_gaze": torch.zeros(4, dtype=torch.bool)})
    assert predicted.fixation_finding_loss == 0 and not predicted.image_outputs.recorded_gaze_used.any()


def test_without_gaze_the_head_learns_the_study_findings_at_every_gaze_free_node(tiny_processor, synthetic):
    torch.manual_seed(0)
    config = Gaze2ReportConfig(use_gaze=False, use_fixation_findings=True, fixation_finding_loss_weight=2.0)
    model = Gaze2ReportForConditionalGeneration(config).eval()
    examples = [synthetic["train"][i] for i in range(4)]
    batch = dict(Gaze2ReportCollator(tiny_processor, include_finding_labels=True)(examples))
    outputs = model(**batch)
    logits = outputs.image_outputs.fixation_finding_logits  # (4, 16, 13): one row per gaze-free node
    assert logits.shape == (4, 16, len(FINDING_OBSERVATIONS)) and outputs.image_outputs.graph_fixation_mask.all()
    columns = [CHEXPERT_OBSERVATIONS.index(name) for name in FINDING_OBSERVATIONS]
    targets = batch["finding_labels"][:, None, columns].expand_as(logits)
    known = batch["finding_label_mask"][:, None, columns].expand_as(logits).float()
    by_hand = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * known).sum() / known.sum()
    assert torch.allclose(outputs.fixation_finding_loss, by_hand)
    assert torch.allclose(outputs.loss, outputs.lm_loss + 2.0 * by_hand) and outputs.scanpath_loss is None
    # a label left out (uncertain) changes nothing; a known one changes the loss
    study, column = batch["finding_label_mask"][:, columns].nonzero()[0].tolist()
    left_out = {**batch, "finding_label_mask": batch["finding_label_mask"].clone()}
    left_out["finding_label_mask"][study, columns[column]] = False
    flipped = {**left_out, "finding_labels": batch["finding_labels"].clone()}
    flipped["finding_labels"][study, columns[column]] = 1 - flipped["finding_labels"][study, columns[column]]
    assert torch.equal(model(**flipped).fixation_finding_loss, model(**left_out).fixation_finding_loss)
    assert not torch.equal(
        model(**{**flipped, "finding_label_mask": batch["finding_label_mask"]}).fixation_finding_loss,
        outputs.fixation_finding_loss,
    )
    # it names what is seen, not where: nothing to ground a sentence in
    assert not config.grounds_findings and Gaze2ReportConfig(use_fixation_findings=True).grounds_findings
    with pytest.raises(ValueError, match="needs a model with gaze and the fixation-node head"):
        check_requested_outputs(config, return_scanpath=False, return_grounding=True)


def test_inference_gives_per_fixation_logits_of_the_predicted_scanpath(tiny_model, tiny_processor, xray):
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True)).eval()
    image_outputs = model.get_image_features(tiny_processor(images=[xray])["pixel_values"])
    assert image_outputs.fixation_finding_logits.shape == (1, 16, len(FINDING_OBSERVATIONS))
    assert torch.equal(image_outputs.graph_fixations, image_outputs.scanpath.fixations)
    assert tiny_model.get_image_features(tiny_processor(images=[xray])["pixel_values"]).fixation_finding_logits is None


@pytest.mark.parametrize("use_gaze", [True, False], ids=["recorded-gaze", "study-findings-without-gaze"])
def test_both_stages_train_the_head_and_the_model_reloads_with_it(synthetic, tmp_path, use_gaze):
    torch.manual_seed(0)
    aligned = {"use_fixation_findings": True, "use_gaze": use_gaze}
    initial = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(**aligned))
    initial_head = initial.model.fixation_head.scores.weight.detach().clone()
    from transformers import TrainingArguments

    common = dict(report_to=[], save_strategy="no", dataloader_num_workers=0, disable_tqdm=True, seed=0)
    model_args = ModelArguments()
    data_args = DataArguments(data_source="synthetic", num_synthetic_studies=20, synthetic_image_size=64)
    stage_one = run_training(
        "tiny",
        model_args,
        data_args,
        RecipeArguments(stages="scanpath", scanpath_max_steps=3, save_merged=False),
        TrainingArguments(output_dir=str(tmp_path / "one"), max_steps=2, per_device_train_batch_size=4, **common),
        aligned,
        dataset=synthetic,
    )[0]
    after_stage_one = stage_one.model.fixation_head.scores.weight.detach().clone()
    assert not torch.allclose(after_stage_one, initial_head), "stage 1 trains the head"
    model = run_training(
        "tiny",
        model_args,
        data_args,
        RecipeArguments(scanpath_max_steps=3),
        TrainingArguments(output_dir=str(tmp_path / "two"), max_steps=3, per_device_train_batch_size=4, **common),
        aligned,
        dataset=synthetic,
    )[0]
    reloaded = Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path / "two" / "model")
    assert reloaded.config.use_fixation_findings and reloaded.config.use_gaze == use_gaze
    assert torch.equal(reloaded.model.fixation_head.scores.weight, model.model.fixation_head.scores.weight)
    assert np.isfinite(reloaded.model.fixation_head.scores.weight.detach().numpy()).all()


def test_the_head_writes_what_each_fixation_sees_into_its_token_by_name(xray):
    from modeling_gaze2report.presets import build_from_preset

    torch.manual_seed(0)
    model, processor = build_from_preset("tiny", use_fixation_findings=True)
    head, embeddings = model.model.fixation_head, model.get_input_embeddings().weight
    effusion_ids = processor.tokenizer(" pleural effusion", add_special_tokens=False)["input_ids"]
    assert torch.allclose(head.finding_embedding.weight[:, EFFUSION], embeddings[effusion_ids].mean(0))
    names = head.finding_embedding.weight.detach().clone()  # (hidden, 13): bound by build_from_preset
    model.eval()
    pixel_values = processor(images=[xray])["pixel_values"]
    written = model.get_image_features(pixel_values)
    with torch.no_grad():
        head.finding_embedding.weight.zero_()
    unwritten = model.get_image_features(pixel_values).pooler_output
    num_patches = model.config.patch_pool_size**2
    assert torch.equal(written.pooler_output[:, :num_patches], unwritten[:, :num_patches]), "patch tokens untouched"
    seen = torch.sigmoid(written.fixation_finding_logits) * written.graph_fixation_mask[..., None]  # (1, K, 13)
    added = written.pooler_output[:, num_patches:] - unwritten[:, num_patches:]  # (1, K, hidden)
    assert torch.allclose(added, seen @ names.T, atol=1e-5)


def test_visual_gaze_tokens_start_at_the_word_embeddings_scale(xray):
    from modeling_gaze2report.presets import build_from_preset

    torch.manual_seed(0)
    model, processor = build_from_preset("tiny")
    embeddings = model.get_input_embeddings().weight.float()
    assert torch.allclose(
        model.model.projector.norm.weight, embeddings.pow(2).mean().sqrt().expand(embeddings.shape[1])
    )
    tokens = model.eval().get_image_features(processor(images=[xray])["pixel_values"]).pooler_output[0]
    word_scale = embeddings.norm(dim=-1).pow(2).mean().sqrt()  # the root mean square of the words' norms
    assert torch.allclose(tokens.norm(dim=-1), word_scale.expand(len(tokens)), rtol=0.05)  # layer-norm eps aside
