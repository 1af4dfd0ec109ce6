"""conv_hyperparams -> layers: batch norm, activation, initializers, TF l2 regularization, freezing."""

from __future__ import annotations

import math

import pytest
import torch
from google.protobuf import text_format
from torch import nn

from odkit.builders.hyperparams_builder import build_conv_hyperparams
from odkit.errors import UnsupportedError
from odkit.models.base import DetectionModel
from odkit.models.hyperparams import ConvBnAct, FrozenStatsBatchNorm2d, freeze_batch_norm, init_weight
from odkit.protos import hyperparams_pb2

TEXT = """
activation: RELU_6
regularizer { l2_regularizer { weight: 0.0004 } }
initializer { truncated_normal_initializer { mean: 0.0 stddev: 0.03 } }
batch_norm { decay: 0.997 scale: true epsilon: 0.001 }
"""


def _hp(text: str):
    return build_conv_hyperparams(text_format.Parse(text, hyperparams_pb2.Hyperparams()))


def test_build_from_proto_and_layers():
    hp = _hp(TEXT)
    assert hp.activation == "RELU_6" and math.isclose(hp.l2_weight, 0.0004, rel_tol=1e-6)
    assert hp.batch_norm is not None and hp.batch_norm.scale and hp.batch_norm.center
    assert not hp.use_bias
    block = ConvBnAct(8, 16, 3, hp)
    conv, bn, act = block
    assert conv.bias is None
    assert math.isclose(bn.momentum, 0.003, rel_tol=1e-4) and math.isclose(bn.eps, 0.001, rel_tol=1e-4)
    assert isinstance(act, nn.ReLU6)
    w = conv.weight.detach()
    assert w.abs().max() <= 2 * 0.03 + 1e-6  # truncated at 2 stddev
    assert 0.02 < float(w.std()) < 0.035


def test_defaults_and_no_batch_norm_uses_bias():
    hp = _hp("activation: SWISH")
    assert hp.batch_norm is None and hp.use_bias and hp.l2_weight == 0.0
    block = ConvBnAct(4, 4, 1, hp)
    assert block[0].bias is not None and isinstance(block[1], nn.SiLU)
    # TF default batch norm: scale false -> gamma fixed at 1, not trained
    hp2 = _hp("batch_norm {}")
    bn = ConvBnAct(4, 4, 1, hp2)[1]
    assert not bn.weight.requires_grad and bn.bias.requires_grad
    assert math.isclose(bn.momentum, 0.001, rel_tol=1e-4)


def test_variance_scaling_uniform():
    hp = _hp("initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_IN } }")
    w = torch.empty(64, 32, 3, 3)
    init_weight(w, hp.initializer)
    limit = math.sqrt(3.0 / (32 * 9))
    assert float(w.abs().max()) <= limit + 1e-6 and float(w.abs().max()) > 0.9 * limit


def test_refused_fields():
    with pytest.raises(UnsupportedError, match="l1_regularizer"):
        _hp("regularizer { l1_regularizer { weight: 0.1 } }")
    with pytest.raises(UnsupportedError, match="group_norm"):
        _hp("group_norm {}")


def test_l2_regularization_is_tf_semantics():
    class Tiny(DetectionModel):
        def __init__(self):
            super().__init__()
            self.block = ConvBnAct(2, 3, 1, _hp(TEXT))

    m = Tiny()
    w = m.block[0].weight
    expected = 0.5 * 0.0004 * float((w.detach() ** 2).sum())
    assert math.isclose(float(m.regularization_loss().detach()), expected, rel_tol=1e-5)


def test_freeze_batch_norm_keeps_statistics():
    block = ConvBnAct(3, 4, 1, _hp(TEXT))
    freeze_batch_norm(block)
    bn = block[1]
    assert isinstance(bn, FrozenStatsBatchNorm2d)
    block.train()
    assert not bn.training
    before = bn.running_mean.clone()
    block(torch.randn(2, 3, 5, 5) + 3.0)
    assert torch.equal(before, bn.running_mean)
