"""Backbones and necks: feature strides, depths, parameter counts, TF padding."""

from __future__ import annotations

import torch

from odkit.models.backbones.efficientnet import EfficientNetBackbone
from odkit.models.backbones.mobilenet_v1 import MobileNetV1Backbone
from odkit.models.backbones.mobilenet_v2 import EXPAND13, MobileNetV2Backbone
from odkit.models.backbones.resnet import ResNetBackbone
from odkit.models.hyperparams import BatchNormParams, ConvHyperparams, SameConv2d
from odkit.models.necks.bifpn import BiFPN
from odkit.models.necks.fpn import FPN
from odkit.models.necks.ssd_layers import SSDExtraLayers

HP = ConvHyperparams(activation="RELU_6", batch_norm=BatchNormParams(scale=True))


def _shapes(feats: dict[int, torch.Tensor]) -> dict[int, tuple[int, ...]]:
    return {k: tuple(v.shape[1:]) for k, v in feats.items()}


def test_mobilenet_v1_levels_and_params():
    net = MobileNetV1Backbone(HP, depth_multiplier=1.0, min_depth=8).eval()
    # MobileNet v1 (1.0) without the classifier has 3.21M parameters (Howard et al. 4.2M incl. 1.02M fc)
    convs = sum(p.numel() for n, p in net.named_parameters() if "layers" in n and p.dim() == 4)
    assert abs(convs / 1e6 - 3.2) < 0.03
    with torch.no_grad():
        f = net(torch.zeros(1, 3, 96, 96))
    assert _shapes(f) == {2: (128, 24, 24), 3: (256, 12, 12), 4: (512, 6, 6), 5: (1024, 3, 3)}
    small = MobileNetV1Backbone(HP, depth_multiplier=0.25, min_depth=16)
    assert small.out_channels == {2: 32, 3: 64, 4: 128, 5: 256}


def test_mobilenet_v2_levels_fpnlite_and_expand13():
    net = MobileNetV2Backbone(1.0, last_conv_depth=256, want_expand13=True).eval()
    with torch.no_grad():
        f = net(torch.zeros(1, 3, 64, 64))
    assert _shapes(f) == {2: (24, 16, 16), 3: (32, 8, 8), 4: (96, 4, 4), 5: (256, 2, 2), EXPAND13: (576, 4, 4)}  # TF: level 4 = block_12_add


def test_resnet_and_efficientnet_levels():
    r = ResNetBackbone(50).eval()
    e = EfficientNetBackbone(0).eval()
    with torch.no_grad():
        fr = r(torch.zeros(1, 3, 64, 64))
        fe = e(torch.zeros(1, 3, 64, 64))
    assert _shapes(fr) == {2: (256, 16, 16), 3: (512, 8, 8), 4: (1024, 4, 4), 5: (2048, 2, 2)}
    assert _shapes(fe) == {3: (40, 8, 8), 4: (112, 4, 4), 5: (320, 2, 2)}


def test_fpn_levels_and_odd_sizes():
    chans = {2: 8, 3: 16, 4: 32, 5: 64}
    fpn = FPN(chans, 3, 7, 24, HP, use_depthwise=True).eval()
    feats = {2: torch.randn(1, 8, 20, 20), 3: torch.randn(1, 16, 10, 10), 4: torch.randn(1, 32, 5, 5),
             5: torch.randn(1, 64, 3, 3)}
    with torch.no_grad():
        outs = fpn(feats)
    assert [tuple(o.shape[1:]) for o in outs] == [(24, 10, 10), (24, 5, 5), (24, 3, 3), (24, 2, 2), (24, 1, 1)]
    # the coarsest backbone level is the 1x1 projection only (TF): no smoothing conv for level 5
    assert set(fpn.smooth.keys()) == {"3", "4"}


def test_bifpn_shapes_and_weights():
    net = BiFPN({3: 40, 4: 112, 5: 320}, 3, 7, 2, 16, ConvHyperparams(activation="SWISH",
                batch_norm=BatchNormParams(scale=True))).eval()
    feats = {3: torch.randn(1, 40, 16, 16), 4: torch.randn(1, 112, 8, 8), 5: torch.randn(1, 320, 4, 4)}
    with torch.no_grad():
        outs = net(feats)
    assert [tuple(o.shape[1:]) for o in outs] == [(16, 16, 16), (16, 8, 8), (16, 4, 4), (16, 2, 2), (16, 1, 1)]
    # TF node config order: levels 6, 7 from level 5, then per iteration 4 top-down + 4 bottom-up nodes
    names = [n.name for n in net.nodes]
    assert names[:2] == ["0_up_lvl_6", "0_up_lvl_7"] and len(names) == 2 + 2 * 8
    assert names[2:10] == ["1_dn_lvl_6", "1_dn_lvl_5", "1_dn_lvl_4", "1_dn_lvl_3",
                           "1_up_lvl_4", "1_up_lvl_5", "1_up_lvl_6", "1_up_lvl_7"]
    # input order as TF: [same level from the previous iteration, (top-down node,) previous node]
    entries = ["0_up_lvl_3", "0_up_lvl_4", "0_up_lvl_5", *names]
    by_name = {n.name: [entries[i] for i in n.inputs] for n in net.nodes}
    assert by_name["1_dn_lvl_6"] == ["0_up_lvl_6", "0_up_lvl_7"]
    assert by_name["1_up_lvl_4"] == ["0_up_lvl_4", "1_dn_lvl_4", "1_dn_lvl_3"]
    assert by_name["1_up_lvl_7"] == ["0_up_lvl_7", "1_up_lvl_6"]
    assert by_name["2_dn_lvl_3"] == ["1_dn_lvl_3", "2_dn_lvl_4"]
    # backbone maps are always projected (TF: their channel count is unknown), BiFPN maps only when it differs
    assert all(isinstance(r.project, torch.nn.Sequential) for r in net.nodes[0].resample)
    assert isinstance(net.nodes[1].resample[0].project, torch.nn.Identity)
    # fast attention: relu(w) / (sum relu(w) + 1e-4)
    node = net.nodes[2]
    with torch.no_grad():
        node.weights.copy_(torch.tensor([2.0, -1.0]))
        node.conv = None
        a, b = torch.randn(1, 16, 2, 2), torch.randn(1, 16, 1, 1)
        node.resample[1].project = torch.nn.Identity()
        node.resample[0].project = torch.nn.Identity()
        out = node([a, b])
    assert torch.allclose(out, a * 2.0 / 2.0001, atol=1e-6)


def test_efficientnet_is_tf_keras_efficientnet():
    # the Keras EfficientNet's weighted layers per variant (TF: len([l for l in model.layers if l.weights]))
    counts = {0: 131, 1: 185, 2: 185, 3: 209, 4: 257, 5: 311, 6: 359, 7: 437}
    for variant in (0, 3):
        net = EfficientNetBackbone(variant)
        layers = net.tf_weight_layers()
        assert len(layers) == counts[variant]
        assert [n for n, _ in layers[:3]] == ["stem_conv2d", "stem_bn", "stack_0/block_0/depthwise_conv2d"]
    b0 = EfficientNetBackbone(0)
    assert sum(p.numel() for p in b0.parameters()) == 5288548  # Keras EfficientNet-B0 incl. top and logits
    bn = b0.stem.bn
    assert bn.eps == 1e-3 and abs(bn.momentum - 0.01) < 1e-9
    # TF endpoints are fixed block positions: B7's level 3 is stack_2/block_1, not the end of stack 2
    b7 = EfficientNetBackbone(7)
    assert b7.out_channels == {3: 80, 4: 224, 5: 640}
    ends = {lvl: b7.blocks[i].spec.name for i, lvl in b7._endpoints.items()}
    assert ends == {3: "stack_2/block_1", 4: "stack_4/block_2", 5: "stack_6/block_0"}
    # the held classification tail is frozen and never run
    assert not any(p.requires_grad for m in b7.unused_modules() for p in m.parameters())
    # stride-2 convs pad like TF SAME (bottom/right heavy)
    assert b0.stem.conv._dynamic


def test_ssd_extra_layers_depths():
    extra = SSDExtraLayers([32, 64], [512, 256, 256, 128], HP, depth_multiplier=0.5, min_depth=16).eval()
    assert extra.out_channels == [32, 64, 256, 128, 128, 64]
    outs = extra([torch.randn(1, 32, 8, 8), torch.randn(1, 64, 4, 4)])
    assert [o.shape[-1] for o in outs] == [8, 4, 2, 1, 1, 1]


def test_same_padding_matches_tf_output_size():
    # TF "SAME": out = ceil(in / stride), extra padding at the bottom/right
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x).detach()
    assert y.shape[-2:] == (2, 2)
    # TF pads 0 on top/left and 1 on bottom/right for in=4, k=3, s=2: first window covers rows/cols 0..2
    assert float(y[0, 0, 0, 0]) == float(x[0, 0, :3, :3].sum())
    assert float(y[0, 0, 1, 1]) == float(x[0, 0, 2:, 2:].sum())
