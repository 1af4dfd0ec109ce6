"""ArgMax / bipartite matchers and the batched target assigner."""

from __future__ import annotations

import torch

from odkit.core.box_coders import FasterRcnnBoxCoder
from odkit.core.matchers import ArgMaxMatcher, BipartiteMatcher, gather_based_on_match
from odkit.core.similarity import IoaSimilarity, IouSimilarity, NegSqDistSimilarity, ThresholdedIouSimilarity
from odkit.core.target_assigner import TargetAssigner

SIM = torch.tensor([[0.6, 0.45, 0.2, 0.1], [0.3, 0.8, 0.1, 0.35]])


def test_argmax_thresholds():
    m = ArgMaxMatcher(0.5, 0.4)
    assert m.match(SIM).tolist() == [0, 1, -1, -1]
    m = ArgMaxMatcher(0.7, 0.4)
    assert m.match(SIM).tolist() == [-2, 1, -1, -1]
    m = ArgMaxMatcher(0.7, 0.4, negatives_lower_than_unmatched=False)
    assert m.match(SIM).tolist() == [-1, 1, -2, -2]
    assert ArgMaxMatcher(None).match(SIM).tolist() == [0, 1, 0, 1]


def test_argmax_force_match_and_padding_rows():
    sim = torch.tensor([[0.2, 0.1, 0.0], [0.9, 0.3, 0.0], [0.0, 0.0, 0.95]])
    m = ArgMaxMatcher(0.5, 0.5, force_match_for_each_row=True)
    # row 0's best column (0) is also row 1's; TF gives the column to the first claiming row
    assert m.match(sim).tolist() == [0, -1, 2]
    valid = torch.tensor([True, True, False])  # row 2 is padding: never matched
    assert m.match(sim, valid).tolist() == [0, -1, -1]
    batched = torch.stack([sim, sim])
    out = m.match(batched, torch.tensor([[True, True, True], [False, False, False]]))
    assert out.tolist() == [[0, -1, 2], [-1, -1, -1]]


def _force_match_reference(m: ArgMaxMatcher, sim: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The one-hot form TF writes (and odkit used): argmax over rows of one_hot(best column) of valid rows."""
    no_force = ArgMaxMatcher(m.matched_threshold, m.unmatched_threshold).match(sim, valid)
    masked = torch.where(valid.unsqueeze(-1), sim, torch.finfo(sim.dtype).min)
    ind = torch.nn.functional.one_hot(masked.argmax(dim=2), sim.shape[2]).bool() & valid.unsqueeze(-1)
    forced = torch.where(ind.any(dim=1), ind.to(torch.int8).argmax(dim=1), no_force)
    return torch.where(valid.any(dim=1, keepdim=True), forced, no_force)


def test_force_match_equals_the_one_hot_form_on_random_ties():
    """Quantised similarities (many ties between rows and columns), padded rows, empty images."""
    gen = torch.Generator().manual_seed(0)
    m = ArgMaxMatcher(0.5, 0.4, force_match_for_each_row=True)
    for _ in range(50):
        b, n, cols = 3, int(torch.randint(1, 7, (1,), generator=gen)), int(torch.randint(1, 9, (1,), generator=gen))
        sim = torch.randint(0, 4, (b, n, cols), generator=gen).float() / 4
        valid = torch.rand(b, n, generator=gen) < 0.7
        valid[0] = False  # an image without boxes
        assert torch.equal(m.match(sim, valid), _force_match_reference(m, sim, valid))


def test_bipartite_greedy():
    sim = torch.tensor([[0.9, 0.8, 0.1], [0.85, 0.2, 0.3]])
    assert BipartiteMatcher().match(sim).tolist() == [0, -1, 1]
    out = BipartiteMatcher().match(torch.stack([sim, sim]), torch.tensor([[True, True], [False, True]]))
    assert out.tolist() == [[0, -1, 1], [1, -1, -1]]


def test_similarities():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(IouSimilarity().compare(a, b), torch.tensor([[1 / 7, 0.25, 0.0]]))
    torch.testing.assert_close(IoaSimilarity().compare(a, b), torch.tensor([[0.25, 1.0, 0.0]]))
    torch.testing.assert_close(NegSqDistSimilarity().compare(a, b)[0, 0], torch.tensor(-4.0))
    t = ThresholdedIouSimilarity(0.2).compare(a, b, scores1=torch.tensor([0.7]))
    torch.testing.assert_close(t, torch.tensor([[0.0, 0.7, 0.0]]))


def test_gather_based_on_match():
    values = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    out = gather_based_on_match(values, torch.tensor([[1, -1, -2, 0]]), torch.tensor([9.0, 9.0]), -5.0)
    assert out.tolist() == [[[2, 2], [9, 9], [-5, -5], [1, 1]]]


def test_gather_based_on_match_batched_shapes_and_empty_groundtruth():
    g = torch.Generator().manual_seed(0)
    for extra in ((), (4,), (3, 5)):
        values = torch.randn(3, 6, *extra, generator=g)
        matches = torch.randint(-2, 6, (3, 40), generator=g)
        un, ig = torch.randn(extra, generator=g), 7.0
        ref = torch.stack([torch.stack([values[i, j] if j >= 0 else (un if j == -1 else torch.full_like(un, ig))
                                        for j in matches[i].tolist()]) for i in range(3)])
        assert torch.equal(gather_based_on_match(values, matches, un, ig), ref)
    empty = gather_based_on_match(torch.zeros(2, 0, 4), torch.tensor([[-1, -2], [-2, -1]]), torch.ones(4), 0.0)
    assert empty.tolist() == [[[1.0] * 4, [0.0] * 4], [[0.0] * 4, [1.0] * 4]]


def test_target_assigner_batched():
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]])
    gt_boxes = torch.tensor(
        [
            [[0.0, 0.0, 0.5, 0.55], [0.0, 0.0, 0.0, 0.0]],
            [[0.5, 0.5, 1.0, 1.0], [0.0, 0.45, 0.5, 1.0]],
        ]
    )
    gt_classes = torch.tensor([[2, 0], [1, 3]])
    gt_weights = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    coder = FasterRcnnBoxCoder((10.0, 10.0, 5.0, 5.0))
    ta = TargetAssigner(IouSimilarity(), ArgMaxMatcher(0.5, 0.4), coder, negative_class_weight=0.25)
    t = ta.assign(anchors, gt_boxes, gt_classes, gt_weights, torch.tensor([1, 2]), num_classes=3)
    assert t.matches.tolist() == [[0, -1, -1], [-1, 0, 1]]
    assert t.cls_targets.shape == (2, 3, 4)
    assert t.cls_targets[0].tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert t.cls_targets[1].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert t.cls_weights[:, :, 0].tolist() == [[1.0, 0.25, 0.25], [0.25, 0.5, 1.0]]
    assert t.cls_weights.shape == (2, 3, 4)
    assert t.reg_weights.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]]
    torch.testing.assert_close(
        coder.decode(t.reg_targets[0, 0], anchors[0]), gt_boxes[0, 0], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        coder.decode(t.reg_targets[1, 2], anchors[2]), gt_boxes[1, 1], atol=1e-5, rtol=0
    )
    assert t.reg_targets[0, 1].abs().sum() == 0
    # without a background class the unmatched label is all zeros
    t2 = ta.assign(anchors, gt_boxes, gt_classes, gt_weights, None, num_classes=3, add_background_class=False)
    assert t2.cls_targets[0].tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
