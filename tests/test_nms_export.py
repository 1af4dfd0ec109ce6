"""Exported NMS (odkit.core.nms_export): the ONNX graph (one NonMaxSuppression) and the TorchScript trace give
the eager `batch_multiclass_non_max_suppression` / `greedy_nms_top_n` results."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from odkit.core.post_processing import batch_multiclass_non_max_suppression, greedy_nms_top_n


def _boxes_scores(b: int, a: int, q: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping boxes in clusters (so NMS suppresses), some sticking out of [0, 1], distinct scores."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(b, 6, 1, 1, 2, generator=g).repeat(1, a // 6 + 1, q, 1, 1)[:, :a]
    centers = centers + 0.04 * torch.randn(b, a, q, 1, 2, generator=g)
    sizes = 0.05 + 0.3 * torch.rand(b, a, q, 1, 2, generator=g)
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=3).reshape(b, a, q, 4)
    scores = torch.rand(b, a, c, generator=g) ** 3  # many low scores, a few high
    return boxes, scores


class _Nms(torch.nn.Module):
    def __init__(self, **kw) -> None:
        super().__init__()
        self.kw = kw

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor, window: torch.Tensor):
        r = batch_multiclass_non_max_suppression(boxes, scores, clip_window=window, **self.kw)
        return r.boxes, r.scores, r.classes, r.num_detections, r.anchor_indices


def _onnx(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[ort.InferenceSession, onnx.ModelProto]:
    f = io.BytesIO()
    names = [f"in{i}" for i in range(len(args))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, dynamo=False, opset_version=17, input_names=names,
                          dynamic_axes={n: {0: "batch", 1: "anchors"} if i < 2 else {0: "batch"}
                                                       for i, n in enumerate(names)})
    proto = onnx.load_from_string(f.getvalue())
    return ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"]), proto


def _assert_same(expected, actual) -> None:
    boxes, scores, classes, num, anchors = (np.asarray(t) for t in expected)
    np.testing.assert_array_equal(np.asarray(actual[3]), num)
    for i in range(len(num)):
        n = int(num[i])
        # order within equal scores is free; distinct random scores make the order unique
        np.testing.assert_allclose(actual[1][i], scores[i], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(actual[2][i], classes[i])
        np.testing.assert_array_equal(actual[4][i][:n], anchors[i][:n])
        np.testing.assert_allclose(actual[0][i], boxes[i], rtol=0, atol=1e-6)


CASES = {
    "shared boxes, clip + frame": dict(q=1, c=5, kw=dict(score_thresh=0.05, iou_thresh=0.5, max_size_per_class=7,
                                                         max_total_size=20, change_coordinate_frame=True)),
    "per-class boxes": dict(q=4, c=4, kw=dict(score_thresh=0.0, iou_thresh=0.6, max_size_per_class=5,
                                              max_total_size=12)),
    "class agnostic": dict(q=1, c=6, kw=dict(score_thresh=1e-8, iou_thresh=0.5, max_size_per_class=3,
                                             max_total_size=9, use_class_agnostic_nms=True)),
    "few candidates (padding)": dict(q=1, c=3, kw=dict(score_thresh=0.7, iou_thresh=0.3, max_size_per_class=50,
                                                       max_total_size=60)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_and_torchscript_nms_equal_eager(case):
    q, c, kw = CASES[case]["q"], CASES[case]["c"], CASES[case]["kw"]
    module = _Nms(**kw).eval()
    trace_args = (*_boxes_scores(2, 300, q, c, seed=0), torch.tensor([[0.0, 0.0, 0.9, 1.0], [0.1, 0.0, 1.0, 0.8]]))
    session, proto = _onnx(module, trace_args)
    assert [n.op_type for n in proto.graph.node].count("NonMaxSuppression") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, trace_args, check_trace=False)
    for seed, b, a in ((1, 2, 300), (2, 3, 517), (3, 1, 40)):  # other batch sizes and anchor counts
        boxes, scores = _boxes_scores(b, a, q, c, seed)
        window = torch.tensor([[0.0, 0.05, 0.95, 1.0]]).repeat(b, 1)
        expected = module(boxes, scores, window)
        assert int(expected[3].sum()) > 0
        feed = {"in0": boxes.numpy(), "in1": scores.numpy(), "in2": window.numpy()}
        _assert_same(expected, session.run(None, feed))
        _assert_same(expected, [t.numpy() for t in traced(boxes, scores, window)])


class _Greedy(torch.nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor):
        return greedy_nms_top_n(boxes, scores, 15, 0.5, always_loop=True)


def test_onnx_greedy_top_n_equals_eager():
    boxes, scores = _boxes_scores(2, 200, 1, 1, seed=4)
    boxes, scores = boxes[:, :, 0], scores[..., 0]
    scores[0, :190] = torch.finfo(torch.float32).min  # never picked: image 0 has fewer than 15 picks
    session, proto = _onnx(_Greedy(), (boxes, scores))
    assert [n.op_type for n in proto.graph.node].count("NonMaxSuppression") == 1
    idx, ok = _Greedy()(boxes, scores)
    assert 0 < int(ok[0].sum()) < 15 and int(ok[1].sum()) == 15
    got_idx, got_ok = session.run(None, {"in0": boxes.numpy(), "in1": scores.numpy()})
    np.testing.assert_array_equal(got_ok, ok.numpy())
    np.testing.assert_array_equal(got_idx[got_ok], idx[ok].numpy())


@pytest.mark.parametrize("seed", range(6))
def test_greedy_nms_on_a_prefix_equals_nms_over_every_candidate(seed):
    """The traced forward's prefix-doubling NMS picks exactly what one NMS over all candidates picks first."""
    from torchvision.ops import nms

    from odkit.core.nms_export import _greedy_nms_first_picks

    g = torch.Generator().manual_seed(seed)
    n = [50, 3000, 3000, 800, 5, 3000][seed]
    centre = torch.rand(n, 2, generator=g) * (0.2 if seed == 2 else 1.0)  # seed 2: heavy overlap -> long prefix
    size = torch.rand(n, 2, generator=g) * 0.3 + 0.01
    xyxy = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    scores = torch.rand(n, generator=g)
    scores[::7] = 0.0  # below the threshold
    if seed == 3:
        scores = torch.round(scores * 4) / 4  # many ties
    for max_picks in (1, 10, 100):
        got = _greedy_nms_first_picks(xyxy, scores, 1e-8, 0.5, max_picks)
        cand = torch.nonzero(scores > 1e-8).squeeze(1)
        want = cand[nms(xyxy[cand], scores[cand], 0.5)[:max_picks]]
        if seed == 3:  # tied scores: the same set of picks (the order among equal scores is not defined)
            assert sorted(got.tolist()) == sorted(want.tolist())
        else:
            assert got.tolist() == want.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_grouped_nms_with_max_picks_keeps_the_first_picks_of_full_nms(seed):
    """TorchScript's grouped NMS on growing prefixes: each group's first max_picks picks equal those of NMS over
    the whole group (sparse and heavily overlapping boxes, groups of different sizes, a group of one)."""
    from torchvision.ops import nms

    from odkit.core.nms_export import grouped_nms

    g = torch.Generator().manual_seed(seed)
    sizes = [1, 40, 700, 2000]
    groups = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    n = len(groups)
    centre = torch.rand(n, 2, generator=g) * (0.15 if seed % 2 else 1.0)  # odd seeds: heavy overlap
    size = torch.rand(n, 2, generator=g) * 0.3 + 0.01
    xyxy = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    scores = torch.rand(n, generator=g)
    order = torch.cat([torch.where(groups == i)[0][scores[groups == i].argsort(descending=True)]
                       for i in range(len(sizes))])  # descending scores within each group, as the caller gives
    xyxy, scores = xyxy[order], scores[order]
    for max_picks in (1, 10, 100):
        kept = set(grouped_nms(xyxy, scores, groups, 0.5, max_picks).tolist())
        for i in range(len(sizes)):
            idx = torch.where(groups == i)[0]
            want = idx[nms(xyxy[idx], scores[idx], 0.5)][:max_picks].tolist()
            got = sorted((j for j in kept if groups[j] == i), key=lambda j: -scores[j].item())[:max_picks]
            assert got == want, (i, max_picks)
        full = set(grouped_nms(xyxy, scores, groups, 0.5).tolist())
        assert kept <= full  # a prefix never picks what full NMS would not
