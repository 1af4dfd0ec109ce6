"""ResNet v1 in the TF OD API layout (stride on the 1x1 conv, SAME stem max pool) and its Keras name order."""

import numpy as np
import pytest
import torch

from odkit.models.backbones.resnet import ResNetBackbone
from odkit.models.hyperparams import max_pool_same
from odkit.tfcompat.mapping.backbones import resnet_v1_keras_layers, resnet_v1_keras_maps


def test_same_max_pool_pads_bottom_right_for_even_inputs():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    out = max_pool_same(x, 3, 2)
    # TF SAME: windows start at 0, 2, 4 (the last one padded at the bottom/right)
    assert out.shape[-2:] == (3, 3)
    assert out[0, 0, 0, 0] == x[0, 0, 2, 2] and out[0, 0, 2, 2] == x[0, 0, 5, 5]
    assert torch.equal(max_pool_same(torch.arange(49.0).view(1, 1, 7, 7), 3, 2)[0, 0, 0, 0], torch.tensor(8.0))


def test_resnet_tf_variant_strides_on_the_1x1_conv():
    tf = ResNetBackbone(50)
    tv = ResNetBackbone(50, variant="torchvision")
    for layer in ("layer2", "layer3", "layer4"):
        assert getattr(tf, layer)[0].conv1.stride == (2, 2) and getattr(tf, layer)[0].conv2.stride == (1, 1)
        assert getattr(tv, layer)[0].conv1.stride == (1, 1) and getattr(tv, layer)[0].conv2.stride == (2, 2)
    assert tf.bn1.eps == 1e-5 and abs(tf.bn1.momentum - 0.003) < 1e-9
    assert set(tf.state_dict()) == set(tv.state_dict())  # same names and shapes: torchvision weights load
    with torch.no_grad():
        f = tf.eval()(torch.zeros(1, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in f.items()} == {
        2: (256, 16, 16), 3: (512, 8, 8), 4: (1024, 4, 4), 5: (2048, 2, 2)}


def test_keras_layer_order_matches_tf_full_names():
    # layer_with_weights-N -> Keras layer, read from the full_name of each variable of a TF-written
    # faster_rcnn_resnet50_keras checkpoint (_feature_extractor_for_proposal_features)
    order = resnet_v1_keras_layers(50, (1, 2, 3, 4))
    expected = {0: "conv1", 2: "layer1.0.conv1", 4: "layer1.0.conv2", 6: "layer1.0.downsample.0",
                7: "layer1.0.conv3", 10: "layer1.1.conv1", 26: "layer2.0.downsample.0", 27: "layer2.0.conv3",
                52: "layer3.0.downsample.0", 53: "layer3.0.conv3", 84: "layer3.5.conv3"}
    for n, path in expected.items():
        assert order[n] == (path, "conv")
    assert order[8] == ("layer1.0.downsample.1", "bn") and len(order) == 86
    # conv5 as its own sub-model restarts at 0: block1 1_conv 0, 0_conv 4, 3_conv 5, block2 1_conv 8
    conv5 = resnet_v1_keras_layers(50, (5,))
    assert [conv5[i][0] for i in (0, 4, 5, 8)] == ["layer4.0.conv1", "layer4.0.downsample.0", "layer4.0.conv3",
                                                 "layer4.1.conv1"]
    assert len(resnet_v1_keras_layers(101, (4,))) == 23 * 6 + 2 and len(resnet_v1_keras_layers(152, (3,))) == 50
    maps = resnet_v1_keras_maps("b.", "model/x", 50, (1,))
    assert [(o, t) for o, t, _ in maps] == [
        ("b.conv1.weight", "model/x/layer_with_weights-0/kernel"),
        ("b.bn1.weight", "model/x/layer_with_weights-1/gamma"), ("b.bn1.bias", "model/x/layer_with_weights-1/beta"),
        ("b.bn1.running_mean", "model/x/layer_with_weights-1/moving_mean"),
        ("b.bn1.running_var", "model/x/layer_with_weights-1/moving_variance")]


@pytest.mark.parametrize("config", ["faster_rcnn_resnet101_v1_640x640_coco17_tpu-8.config",
                                    "faster_rcnn_resnet152_v1_640x640_coco17_tpu-8.config",
                                    "faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config"])
def test_faster_rcnn_mapping_covers_every_tensor(compat_dir, config):
    """Without a TF checkpoint of these sizes: every odkit tensor has exactly one TF name, in the layout
    the ResNet-50 (+FPN) fixtures confirmed (tests/test_tf_parity_frcnn.py)."""
    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.tfcompat.mapping.faster_rcnn import tf_maps

    cfg = load(compat_dir / "tfod_configs" / config)
    model = build_model(cfg.model, is_training=False)
    maps = tf_maps(model, cfg.model, set())
    state = model.state_dict()
    odkit_names = [o for o, _, _ in maps]
    assert sorted(odkit_names) == sorted(k for k in state if not k.endswith("num_batches_tracked"))
    assert len({t for _, t, _ in maps}) == len(maps)
    for o, t, f in maps:  # layouts: the transform of a TF-shaped array has the odkit shape
        shape = tuple(state[o].shape)
        if len(shape) == 4:
            tf_shape = (shape[2], shape[3], shape[1], shape[0])  # HWIO
        elif len(shape) == 2:
            tf_shape = (shape[1], shape[0])  # dense [in, out]
        else:
            tf_shape = shape
        assert f(np.zeros(tf_shape, np.float32)).shape == shape, (o, t)
