"""Faster R-CNN / Mask R-CNN with Inception-ResNet-v2 (stride 16 and atrous 8) and atrous ResNet: the network
matches TF's Keras application (parameter count, feature shapes), the zoo mask config builds, trains one step
and predicts masks; stride 8 keeps the ResNet proposal features at 1/8."""

from __future__ import annotations

import pytest
import torch

from odkit.models.backbones.inception_resnet_v2 import InceptionResNetV2


def _tf_param_count(m: torch.nn.Module) -> int:
    """TF's count_params: convs, biases, batch-norm beta + moving mean / variance (no gamma: scale=False)."""
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    return sum(p.numel() for p in m.parameters()) - sum(b.weight.numel() for b in bns) + sum(
        2 * b.running_mean.numel() for b in bns)


@pytest.mark.parametrize("stride", [16, 8])
def test_irv2_matches_tf_keras_layout(stride, one_thread):
    net = InceptionResNetV2(stride).eval()
    # measured: tf.keras InceptionResNetV2 via object_detection.models.keras_models.inception_resnet_v2
    # (include_top=False, align_feature_maps=True): 54,336,736 params; 96x96 input -> block17_20_ac 6x6x1088,
    # conv_7b_ac 3x3x1536 (stride 16)
    assert _tf_param_count(net) == 54_336_736
    with torch.no_grad():
        p = net.proposal_features(torch.zeros(1, 3, 96, 96))
        c = net.box_classifier_features(torch.zeros(2, 1088, 17, 17))
    assert p.shape == (1, 1088, 96 // stride, 96 // stride)
    assert c.shape == (2, 1536, 9, 9)


@pytest.mark.slow  # ~14 s on the loaded 2-core machine (IRv2 at 96 px)
def test_mask_rcnn_irv2_zoo_config_builds_trains_and_predicts(compat_dir, one_thread):
    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.workflows.config_check import check as check_config

    def check(config):  # the unsupported findings (odkit config check)
        return check_config(config).unsupported

    cfg = load(str(compat_dir / "tfod_configs" / "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config"))
    assert check(cfg) == []
    fr = cfg.model.faster_rcnn
    fr.num_classes = 2
    fr.image_resizer.fixed_shape_resizer.height = fr.image_resizer.fixed_shape_resizer.width = 96
    fr.first_stage_max_proposals = 4
    fr.second_stage_batch_size = 4
    nms = fr.second_stage_post_processing.batch_non_max_suppression
    nms.max_detections_per_class = nms.max_total_detections = 3
    torch.manual_seed(0)
    model = build_model(cfg.model, is_training=True)
    assert model.mask_head is not None and model.predicts_masks
    # conv depth 0: TF's automatic depth for 1536 features and 2 classes: 2 ** round((2 * 10.58 + 3) / 5) = 32
    assert model.mask_head.last.in_channels == 32
    images = torch.randint(0, 255, (1, 3, 96, 96), dtype=torch.uint8)
    masks = torch.zeros(1, 1, 96, 96, dtype=torch.uint8)
    masks[0, 0, 20:60, 30:70] = 1
    gt = {"boxes": torch.tensor([[[20 / 96, 30 / 96, 60 / 96, 70 / 96]]]), "classes": torch.tensor([[1]]),
          "weights": torch.ones(1, 1), "num_boxes": torch.tensor([1]), "masks": masks}
    shapes = torch.tensor([[96, 96, 3]])
    losses = model.loss(model.predict(model.preprocess(images)), gt, shapes)
    assert "Loss/BoxClassifierLoss/mask_loss" in losses
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        det = model(images, shapes)
    assert det["detection_masks"].shape == (1, 3, 33, 33)
    assert float(det["detection_masks"].min()) >= 0 and float(det["detection_masks"].max()) <= 1


def test_atrous_resnet_proposal_features_at_stride_8(one_thread):
    from odkit.models.faster_rcnn_feature_extractors import ResNetFasterRcnnFeatureExtractor

    fe = ResNetFasterRcnnFeatureExtractor(50, first_stage_features_stride=8).eval()
    with torch.no_grad():
        out = fe.extract_proposal_features(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 1024, 8, 8)
    assert fe.backbone.layer3[1].conv2.dilation == (2, 2)
    with pytest.raises(ValueError):
        ResNetFasterRcnnFeatureExtractor(50, first_stage_features_stride=4)


def test_tf1_atrous_configs_are_honoured(compat_dir):
    from odkit.config import load
    from odkit.workflows.config_check import check as check_config

    def check(config):  # the unsupported findings (odkit config check)
        return check_config(config).unsupported

    for name in ("faster_rcnn_inception_resnet_v2_atrous_coco.config", "faster_rcnn_resnet101_atrous_coco.config",
                 "mask_rcnn_resnet101_pets.config"):
        assert check(load(str(compat_dir / "tfod_configs" / "tf1" / name))) == [], name


def test_irv2_tf_mapping_covers_every_tensor_once():
    """The Keras-order name mapping fills every backbone tensor exactly once; TF's sub-models have 342 and 106
    layers with weights (measured on TF's FasterRCNNInceptionResnetV2KerasFeatureExtractor)."""
    from odkit.tfcompat.mapping.backbones import (
        inception_resnet_v2_keras_layers,
        inception_resnet_v2_keras_maps,
    )

    assert len(inception_resnet_v2_keras_layers("proposal")) == 342
    assert len(inception_resnet_v2_keras_layers("box_classifier")) == 106
    net = InceptionResNetV2()
    names = [m[0] for part in ("proposal", "box_classifier") for m in inception_resnet_v2_keras_maps("", "tf", part)]
    assert len(names) == len(set(names))
    keys = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(names) == keys
