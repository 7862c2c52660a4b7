import pytest
import torch

from modeling_gaze2report.configuration_gaze2report import Gaze2ReportConfig
from modeling_gaze2report.scanpath_gaze2report import (
    MAX_FIXATION_DURATION,
    MIN_FIXATION_DURATION,
    ScanpathPredictor,
)

FEATURE_SIZE = 8


def make_predictor(max_fixations=6, hidden_size=32, num_layers=1):
    torch.manual_seed(0)
    config = Gaze2ReportConfig(
        max_fixations=max_fixations,
        scanpath_hidden_size=hidden_size,
        scanpath_num_layers=num_layers,
        scanpath_num_heads=2,
    )
    return ScanpathPredictor(config, FEATURE_SIZE)


def make_targets(batch_size, max_fixations, lengths):
    generator = torch.Generator().manual_seed(1)
    fixations = torch.rand(batch_size, max_fixations, 3, generator=generator)  # (batch, K, 3)
    mask = torch.arange(max_fixations)[None] < torch.tensor(lengths)[:, None]  # (batch, K)
    return fixations, mask


def test_output_shapes_ranges_and_decoding_on_a_non_square_grid():
    predictor = make_predictor()
    features = torch.randn(3, FEATURE_SIZE, 5, 7)
    output = predictor(features)

    assert output.fixations.shape == (3, 6, 3)
    assert output.fixation_mask.shape == (3, 6) and output.fixation_mask.dtype == torch.bool
    assert output.location_logits.shape == (3, 6, 35)
    assert output.offsets.shape == (3, 6, 2)
    assert output.log_durations.shape == output.validity_logits.shape == (3, 6)
    assert output.grid_size == (5, 7)
    assert ((output.offsets >= 0) & (output.offsets <= 1)).all()
    x, y, duration = output.fixations.unbind(-1)
    assert ((x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)).all()
    assert ((duration >= MIN_FIXATION_DURATION) & (duration <= MAX_FIXATION_DURATION)).all()
    cell = output.location_logits.argmax(-1)
    torch.testing.assert_close(x, (cell % 7 + output.offsets[..., 0]) / 7)
    torch.testing.assert_close(y, (cell // 7 + output.offsets[..., 1]) / 5)


def test_mask_is_a_valid_prefix_and_never_empty():
    predictor = make_predictor()
    features = torch.randn(2, FEATURE_SIZE, 4, 4)
    with torch.no_grad():
        predictor.validity_head.bias.fill_(-100.0)
        assert predictor(features).fixation_mask.tolist() == [[True] + [False] * 5] * 2
        predictor.validity_head.bias.fill_(100.0)
        assert predictor(features).fixation_mask.all()
        predictor.validity_head.bias.zero_()
        mask = predictor(features).fixation_mask
    assert mask[:, 0].all()
    assert not (mask[:, 1:] & ~mask[:, :-1]).any()


def test_each_study_decodes_from_its_own_feature_map():
    predictor = make_predictor().eval()
    features = torch.randn(3, FEATURE_SIZE, 4, 4)
    with torch.no_grad():
        batched = predictor(features)
        alone = [predictor(features[i : i + 1]) for i in range(3)]
    for i, single in enumerate(alone):  # the other studies of a batch change nothing
        torch.testing.assert_close(batched.fixations[i : i + 1], single.fixations)
        assert torch.equal(batched.fixation_mask[i : i + 1], single.fixation_mask)
    # and the scanpath follows the image: different feature maps give different fixations
    assert not torch.allclose(batched.fixations[0], batched.fixations[1])


def test_loss_ignores_padded_targets_and_empty_samples():
    predictor = make_predictor()
    features = torch.randn(3, FEATURE_SIZE, 4, 4)
    output = predictor(features)
    targets, mask = make_targets(3, 6, [2, 6, 0])
    loss = predictor.loss(output, targets, mask)

    changed = targets.clone()
    changed[0, 2:] = torch.tensor([float("nan"), 5.0, -1.0])
    changed[2] = 0.9
    changed_loss = predictor.loss(output, changed, mask)
    for name in ("loss", "location_loss", "offset_loss", "duration_loss", "validity_loss"):
        torch.testing.assert_close(changed_loss[name], loss[name])

    without_empty = predictor.loss(predictor(features[:2]), targets[:2], mask[:2])
    torch.testing.assert_close(without_empty.loss, loss.loss)
    assert torch.isclose(loss.loss, loss.location_loss + loss.offset_loss + loss.duration_loss + loss.validity_loss)


def test_loss_is_zero_and_differentiable_without_any_recorded_fixation():
    predictor = make_predictor()
    output = predictor(torch.randn(2, FEATURE_SIZE, 4, 4))
    targets, mask = make_targets(2, 6, [0, 0])
    loss = predictor.loss(output, targets, mask)
    assert loss.loss.item() == 0.0
    loss.loss.backward()
    assert all(torch.isfinite(parameter.grad).all() for parameter in predictor.parameters())


def test_bad_inputs_are_rejected_with_clear_messages():
    predictor = make_predictor()
    with pytest.raises(ValueError, match=r"patch_features must be a feature map of shape \(batch, 8"):
        predictor(torch.randn(2, 3, 4, 4))
    output = predictor(torch.randn(2, FEATURE_SIZE, 4, 4))
    targets, mask = make_targets(2, 6, [2, 3])
    with pytest.raises(ValueError, match=r"target_fixations must have shape \(2, 6, 3\)"):
        predictor.loss(output, targets[:, :4], mask[:, :4])
    with pytest.raises(ValueError, match=r"the mask of target_fixations must be a bool tensor of shape \(2, 6\)"):
        predictor.loss(output, targets, mask.float())


@pytest.mark.slow
def test_predictor_learns_a_blob_then_fixed_points_scanpath():
    predictor = make_predictor()
    batch_size, height, width = 8, 6, 6
    generator = torch.Generator().manual_seed(0)
    features = 0.1 * torch.randn(batch_size, FEATURE_SIZE, height, width, generator=generator)
    blob_cell = torch.arange(batch_size) * 5 % (height * width)
    features.flatten(2)[torch.arange(batch_size), :, blob_cell] += 2.0
    targets = torch.zeros(batch_size, 6, 3)
    targets[:, 0, 0] = (blob_cell % width + 0.5) / width
    targets[:, 0, 1] = (blob_cell // width + 0.5) / height
    targets[:, 1, :2] = torch.tensor([0.2, 0.3])
    targets[:, 2, :2] = torch.tensor([0.8, 0.7])
    targets[:, :3, 2] = torch.tensor([0.5, 0.25, 1.0])
    mask = torch.zeros(batch_size, 6, dtype=torch.bool)
    mask[:, :3] = True

    optimizer = torch.optim.Adam(predictor.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = predictor.loss(predictor(features), targets, mask).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]

    with torch.no_grad():
        output = predictor.eval()(features)
    assert output.fixation_mask.sum(1).tolist() == [3] * batch_size
    position_error = (output.fixations[:, :3, :2] - targets[:, :3, :2]).abs()
    assert position_error.max() < 0.5 / width
    torch.testing.assert_close(output.fixations[:, :3, 2], targets[:, :3, 2], atol=0.1, rtol=0.1)


def test_predictor_and_loss_run_in_bfloat16():
    predictor = make_predictor().to(torch.bfloat16)
    output = predictor(torch.randn(2, FEATURE_SIZE, 4, 4, dtype=torch.bfloat16))
    targets, mask = make_targets(2, 6, [3, 1])
    loss = predictor.loss(output, targets, mask).loss
    loss.backward()
    assert output.fixations.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
