"""`Hyperparams` proto -> `odkit.models.hyperparams.ConvHyperparams` (TF OD API hyperparams_builder semantics).

Honoured: activation (NONE/RELU/RELU_6/SWISH), regularizer.l2_regularizer.weight, initializer
(truncated_normal / random_normal / variance_scaling), batch_norm and sync_batch_norm (decay, epsilon, center,
scale, train; sync is treated as batch_norm on one process), force_use_bias, op (CONV / FC: the same
parameters apply to conv and fully connected layers).
Refused: l1_regularizer, group_norm, keras_initializer_by_name.
"""

from __future__ import annotations

from odkit.errors import UnsupportedError
from odkit.models.hyperparams import BatchNormParams, ConvHyperparams, Initializer

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_6", 3: "SWISH"}
_MODES = {0: "FAN_IN", 1: "FAN_OUT", 2: "FAN_AVG"}


def build_conv_hyperparams(proto, where: str = "conv_hyperparams") -> ConvHyperparams:
    """Build conv hyperparameters from an `odkit.protos.Hyperparams` message (None -> TF defaults)."""
    if proto is None:
        return ConvHyperparams()
    activation = _ACTIVATIONS.get(int(proto.activation), "RELU")
    l2 = 0.0
    if proto.HasField("regularizer"):
        kind = proto.regularizer.WhichOneof("regularizer_oneof")
        if kind == "l1_regularizer":
            raise UnsupportedError("l1_regularizer is not supported", where=f"{where}.regularizer",
                                   hint="use l2_regularizer")
        if kind == "l2_regularizer":
            l2 = float(proto.regularizer.l2_regularizer.weight)
    init = Initializer()
    if proto.HasField("initializer"):
        kind = proto.initializer.WhichOneof("initializer_oneof")
        if kind == "truncated_normal_initializer":
            p = proto.initializer.truncated_normal_initializer
            init = Initializer("truncated_normal", mean=p.mean, stddev=p.stddev)
        elif kind == "random_normal_initializer":
            p = proto.initializer.random_normal_initializer
            init = Initializer("random_normal", mean=p.mean, stddev=p.stddev)
        elif kind == "variance_scaling_initializer":
            p = proto.initializer.variance_scaling_initializer
            init = Initializer("variance_scaling", factor=p.factor, mode=_MODES.get(int(p.mode), "FAN_IN"),
                               uniform=p.uniform)
        elif kind == "keras_initializer_by_name":
            raise UnsupportedError("keras_initializer_by_name is not supported",
                                   where=f"{where}.initializer", hint="use a truncated/random normal or "
                                   "variance_scaling initializer")
    bn = None
    norm = proto.WhichOneof("normalizer_oneof")
    if norm in ("batch_norm", "sync_batch_norm"):
        p = getattr(proto, norm)
        bn = BatchNormParams(decay=p.decay, epsilon=p.epsilon, center=p.center, scale=p.scale, train=p.train)
    elif norm == "group_norm":
        raise UnsupportedError("group_norm is not supported", where=f"{where}.group_norm",
                               hint="use batch_norm")
    return ConvHyperparams(activation=activation, l2_weight=l2, initializer=init, batch_norm=bn,
                           force_use_bias=bool(proto.force_use_bias))
