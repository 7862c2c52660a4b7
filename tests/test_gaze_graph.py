import math

import pytest
import torch

from modeling_gaze2report.configuration_gaze2report import Gaze2ReportConfig
from modeling_gaze2report.scanpath_gaze2report import GazeGraphEncoder, build_gaze_graph

FEATURE_SIZE = 8


def edges_of(graph):
    """{(source, target, type): weight} of a gaze graph."""
    return {
        (source, target, edge_type): weight
        for (source, target), edge_type, weight in zip(
            graph.edge_index.t().tolist(), graph.edge_type.tolist(), graph.edge_weight.tolist()
        )
    }


def test_hand_checked_graph_of_two_scanpaths():
    # patch centres: node 0 (0.25, 0.25), 1 (0.75, 0.25), 2 (0.25, 0.75), 3 (0.75, 0.75); 7 nodes per graph
    fixations = torch.tensor(
        [
            [[0.25, 0.25, 0.5], [0.5, 0.35, 0.2], [0.75, 0.75, 1.0]],
            [[0.75, 0.75, 1.0], [0.75, 0.5, 0.4], [0.0, 0.0, 0.3]],
        ]
    )
    mask = torch.tensor([[True, True, False], [True, True, True]])
    graph = build_gaze_graph(fixations, mask, pool_size=2, radius=0.3)

    grid = [(0, 1), (1, 0), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1)]
    # sample 0, fixation 1 is 0.2693 (squared 0.0725) from nodes 0 and 1; sample 1, fixation 1 is 0.25 from nodes
    # 1 and 3; sample 1, fixation 2 is 0.3536 from node 0, beyond the radius; fixations 0 sit on a patch centre
    weight_0_1 = 0.2 * math.exp(-0.5 * 0.0725 / 0.15**2)
    weight_1_1 = 0.4 * math.exp(-0.5 * 0.0625 / 0.15**2)
    near = [
        (4, 0, 0.5),
        (5, 0, weight_0_1),
        (5, 1, weight_0_1),
        (11, 10, 1.0),
        (12, 8, weight_1_1),
        (12, 10, weight_1_1),
    ]
    expected = {(source, target, 0): 1.0 for source, target in grid}
    expected.update({(source + 7, target + 7, 0): 1.0 for source, target in grid})
    expected.update({(4, 5, 1): 1.0, (11, 12, 1): 1.0, (12, 13, 1): 1.0})
    expected.update({(5, 4, 2): 1.0, (12, 11, 2): 1.0, (13, 12, 2): 1.0})
    expected.update({(fixation, patch, 3): weight for fixation, patch, weight in near})
    expected.update({(patch, fixation, 4): weight for fixation, patch, weight in near})

    edges = edges_of(graph)
    assert graph.edge_index.shape[1] == len(edges) == len(expected)
    assert edges.keys() == expected.keys()
    for key, weight in expected.items():
        assert edges[key] == pytest.approx(weight, rel=1e-5), key
    assert graph.num_nodes_per_graph == 7
    assert graph.edge_index.dtype == graph.edge_type.dtype == torch.long


def test_masked_fixations_are_isolated_whatever_their_values():
    fixations = torch.rand(3, 5, 3)
    fixations[:, 3:] = float("nan")
    mask = torch.arange(5)[None] < torch.tensor([[3], [3], [3]])
    graph = build_gaze_graph(fixations, mask, pool_size=3, radius=0.5)
    num_nodes = 9 + 5
    masked_nodes = {graph_index * num_nodes + 9 + slot for graph_index in range(3) for slot in (3, 4)}
    assert not masked_nodes & set(graph.edge_index.flatten().tolist())
    assert torch.isfinite(graph.edge_weight).all()


def test_batched_graph_is_the_per_sample_graphs_offset_by_graph_size():
    generator = torch.Generator().manual_seed(0)
    fixations = torch.rand(3, 4, 3, generator=generator)
    mask = torch.arange(4)[None] < torch.tensor([[4], [0], [2]])
    batched = edges_of(build_gaze_graph(fixations, mask, pool_size=3, radius=0.4))
    num_nodes = 9 + 4
    expected = {}
    for sample in range(3):
        single = build_gaze_graph(fixations[sample : sample + 1], mask[sample : sample + 1], pool_size=3, radius=0.4)
        offset = sample * num_nodes
        expected.update({(s + offset, t + offset, k): w for (s, t, k), w in edges_of(single).items()})
    assert batched.keys() == expected.keys()
    for key, weight in expected.items():
        assert batched[key] == pytest.approx(weight)


def test_build_gaze_graph_rejects_bad_inputs():
    fixations = torch.rand(1, 3, 3)
    with pytest.raises(ValueError, match=r"the mask of fixations must be a bool tensor of shape \(1, 3\)"):
        build_gaze_graph(fixations, torch.ones(1, 2, dtype=torch.bool), pool_size=2, radius=0.3)
    with pytest.raises(ValueError, match="pool_size must be a positive integer"):
        build_gaze_graph(fixations, torch.ones(1, 3, dtype=torch.bool), pool_size=0, radius=0.3)
    with pytest.raises(ValueError, match=r"fixations must be a float tensor of shape \(batch, num_fixations, 3\)"):
        build_gaze_graph(fixations[..., :2], torch.ones(1, 3, dtype=torch.bool), pool_size=2, radius=0.3)


def make_encoder(use_gaze=True, num_layers=2):
    torch.manual_seed(0)
    config = Gaze2ReportConfig(
        patch_pool_size=4,
        max_fixations=5,
        gnn_hidden_size=32,
        gnn_num_layers=num_layers,
        gnn_num_heads=4,
        fixation_patch_radius=0.2,
        use_gaze=use_gaze,
    )
    return GazeGraphEncoder(config, FEATURE_SIZE).eval()


def make_scanpath():
    fixations = torch.tensor(
        [
            [[0.1, 0.2, 0.3], [0.6, 0.6, 0.5], [0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.5, 0.5, 0.1]],
            [[0.3, 0.8, 1.2], [0.7, 0.3, 0.4], [0.5, 0.5, 0.1], [0.5, 0.5, 0.1], [0.5, 0.5, 0.1]],
        ]
    )
    mask = torch.tensor([[True, True, True, False, False], [True, True, False, False, False]])
    return fixations, mask


def test_encoder_output_shape_and_gradient_flow():
    encoder = make_encoder()
    features = torch.randn(2, FEATURE_SIZE, 8, 6, requires_grad=True)
    fixations, mask = make_scanpath()
    fixations.requires_grad_()
    states = encoder(features, fixations, mask)
    assert states.shape == (2, 16 + 5, 32)
    assert torch.isfinite(states).all()
    (states * torch.randn_like(states)).sum().backward()
    assert features.grad.abs().sum() > 0
    assert (fixations.grad[mask][:, :2].abs().sum(-1) > 0).all()
    assert (fixations.grad[~mask] == 0).all()


def test_masked_fixation_slots_do_not_change_any_node():
    encoder = make_encoder()
    features = torch.randn(2, FEATURE_SIZE, 8, 8)
    fixations, mask = make_scanpath()
    moved = fixations.clone()
    moved[~mask] = torch.tensor([0.05, 0.95, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(encoder(features, moved, mask), encoder(features, fixations, mask))


def test_recorded_fixation_changes_the_patch_node_it_is_near():
    # one GNN layer: only nodes linked to the fixation by an edge can change. With P = 4 and radius 0.2, a fixation
    # on the centre (0.125, 0.125) of patch node 0 is linked to that node alone.
    encoder = make_encoder(num_layers=1)
    features = torch.randn(1, FEATURE_SIZE, 8, 8)
    fixations = torch.tensor([[[0.125, 0.125, 0.8]] * 5])
    with torch.no_grad():
        with_gaze = encoder(features, fixations, torch.tensor([[True, False, False, False, False]]))
        without_gaze = encoder(features, fixations, torch.zeros(1, 5, dtype=torch.bool))
    changed = (with_gaze - without_gaze).abs().amax(-1)[0] > 1e-6  # (num_nodes,)
    assert changed.nonzero().flatten().tolist() == [0, 16]


def test_gaze_free_fixations_are_a_fixed_grid_that_keeps_the_token_count():
    encoder = make_encoder(use_gaze=False)
    features = torch.randn(2, FEATURE_SIZE, 8, 8)
    free_fixations, free_mask = encoder.gaze_free_fixations(2, torch.device("cpu"), torch.float32)
    assert free_fixations.shape == (2, 5, 3) and free_mask.all()
    assert len({tuple(position) for position in free_fixations[0, :, :2].tolist()}) == 5
    assert ((free_fixations[..., :2] > 0) & (free_fixations[..., :2] < 1)).all()
    torch.testing.assert_close(free_fixations[0], free_fixations[1])
    fixations, mask = make_scanpath()
    with torch.no_grad():
        assert encoder(features, free_fixations, free_mask).shape == make_encoder()(features, fixations, mask).shape
    with pytest.raises(ValueError, match="needs fixations and fixation_mask"):
        encoder(features, None, None)


def test_encoder_runs_under_bfloat16_autocast_and_in_bfloat16():
    encoder = make_encoder()
    features = torch.randn(2, FEATURE_SIZE, 8, 8)
    fixations, mask = make_scanpath()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_states = encoder(features, fixations, mask)
    bfloat16_states = encoder.to(torch.bfloat16)(features.bfloat16(), fixations, mask)
    assert bfloat16_states.dtype == torch.bfloat16
    for states in (autocast_states, bfloat16_states):
        assert states.shape == (2, 21, 32)
        assert torch.isfinite(states).all()
