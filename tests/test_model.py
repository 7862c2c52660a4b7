"""The model: any vision family x any causal LM family trains and generates; bad inputs fail clearly."""

import numpy as np
import pytest
import torch

from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.demo import image_reliance
from modeling_gaze2report.presets import build_from_preset

TOKEN_TOWER = dict(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
VISION_CONFIGS = {
    "vit": dict(TOKEN_TOWER, model_type="vit", intermediate_size=64),
    "dinov2": dict(TOKEN_TOWER, model_type="dinov2", mlp_ratio=2),
    "siglip": dict(TOKEN_TOWER, model_type="siglip_vision_model", intermediate_size=64),
    "swin": dict(
        model_type="swin", image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4
    ),
    "convnext": dict(model_type="convnext", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2),
    "resnet": dict(model_type="resnet", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"),
}
DECODER = dict(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
TEXT_CONFIGS = {
    "llama": dict(DECODER, model_type="llama", num_key_value_heads=2),
    "qwen2": dict(DECODER, model_type="qwen2", num_key_value_heads=2),
    "mistral": dict(DECODER, model_type="mistral", num_key_value_heads=2),
    "gemma": dict(DECODER, model_type="gemma", num_key_value_heads=2, head_dim=8),
    "phi": dict(DECODER, model_type="phi"),
    "gpt2": dict(model_type="gpt2", vocab_size=1024, n_embd=32, n_layer=1, n_head=4, n_positions=256),
    "opt": dict(DECODER, model_type="opt", ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=256),
}
# Every vision family meets every text family at least once, and the first four of each meet all four others.
PAIRS = [(v, t) for v in list(VISION_CONFIGS)[:4] for t in list(TEXT_CONFIGS)[:4]] + [
    ("convnext", "phi"),
    ("resnet", "gpt2"),
    ("convnext", "opt"),
    ("resnet", "llama"),
    ("vit", "gpt2"),
    ("dinov2", "opt"),
    ("siglip", "phi"),
]


def build(vision: str, text: str, **overrides) -> Gaze2ReportForConditionalGeneration:
    torch.manual_seed(0)
    config = Gaze2ReportConfig(
        vision_config=VISION_CONFIGS[vision],
        text_config=TEXT_CONFIGS[text],
        image_size=64,
        patch_pool_size=4,
        max_fixations=16,
        scanpath_hidden_size=32,
        gnn_hidden_size=32,
        **overrides,
    )
    return Gaze2ReportForConditionalGeneration(config)


@pytest.mark.parametrize("vision,text", PAIRS, ids=[f"{v}-{t}" for v, t in PAIRS])
def test_family_pair_trains_and_generates(vision, text, tiny_processor, xray):
    model = build(vision, text)
    fixations = [[(10.0, 20.0, 0.3), (60.0, 90.0, 0.5), (45.0, 50.0, 0.2)], None]
    inputs = tiny_processor(
        images=[xray, xray], reports=["Small left effusion.", "No pneumothorax."], fixations=fixations
    )
    scored = torch.nn.functional.pad(inputs["labels"], (0, 1), value=-100)[:, 1:] != -100  # (batch, sequence)
    outputs = model(**inputs, logits_to_keep=scored)
    assert outputs.logits.shape == (int(scored.sum()), model.config.text_config.vocab_size)  # the head ran only there
    assert torch.isfinite(outputs.loss) and outputs.scanpath_loss is not None
    torch.testing.assert_close(outputs.loss, outputs.lm_loss + model.config.gaze_loss_weight * outputs.scanpath_loss)
    outputs.loss.backward()
    for name in ("model.projector.linear_1.weight", "model.gaze_encoder", "model.scanpath_predictor"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"
    model.eval()
    generated = model.generate(**tiny_processor(images=[xray, xray]), max_new_tokens=4, do_sample=False)
    assert generated.shape[0] == 2 and generated.shape[1] <= len(tiny_processor.prompt_ids) + 4


def test_generate_encodes_the_image_once_and_matches_forward(tiny_model, tiny_processor, xray):
    calls = []
    tower = tiny_model.model.vision_tower
    handle = tower.register_forward_hook(lambda *args: calls.append(1))
    inputs = tiny_processor(images=[xray])
    generated = tiny_model.generate(**inputs, max_new_tokens=5, do_sample=False)
    handle.remove()
    assert len(calls) == 1
    # greedy generation agrees with step-by-step argmax of the full forward pass
    with torch.no_grad():
        logits = tiny_model(input_ids=generated[:, :-1], pixel_values=inputs["pixel_values"]).logits
    prompt_length = inputs["input_ids"].shape[1]
    assert torch.equal(logits[:, prompt_length - 1 :].argmax(-1), generated[:, prompt_length:])


def test_teacher_forcing_uses_recorded_gaze(tiny_model, tiny_processor, xray):
    fixations = [[(10.0, 20.0, 0.3), (60.0, 90.0, 0.5)]]
    inputs = tiny_processor(images=[xray], fixations=fixations)
    with torch.no_grad():
        recorded = tiny_model.get_image_features(inputs["pixel_values"], inputs["fixations"], inputs["fixation_mask"])
        predicted = tiny_model.get_image_features(
            inputs["pixel_values"], inputs["fixations"], inputs["fixation_mask"], torch.tensor([False])
        )
    assert torch.equal(recorded.graph_fixations, inputs["fixations"])
    assert torch.equal(predicted.graph_fixations, predicted.scanpath.fixations)
    assert not torch.allclose(recorded.pooler_output, predicted.pooler_output)


def test_without_recorded_gaze_the_graph_reads_the_predicted_scanpath(tiny_model, tiny_processor, xray):
    pixel_values = tiny_processor(images=[xray, np.flipud(xray).copy()])["pixel_values"]
    with torch.no_grad():
        image_outputs = tiny_model.get_image_features(pixel_values)
        again = tiny_model.get_image_features(pixel_values)
    fixations, mask = image_outputs.graph_fixations, image_outputs.graph_fixation_mask
    assert fixations.shape == (2, 16, 3) and mask.shape == (2, 16) and mask.dtype == torch.bool
    assert torch.equal(fixations, image_outputs.scanpath.fixations) and not image_outputs.recorded_gaze_used.any()
    assert mask[:, 0].all(), "a predicted scanpath is never empty"
    assert ((fixations[..., :2] >= 0) & (fixations[..., :2] <= 1)).all() and (fixations[..., 2] > 0).all()
    assert not torch.equal(fixations[0], fixations[1])  # each image's own scanpath
    assert torch.equal(fixations, again.graph_fixations)


def test_no_gaze_ablation_keeps_token_count_and_ignores_fixations(tiny_processor, xray):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_gaze=False)).eval()
    assert model.model.scanpath_predictor is None
    a = tiny_processor(images=[xray], reports=["No effusion."], fixations=[[(10.0, 20.0, 0.3)]])
    b = tiny_processor(images=[xray], reports=["No effusion."], fixations=[[(70.0, 100.0, 1.3)]])
    with torch.no_grad():
        out_a, out_b = model(**a), model(**b)
    assert out_a.scanpath_loss is None
    assert out_a.image_outputs.pooler_output.shape[1] == model.config.num_gaze_tokens
    torch.testing.assert_close(out_a.logits, out_b.logits)
    assert out_a.image_outputs.scanpath is None and not out_a.image_outputs.recorded_gaze_used.any()


@pytest.mark.parametrize("name", ["use_finding_conditioning", "use_finding_tokens"])
def test_a_config_asking_for_the_retired_finding_conditioning_is_refused_with_the_reason(name, tmp_path):
    with pytest.raises(ValueError, match=f"sets {name}=True, a variant Gaze2Report no longer builds: .*retired"):
        Gaze2ReportConfig(**{name: True})
    Gaze2ReportConfig().save_pretrained(tmp_path)  # a saved checkpoint's config that asks for it is refused too
    config_path = tmp_path / "config.json"
    config_path.write_text(config_path.read_text().replace('"use_gaze": true', f'"use_gaze": true, "{name}": true'))
    with pytest.raises(ValueError, match="no longer builds"):
        Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path)
    # switched off, the retired fields ask for nothing and are not kept
    config = Gaze2ReportConfig(**{name: False}, finding_loss_weight=0.5)
    assert not hasattr(config, name) and not hasattr(config, "finding_loss_weight")


def test_freeze_vision_tower():
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(freeze_vision_tower=True))
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    assert all(p.requires_grad for p in model.model.gaze_encoder.parameters())


def test_tied_embeddings_follow_the_text_config():
    tied = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig())
    assert tied.lm_head.weight.data_ptr() == tied.get_input_embeddings().weight.data_ptr()
    untied = build("vit", "qwen2")
    untied_config = untied.config.text_config
    assert untied_config.tie_word_embeddings == (
        untied.lm_head.weight.data_ptr() == untied.get_input_embeddings().weight.data_ptr()
    )


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_processor, xray):
    model = build("vit", "llama")
    inputs = tiny_processor(images=[xray], reports=["Small left effusion."], fixations=[[(10.0, 20.0, 0.3)]])
    model.train()

    def loss_and_gradients():
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain_gradients = loss_and_gradients()
    model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.get_decoder().layers)
    checkpointed_loss, checkpointed_gradients = loss_and_gradients()
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    # every parameter the plain backward reaches, the recomputing one reaches too, with the same gradient
    assert checkpointed_gradients.keys() == plain_gradients.keys()
    assert any(name.startswith("model.language_model.layers.0.") for name in plain_gradients)
    assert any(name.startswith("model.vision_tower.") for name in plain_gradients)
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(checkpointed_gradients[name], gradient, msg=name)


def test_placeholder_count_mismatch_is_a_clear_error(tiny_model, tiny_processor, xray):
    inputs = tiny_processor(images=[xray], reports=["No effusion."])
    inputs["input_ids"][0, 5] = 10  # one placeholder fewer
    with pytest.raises(ValueError, match="31 <gaze> placeholders.*32 visual-gaze tokens"):
        tiny_model(**inputs)


def test_batch_size_mismatch_between_images_and_prompts(tiny_model, tiny_processor, xray):
    one = tiny_processor(images=[xray])
    two = tiny_processor(images=[xray, xray])
    with pytest.raises(ValueError, match="2 images but the input 1 prompts"):
        tiny_model(input_ids=one["input_ids"], pixel_values=two["pixel_values"])


def test_placeholders_without_images_is_a_clear_error(tiny_model, tiny_processor, xray):
    with pytest.raises(ValueError, match="no pixel_values"):
        tiny_model(input_ids=tiny_processor(images=[xray])["input_ids"])


def test_text_config_that_is_not_a_causal_lm_is_rejected():
    with pytest.raises(ValueError, match="not a causal language model"):
        Gaze2ReportConfig(text_config={"model_type": "t5"})


def test_config_round_trip_keeps_sub_configs(tmp_path):
    config = Gaze2ReportConfig(
        vision_config=VISION_CONFIGS["swin"], text_config=TEXT_CONFIGS["gpt2"], max_fixations=8, gaze_loss_weight=0.5
    )
    config.save_pretrained(tmp_path)
    loaded = Gaze2ReportConfig.from_pretrained(tmp_path)
    assert loaded.vision_config.model_type == "swin" and loaded.text_config.model_type == "gpt2"
    assert loaded.text_config.n_embd == 32 and loaded.max_fixations == 8 and loaded.gaze_loss_weight == 0.5
    assert loaded.num_gaze_tokens == 16 + 8


@pytest.mark.slow
def test_reports_come_to_depend_on_the_image(tiny_processor):
    """End to end, the visual-gaze tokens carry the image to the language model: a tiny model learns to name which
    side a bright opacity is on (a task that text alone cannot solve), with the vision tower fixed as in stage 2."""
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig())
    model.model.vision_tower.requires_grad_(False)
    rng = np.random.default_rng(0)
    names = ["Right pleural effusion.", "Left pneumothorax."]

    def studies(count):
        sides = rng.integers(2, size=count)
        images = []
        for side in sides:
            image = rng.normal(60, 10, (64, 64))
            image[20:44, 8 + 32 * side : 24 + 32 * side] += 150
            images.append(np.clip(image, 0, 255).astype(np.uint8))
        fixations = [[(16.0 + 32 * side, 32.0, 0.5)] for side in sides]
        return images, [names[side] for side in sides], fixations

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(500):
        images, reports, fixations = studies(8)
        model(**tiny_processor(images=images, reports=reports, fixations=fixations)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    images, reports, _ = studies(16)
    with torch.no_grad():
        right = model(**tiny_processor(images=images, reports=reports)).lm_loss
        swapped = model(**tiny_processor(images=images[::-1], reports=reports)).lm_loss
        generated = tiny_processor.batch_decode(model.generate(**tiny_processor(images=images), max_new_tokens=8))
    assert right < swapped / 3
    assert sum(g == r for g, r in zip(generated, reports)) >= 15, list(zip(generated, reports))
    # the demo's diagnostic sees the same: the report loss rises when the image is another study's
    reliance = image_reliance(
        model,
        tiny_processor,
        [{"image": image, "report": report, "fixations": []} for image, report in zip(images, reports)],
    )
    assert reliance["num_studies"] == 16
    assert reliance["lm_loss_own_image"] < reliance["lm_loss_swapped_image"] / 3, reliance
    assert 0 < reliance["visual_attention_share"] < 1
    assert model.config._attn_implementation != "eager"  # restored after the measurement


def test_image_reliance_measures_every_study_and_restores_attention(tiny_model, tiny_processor, xray):
    studies = [
        {"image": np.roll(xray, 7 * index, axis=1), "report": "No pleural effusion.", "fixations": []}
        for index in range(9)
    ]
    # 9 studies in batches of 8: the lone ninth joins the first batch, so every study is measured
    reliance = image_reliance(tiny_model, tiny_processor, studies, num_studies=9, batch_size=8)
    assert reliance["num_studies"] == 9
    assert 0 < reliance["visual_attention_share"] < 1
    assert reliance["lm_loss_own_image"] > 0 and reliance["lm_loss_swapped_image"] > 0
    assert tiny_model.config.text_config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        image_reliance(tiny_model, tiny_processor, studies, batch_size=1)
    with pytest.raises(ValueError, match="at least 2 studies"):
        image_reliance(tiny_model, tiny_processor, studies[:1])


def test_training_loss_scores_only_labelled_positions_and_equals_the_loss_over_every_position(tiny_processor, xray):
    model = build("vit", "llama").train()
    inputs = tiny_processor(images=[xray, xray], reports=["Small left effusion.", "No pneumothorax or effusion."])
    scored = torch.nn.functional.pad(inputs["labels"], (0, 1), value=-100)[:, 1:] != -100  # (batch, sequence)
    model(**inputs, logits_to_keep=scored).loss.backward()
    fast_gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    heads = []
    handle = model.lm_head.register_forward_hook(lambda module, args, output: heads.append(output.shape))
    outputs = model(**inputs, logits_to_keep=scored)
    handle.remove()
    next_labels = inputs["labels"][:, 1:]
    assert heads == [(int((next_labels != -100).sum()), model.config.text_config.vocab_size)]
    # by hand: the head over every position, cross-entropy of each position against the next token
    hidden = model.model(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state
    every_logits = model.lm_head(hidden)[:, :-1]  # (batch, sequence - 1, vocab)
    expected = torch.nn.functional.cross_entropy(every_logits.flatten(0, 1), next_labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(outputs.lm_loss, expected)
    model.zero_grad()
    assert outputs.scanpath_loss is None and outputs.loss is outputs.lm_loss  # no recorded gaze given
    expected.backward()
    for name, gradient in fast_gradients.items():
        torch.testing.assert_close(gradient, model.get_parameter(name).grad, msg=name)
    with torch.no_grad():
        evaluated = model(**inputs)  # without the argument (training mode still): logits everywhere
    assert evaluated.logits.shape[:2] == inputs["input_ids"].shape
    torch.testing.assert_close(evaluated.lm_loss, expected.detach())


def test_chunked_prefill_generates_the_same_report(tiny_processor, xray):
    torch.manual_seed(0)
    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig()).eval()
    inputs = tiny_processor(images=[xray, np.flipud(xray).copy()])
    whole = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    # chunks of 8 split the 32 placeholders over four chunks and the instruction over more
    chunked = model.generate(**inputs, max_new_tokens=6, do_sample=False, prefill_chunk_size=8)
    assert torch.equal(chunked, whole)


def test_beam_search_and_several_returned_reports_keep_each_image_with_its_tokens(xray):
    model, processor = build_from_preset("tiny", use_fixation_findings=True)
    model.eval()
    images = [xray, np.flipud(xray).copy()]
    settings = dict(max_new_tokens=5, do_sample=False, num_beams=3, num_return_sequences=2)
    together = model.generate(**processor(images=images), **settings)  # (2 images x 2 reports, length)
    assert together.shape[0] == 4
    alone = torch.cat([model.generate(**processor(images=[image]), **settings) for image in images])
    assert torch.equal(together, alone)
