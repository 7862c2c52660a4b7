"""`visual_tokens="pooled_patches"`, the plain visual-token baseline (LLaVA's recipe): no graph network, the patch
features average-pooled to as many tokens as the graph gives, then the projector; it trains, round-trips, gives only
reports at inference, and the combinations that make no sense are refused."""

import json

import pytest
import torch
from transformers import pipeline

import modeling_gaze2report  # noqa: F401  (registers the pipeline task)
from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration
from modeling_gaze2report.lora import apply_lora

FIXATIONS = [[(10.0, 20.0, 0.3), (60.0, 90.0, 0.5)], None]
REPORTS = ["Small left effusion.", "No pneumothorax."]


def build(**overrides) -> Gaze2ReportForConditionalGeneration:
    torch.manual_seed(0)
    return Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(**overrides)).eval()


def pooled_model(**overrides) -> Gaze2ReportForConditionalGeneration:
    return build(visual_tokens="pooled_patches", use_gaze=False, **overrides)


def adaptive_average(feature_map: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """(batch, C, H, W) -> (batch, rows * columns, C), row-major: cell (i, j) averages the feature rows
    floor(i * H / rows) to ceil((i + 1) * H / rows) - 1, and the columns alike."""
    height, width = feature_map.shape[2:]
    cells = []
    for i in range(rows):
        for j in range(columns):
            top, bottom = i * height // rows, -(-(i + 1) * height // rows)
            left, right = j * width // columns, -(-(j + 1) * width // columns)
            cells.append(feature_map[:, :, top:bottom, left:right].mean(dim=(2, 3)))
    return torch.stack(cells, dim=1)


def test_the_pooled_baseline_has_no_graph_network_nor_scanpath_predictor():
    pooled, graph = pooled_model(), build(use_gaze=False)
    assert pooled.model.gaze_encoder is None and pooled.model.scanpath_predictor is None
    pooled_names = {name for name, _ in pooled.named_parameters()}
    assert pooled_names == {name for name, _ in graph.named_parameters() if not name.startswith("model.gaze_encoder.")}
    # the projector reads the vision tower's width, not the graph's
    assert pooled.model.projector.linear_1.in_features == pooled.config.vision_config.hidden_size


def test_the_pooled_baseline_gives_as_many_visual_tokens_as_the_graph(tiny_processor, xray):
    pooled, graph = pooled_model(), build()
    inputs = tiny_processor(images=[xray, xray[::-1].copy()], reports=REPORTS, fixations=FIXATIONS)
    with torch.no_grad():
        pooled_outputs, graph_outputs = pooled(**inputs), graph(**inputs)
    assert pooled_outputs.image_outputs.pooler_output.shape == graph_outputs.image_outputs.pooler_output.shape
    assert pooled_outputs.image_outputs.pooler_output.shape[1] == pooled.config.num_gaze_tokens
    image_outputs = pooled_outputs.image_outputs
    assert image_outputs.scanpath is None and image_outputs.graph_fixations is None
    assert image_outputs.graph_fixation_mask is None and not image_outputs.recorded_gaze_used.any()
    assert pooled_outputs.scanpath_loss is None and pooled_outputs.fixation_finding_loss is None
    torch.testing.assert_close(pooled_outputs.loss, pooled_outputs.lm_loss)


@pytest.mark.parametrize(
    "patch_pool_size,max_fixations,grid", [(4, 16, (4, 8)), (6, 24, (6, 10)), (8, 32, (8, 12)), (2, 11, (3, 5))]
)
def test_the_pooled_grid_is_the_most_nearly_square_with_one_cell_per_token(patch_pool_size, max_fixations, grid):
    config = Gaze2ReportConfig(
        visual_tokens="pooled_patches", use_gaze=False, patch_pool_size=patch_pool_size, max_fixations=max_fixations
    )
    assert config.pooled_patch_grid == grid
    assert grid[0] * grid[1] == config.num_gaze_tokens


def test_the_pooled_tokens_are_the_projected_adaptive_average_of_the_patch_features(tiny_processor, xray):
    # 2 * 2 + 11 = 15 tokens on a 3 x 5 grid over the tower's 8 x 8 patches: cells overlap and differ in size
    model = pooled_model(patch_pool_size=2, max_fixations=11)
    pixel_values = tiny_processor(images=[xray, xray[::-1].copy()])["pixel_values"]
    with torch.no_grad():
        tokens = model.get_image_features(pixel_values).pooler_output
        hidden = model.model.vision_tower(pixel_values=pixel_values).last_hidden_state  # (batch, 1 + 64, channels)
        patches = hidden[:, 1:].reshape(2, 8, 8, -1).permute(0, 3, 1, 2)  # (batch, channels, 8, 8), CLS dropped
        expected = model.model.projector(adaptive_average(patches, 3, 5))
    assert tokens.shape == (2, 15, model.config.text_config.hidden_size)
    torch.testing.assert_close(tokens, expected)
    assert not torch.allclose(tokens[0], tokens[1]), "each image's own tokens"


def test_the_pooled_baseline_trains_the_projector_and_the_lora_layers(tiny_processor, xray):
    model = apply_lora(pooled_model())
    model.train()
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert not any("gaze_encoder" in name or "scanpath_predictor" in name for name in trainable)
    inputs = tiny_processor(images=[xray, xray[::-1].copy()], reports=REPORTS, fixations=FIXATIONS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(5):
        loss = model(**inputs).loss
        loss.backward()
        if step == 0:
            gradients = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
            for part in ("projector.modules_to_save", "lora_"):
                assert any(part in name and g is not None and g.abs().sum() > 0 for name, g in gradients.items()), part
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_a_saved_pooled_baseline_loads_with_its_setting_and_reports_without_a_scanpath(tiny_processor, xray, tmp_path):
    model = pooled_model()
    model.bind_processor(tiny_processor)
    inputs = tiny_processor(images=[xray], reports=REPORTS[:1])
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["visual_tokens"] == "pooled_patches"
    loaded = Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.visual_tokens == "pooled_patches" and loaded.model.gaze_encoder is None
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected)
    pipe = pipeline("gaze2report", model=str(tmp_path), language_model_dtype="float32")
    [result] = pipe(xray, max_new_tokens=3)
    assert set(result) == {"report"}
    with pytest.raises(ValueError, match="predicts no scanpath"):
        pipe(xray, max_new_tokens=3, return_scanpath=True)


def test_a_config_saved_before_the_setting_existed_loads_with_the_graph(tiny_model_dir):
    config_path = tiny_model_dir / "config.json"
    config = json.loads(config_path.read_text())
    assert config.pop("visual_tokens") == "graph"
    config_path.write_text(json.dumps(config))
    loaded = Gaze2ReportForConditionalGeneration.from_pretrained(tiny_model_dir)
    assert loaded.config.visual_tokens == "graph" and loaded.model.gaze_encoder is not None


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"visual_tokens": "patches"}, r"visual_tokens must be one of \('graph', 'pooled_patches'\), got 'patches'"),
        ({"visual_tokens": "pooled_patches"}, r"needs use_gaze=False and use_fixation_findings=False"),
        (
            {"visual_tokens": "pooled_patches", "use_gaze": False, "use_fixation_findings": True},
            r"visual_tokens='pooled_patches' builds neither .* use_fixation_findings=True",
        ),
    ],
    ids=["unknown source", "with gaze", "with the fixation-node head"],
)
def test_settings_that_make_no_sense_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        Gaze2ReportConfig(**overrides)
