"""Behaviour transformers models share and libraries rely on: the deprecated cache name, tuple outputs, pre-shifted
labels, and initialised weights where a checkpoint lacks them."""

import copy
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeling_gaze2report import Gaze2ReportForConditionalGeneration


@pytest.fixture
def prompt(tiny_processor, xray):
    return tiny_processor(images=[xray, xray[:, ::-1].copy()])


def next_step(inputs, cache_argument, cache):
    """One decoding step after the prompt, with the prompt's cache under `cache_argument`."""
    batch = inputs["input_ids"].shape[0]
    next_ids = torch.full((batch, 1), 5)
    attention_mask = torch.cat([inputs["attention_mask"], torch.ones(batch, 1, dtype=torch.long)], dim=1)
    return {
        "input_ids": next_ids,
        "attention_mask": attention_mask,
        cache_argument: copy.deepcopy(cache),
        "use_cache": True,
    }


def test_past_key_values_is_the_cache_under_its_deprecated_name(tiny_model, prompt):
    with torch.no_grad():
        prefill = tiny_model(**prompt, use_cache=True)
        new_name = tiny_model(**next_step(prompt, "cache", prefill.cache)).logits
        old_name = tiny_model(**next_step(prompt, "past_key_values", prefill.cache)).logits
        without = tiny_model(input_ids=torch.full((2, 1), 5)).logits
        headless = tiny_model.model(**next_step(prompt, "past_key_values", prefill.cache)).last_hidden_state
    torch.testing.assert_close(old_name, new_name)
    assert not torch.allclose(without, new_name), "the step depends on the cache"
    torch.testing.assert_close(tiny_model.lm_head(headless), new_name)


def test_return_dict_false_gives_tuples(tiny_model, tiny_processor, xray):
    inputs = tiny_processor(images=[xray], reports=["No effusion."])
    with torch.no_grad():
        as_dict = tiny_model(**inputs)
        as_tuple = tiny_model(**inputs, return_dict=False)
        headless = tiny_model.model(**{k: v for k, v in inputs.items() if k != "labels"}, return_dict=False)
    assert isinstance(as_tuple, tuple) and isinstance(headless, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(
        headless[0], tiny_model.model(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state
    )


@pytest.mark.parametrize("training", [True, False])
def test_pre_shifted_labels_give_the_same_loss(tiny_model, tiny_processor, xray, training):
    inputs = tiny_processor(images=[xray, xray], reports=["No effusion.", "Small left pleural effusion."])
    labels = inputs.pop("labels")
    shift_labels = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], dim=1)  # (batch, sequence)
    tiny_model.train(training)
    with torch.no_grad():
        expected = tiny_model(**inputs, labels=labels).lm_loss
        shifted = tiny_model(**inputs, shift_labels=shift_labels).lm_loss
    torch.testing.assert_close(shifted, expected)


def test_graph_layers_missing_from_a_checkpoint_are_initialised(tiny_model_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    weights = load_file(partial / "model.safetensors")
    dropped = [name for name in weights if "lin_key" in name or "lin_query" in name]
    assert dropped, "the graph network has torch_geometric Linear layers"
    save_file(
        {name: tensor for name, tensor in weights.items() if name not in dropped},
        str(partial / "model.safetensors"),
        metadata={"format": "pt"},
    )
    model = Gaze2ReportForConditionalGeneration.from_pretrained(partial, allow_missing_weights=True)
    state = model.state_dict()
    for name in dropped:
        if name.endswith("weight"):
            assert state[name].std() > 1e-2, f"{name} was left uninitialised (std {state[name].std():.2e})"


def test_text_only_input_with_placeholder_ids_is_refused_alike_by_forward_and_generate(tiny_model):
    gaze_token_id = tiny_model.config.gaze_token_id
    with_placeholder = torch.tensor([[7, gaze_token_id, 9, 11]])
    for call in (
        lambda: tiny_model(input_ids=with_placeholder),
        lambda: tiny_model.generate(input_ids=with_placeholder, max_new_tokens=2),
    ):
        with pytest.raises(ValueError, match="holds <gaze> placeholders but no pixel_values were given"):
            call()
    text_only = torch.tensor([[7, 8, 9, 11]])
    assert tiny_model(input_ids=text_only).logits.shape[:2] == (1, 4)
    assert tiny_model.generate(input_ids=text_only, max_new_tokens=2, do_sample=False).shape == (1, 6)


def test_image_features_follow_the_pooled_output_convention(tiny_model, tiny_processor, xray):
    pixel_values = tiny_processor(images=[xray, xray])["pixel_values"]
    vit = tiny_model.config.vision_config
    tiny_model.model.vision_tower.set_attn_implementation("eager")  # sdpa computes no attention weights
    with torch.no_grad():
        plain = tiny_model.get_image_features(pixel_values)
        full = tiny_model.get_image_features(pixel_values, output_hidden_states=True, output_attentions=True)
        as_tuple = tiny_model.get_image_features(pixel_values, return_dict=False)
    assert plain.hidden_states is None and plain.attentions is None
    tokens = (vit.image_size // vit.patch_size) ** 2 + 1  # patches and CLS
    assert plain.last_hidden_state.shape == (2, tokens, vit.hidden_size)
    config = tiny_model.config
    assert plain.pooler_output.shape == (2, config.num_gaze_tokens, config.text_config.hidden_size)
    assert len(full.hidden_states) == vit.num_hidden_layers + 1 and len(full.attentions) == vit.num_hidden_layers
    torch.testing.assert_close(full.pooler_output, plain.pooler_output)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], plain.last_hidden_state)
    torch.testing.assert_close(as_tuple[1], plain.pooler_output)


def test_inputs_embeds_find_the_placeholders_by_their_embedding(tiny_model, tiny_processor, xray):
    inputs = tiny_processor(images=[xray, xray[:, ::-1].copy()], reports=["No effusion.", "Left effusion."])
    input_ids = inputs.pop("input_ids")
    with torch.no_grad():
        by_ids = tiny_model(input_ids=input_ids, **inputs)
        embeddings = tiny_model.get_input_embeddings()(input_ids)  # what PEFT's prompt methods and users pass
        by_embeddings = tiny_model(inputs_embeds=embeddings, **inputs)
    torch.testing.assert_close(by_embeddings.logits, by_ids.logits)
    torch.testing.assert_close(by_embeddings.loss, by_ids.loss)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        tiny_model(input_ids=input_ids, inputs_embeds=embeddings, **inputs)
    with pytest.raises(ValueError, match="holds <gaze> placeholders but no pixel_values"):
        tiny_model(inputs_embeds=embeddings)


def test_every_trainable_parameter_gets_a_gradient_from_a_training_step(tiny_model, tiny_processor, xray):
    # DDP (without find_unused_parameters) fails on a trainable parameter that gets no gradient: the ViT is built
    # without its pooler, and recorded gaze supervises the scanpath predictor
    assert tiny_model.model.vision_tower.pooler is None
    fixations = [[{"x": 30.0, "y": 40.0, "duration": 0.3}, {"x": 60.0, "y": 80.0, "duration": 0.5}]] * 2
    inputs = tiny_processor(
        images=[xray, xray], reports=["No effusion.", "Small left pleural effusion."], fixations=fixations
    )
    tiny_model.train()
    tiny_model(**inputs).loss.backward()
    without_gradient = [
        name for name, parameter in tiny_model.named_parameters() if parameter.requires_grad and parameter.grad is None
    ]
    assert without_gradient == []


def test_a_tower_whose_head_cannot_be_left_out_has_it_frozen_for_training(tiny_model):
    from transformers import ConvNextConfig

    from modeling_gaze2report.training import freeze_tower_parameters_without_gradient
    from modeling_gaze2report.vision_gaze2report import build_vision_tower

    config = copy.deepcopy(tiny_model.config)
    config.vision_config = ConvNextConfig(
        num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32
    )
    tower = build_vision_tower(config.vision_config).train()
    frozen = freeze_tower_parameters_without_gradient(tower, config)
    assert frozen == ["layernorm.weight", "layernorm.bias"]  # the norm of the pooled output only
    assert all(parameter.requires_grad for name, parameter in tower.named_parameters() if name not in frozen)
    assert tower.training, "the probe leaves the tower's mode as it found it"


def test_pretrained_vision_weights_load_without_the_checkpoints_pooler(tmp_path):
    from transformers import ViTConfig, ViTModel

    from modeling_gaze2report.vision_gaze2report import build_vision_tower, load_vision_weights

    torch.manual_seed(0)
    vision_config = ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8
    )
    checkpoint = ViTModel(vision_config)  # with its pooler, as Hub checkpoints are
    tower = build_vision_tower(vision_config)
    load_vision_weights(tower, checkpoint, "vit-checkpoint")
    torch.testing.assert_close(
        tower.embeddings.patch_embeddings.projection.weight, checkpoint.embeddings.patch_embeddings.projection.weight
    )
    smaller = ViTModel(vision_config, add_pooling_layer=False)
    del smaller.layernorm
    with pytest.raises(ValueError, match="vit-checkpoint: the vision checkpoint lacks 2 weights"):
        load_vision_weights(tower, smaller, "vit-checkpoint")


@pytest.mark.parametrize(
    "studies_with_gaze, frozen, find_unused", [(0, True, None), (1, False, True), (2, False, None)]
)
def test_stage_two_freezes_or_reports_a_scanpath_predictor_without_gradient(
    tiny_model, studies_with_gaze, frozen, find_unused
):
    import datasets

    from modeling_gaze2report.training import scanpath_predictor_training

    fixation = [{"x": 0.5, "y": 0.5, "duration": 0.3}]
    dataset = datasets.Dataset.from_dict({"fixations": [fixation] * studies_with_gaze + [[]] * (2 - studies_with_gaze)})
    assert scanpath_predictor_training(tiny_model, dataset) is find_unused
    assert all(not p.requires_grad for p in tiny_model.model.scanpath_predictor.parameters()) is frozen
