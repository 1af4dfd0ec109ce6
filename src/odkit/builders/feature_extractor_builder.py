"""`SsdFeatureExtractor` proto -> `odkit.models.ssd_feature_extractors.SSDFeatureExtractor`."""

from __future__ import annotations

from odkit.builders.hyperparams_builder import build_conv_hyperparams
from odkit.config.validate import FPN_BACKBONE_LEVELS, FPN_EXTRACTOR_DEFAULT_LEVELS, pyramid_levels
from odkit.errors import UnsupportedError
from odkit.models.necks.bifpn import COMBINE_METHODS
from odkit.models.ssd_feature_extractors import BiFpnParams, FpnParams, create_ssd_feature_extractor


def build_ssd_feature_extractor(proto, *, freeze_batchnorm: bool = False,
                                where: str = "model.ssd.feature_extractor"):
    """Build from `model.ssd.feature_extractor` (TF OD API field names and defaults)."""
    if proto.replace_preprocessor_with_placeholder:
        raise UnsupportedError("replace_preprocessor_with_placeholder is not supported",
                               where=f"{where}.replace_preprocessor_with_placeholder")
    if "batch_norm_trainable" in proto.DESCRIPTOR.fields_by_name and proto.HasField("batch_norm_trainable"):
        # deprecated TF1 field: false freezes the extractor's batch norm statistics
        freeze_batchnorm = freeze_batchnorm or not proto.batch_norm_trainable
    hp = build_conv_hyperparams(proto.conv_hyperparams if proto.HasField("conv_hyperparams") else None,
                                where=f"{where}.conv_hyperparams")
    fpn = bifpn = None
    pyramid = proto.WhichOneof("feature_pyramid_oneof")
    if pyramid == "bifpn":
        b = proto.bifpn
        if b.combine_method not in COMBINE_METHODS:
            raise UnsupportedError(f"bifpn combine_method {b.combine_method!r} is not supported",
                                   where=f"{where}.bifpn.combine_method", substitute="fast_attention",
                                   hint=f"use one of {', '.join(COMBINE_METHODS)}")
        bifpn = BiFpnParams(b.min_level, b.max_level, b.num_iterations, b.num_filters, b.combine_method)
    elif pyramid == "fpn" or "fpn" in proto.type:
        # levels: odkit.config.validate.pyramid_levels (the fpn block's, else TF's extractor defaults 3..7),
        # checked against the backbone's levels when the config is loaded
        levels = pyramid_levels(proto, "ssd") or FPN_EXTRACTOR_DEFAULT_LEVELS["ssd"]
        depth = proto.fpn.additional_layer_depth if pyramid == "fpn" else FpnParams.additional_layer_depth
        fpn = FpnParams(levels[0], levels[1], depth)
    if fpn is not None and not (FPN_BACKBONE_LEVELS[0] <= fpn.min_level <= FPN_BACKBONE_LEVELS[1]
                                and fpn.min_level <= fpn.max_level):
        raise UnsupportedError(f"fpn levels {fpn.min_level}..{fpn.max_level} are not supported",
                               where=f"{where}.fpn", hint="use 2 <= min_level <= 5 and min_level <= max_level")
    return create_ssd_feature_extractor(
        proto.type, hp, depth_multiplier=proto.depth_multiplier, min_depth=proto.min_depth,
        pad_to_multiple=proto.pad_to_multiple, use_explicit_padding=proto.use_explicit_padding,
        use_depthwise=proto.use_depthwise,
        override_base_hyperparams=proto.override_base_feature_extractor_hyperparams,
        fpn=fpn, bifpn=bifpn, freeze_batchnorm=freeze_batchnorm, num_layers=proto.num_layers, where=where)
