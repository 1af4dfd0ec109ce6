"""Core builders from text protos: TF defaults and refusals."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from odkit.builders import (
    anchor_generator_builder,
    box_coder_builder,
    losses_builder,
    matcher_builder,
    post_processing_builder,
    region_similarity_calculator_builder,
)
from odkit.core import anchors, box_coders, losses, matchers, similarity
from odkit.errors import UnsupportedError
from odkit.protos import (
    anchor_generator_pb2,
    box_coder_pb2,
    losses_pb2,
    matcher_pb2,
    post_processing_pb2,
    region_similarity_calculator_pb2,
)


def _parse(text: str, msg):
    return text_format.Parse(text, msg)


def test_anchor_generators():
    g = anchor_generator_builder.build(
        _parse(
            "multiscale_anchor_generator { min_level: 3 max_level: 7 anchor_scale: 4.0 "
            "aspect_ratios: [1.0, 2.0, 0.5] scales_per_octave: 2 }",
            anchor_generator_pb2.AnchorGenerator(),
        )
    )
    assert isinstance(g, anchors.MultiscaleGridAnchorGenerator)
    assert g.generate([(640 // 2**lv,) * 2 for lv in range(3, 8)], 640, 640).shape[0] == 51150
    g = anchor_generator_builder.build(
        _parse(
            "grid_anchor_generator { height_stride: 8 width_stride: 8 scales: [0.25, 0.5] aspect_ratios: [1.0] }",
            anchor_generator_pb2.AnchorGenerator(),
        )
    )
    assert g.num_anchors_per_location() == [2]
    assert g.base_anchor_size == (256.0, 256.0) and g.anchor_stride == (8.0, 8.0)
    g = anchor_generator_builder.build(
        _parse(
            "ssd_anchor_generator { num_layers: 6 min_scale: 0.2 max_scale: 0.95 aspect_ratios: [1.0, 2.0, 0.5] }",
            anchor_generator_pb2.AnchorGenerator(),
        )
    )
    assert g.num_anchors_per_location() == [3, 4, 4, 4, 4, 4]
    with pytest.raises(UnsupportedError, match="anchor generator"):
        anchor_generator_builder.build(anchor_generator_pb2.AnchorGenerator())


def test_box_coders_matchers_similarity():
    c = box_coder_builder.build(_parse("faster_rcnn_box_coder {}", box_coder_pb2.BoxCoder()))
    assert isinstance(c, box_coders.FasterRcnnBoxCoder) and c.scale_factors == (10.0, 10.0, 5.0, 5.0)
    c = box_coder_builder.build(_parse("mean_stddev_box_coder { stddev: 0.1 }", box_coder_pb2.BoxCoder()))
    assert c.stddev == pytest.approx(0.1)
    with pytest.raises(UnsupportedError, match="keypoint_box_coder"):
        box_coder_builder.build(_parse("keypoint_box_coder { num_keypoints: 2 }", box_coder_pb2.BoxCoder()))
    m = matcher_builder.build(
        _parse(
            "argmax_matcher { matched_threshold: 0.6 unmatched_threshold: 0.4 force_match_for_each_row: true }",
            matcher_pb2.Matcher(),
        )
    )
    assert isinstance(m, matchers.ArgMaxMatcher)
    assert (m.matched_threshold, m.unmatched_threshold, m.force_match_for_each_row) == (
        pytest.approx(0.6),
        pytest.approx(0.4),
        True,
    )
    m = matcher_builder.build(_parse("argmax_matcher { ignore_thresholds: true }", matcher_pb2.Matcher()))
    assert m.matched_threshold is None
    with pytest.raises(UnsupportedError, match="unmatched_threshold"):
        matcher_builder.build(
            _parse(
                "argmax_matcher { matched_threshold: 0.3 unmatched_threshold: 0.5 }", matcher_pb2.Matcher()
            )
        )
    s = region_similarity_calculator_builder.build(
        _parse("iou_similarity {}", region_similarity_calculator_pb2.RegionSimilarityCalculator())
    )
    assert isinstance(s, similarity.IouSimilarity)


def test_losses():
    cfg = losses_builder.build(
        _parse(
            """
        classification_loss { weighted_sigmoid_focal { alpha: 0.25 gamma: 2.0 } }
        localization_loss { weighted_smooth_l1 { delta: 0.5 } }
        classification_weight: 2.0
        hard_example_miner { num_hard_examples: 3000 iou_threshold: 0.99 loss_type: CLASSIFICATION
                             max_negatives_per_positive: 3 min_negatives_per_image: 3 }
        random_example_sampler { positive_sample_fraction: 0.25 }
    """,
            losses_pb2.Loss(),
        )
    )
    assert isinstance(cfg.classification_loss, losses.SigmoidFocalClassificationLoss)
    assert cfg.classification_loss.alpha == pytest.approx(0.25)
    assert cfg.localization_loss.delta == pytest.approx(0.5)
    assert cfg.classification_weight == 2.0 and cfg.localization_weight == 1.0
    assert cfg.hard_example_miner.loss_type == "cls" and cfg.hard_example_miner.num_hard_examples == 3000
    assert cfg.hard_example_miner.max_negatives_per_positive == 3
    assert cfg.random_example_sampler.positive_fraction == pytest.approx(0.25)
    focal = losses_builder.build(
        _parse(
            "classification_loss { weighted_sigmoid_focal {} } localization_loss { weighted_l2 {} }",
            losses_pb2.Loss(),
        )
    )
    assert focal.classification_loss.alpha is None and focal.hard_example_miner is None
    with pytest.raises(UnsupportedError, match="expected_loss_weights"):
        losses_builder.build(_parse("expected_loss_weights: EXPECTED_SAMPLING", losses_pb2.Loss()))
    assert isinstance(
        losses_builder.build_faster_rcnn_classification_loss(losses_pb2.ClassificationLoss()),
        losses.WeightedSoftmaxClassificationLoss,
    )


def test_post_processing():
    nms, conv = post_processing_builder.build(
        _parse(
            """
        batch_non_max_suppression { score_threshold: 1e-8 iou_threshold: 0.6 max_detections_per_class: 100
                                    max_total_detections: 100 }
        score_converter: SIGMOID
    """,
            post_processing_pb2.PostProcessing(),
        )
    )
    assert conv.kind == "SIGMOID" and nms.change_coordinate_frame is True
    assert (nms.max_size_per_class, nms.max_total_size) == (100, 100)
    with pytest.raises(UnsupportedError, match="max_classes_per_detection"):
        post_processing_builder.build(
            _parse(
                "batch_non_max_suppression { use_class_agnostic_nms: true max_classes_per_detection: 2 }",
                post_processing_pb2.PostProcessing(),
            )
        )
