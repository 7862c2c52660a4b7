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
    return {"input_ids": next_ids, "attention_mask": attention_mask, cache_argument: copy.deepcopy(cache),
            "use_cache": True}


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
    torch.testing.assert_close(headless[0], tiny_model.model(**{k: v for k, v in inputs.items()
                                                               if k != "labels"}).last_hidden_state)


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
    save_file({name: tensor for name, tensor in weights.items() if name not in dropped},
              str(partial / "model.safetensors"), metadata={"format": "pt"})
    model = Gaze2ReportForConditionalGeneration.from_pretrained(partial, allow_missing_weights=True)
    state = model.state_dict()
    for name in dropped:
        if name.endswith("weight"):
            assert state[name].std() > 1e-2, f"{name} was left uninitialised (std {state[name].std():.2e})"


def test_text_only_input_with_placeholder_ids_is_refused_alike_by_forward_and_generate(tiny_model):
    gaze_token_id = tiny_model.config.gaze_token_id
    with_placeholder = torch.tensor([[7, gaze_token_id, 9, 11]])
    for call in (lambda: tiny_model(input_ids=with_placeholder),
                 lambda: tiny_model.generate(input_ids=with_placeholder, max_new_tokens=2)):
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
