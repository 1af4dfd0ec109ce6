"""SSD name mapping: TF OD API Keras `SSDMetaArch` object paths -> odkit `SSDMetaArch` state_dict names.

TF object paths (``tf.train.Checkpoint(model=detection_model)``, the TF2 zoo's ckpt-0), under ``model/``:

Feature extractor ``_feature_extractor/``
- ``classification_backbone/layer_with_weights-N/...``: the Keras backbone's N-th layer that owns weights,
  in Keras' functional order. MobileNet v1/v2: network order (conv, its batch norm, ...), so N walks
  odkit's backbone convs/batch norms in module order. ResNet v1: `backbones.resnet_v1_keras_layers`.
- FPN (``_fpn_features_generator/``, `KerasFpnTopDownFeatureMaps`): ``top_layers/0`` (1x1 projection of the
  coarsest backbone level), ``residual_blocks/i/0`` (1x1 lateral of the i-th level going down),
  ``conv_layers/i/{k, k+1}`` (3x3 smoothing conv, SeparableConv2D with use_depthwise, + batch norm; k = 1
  when use_explicit_padding puts a padding Lambda first, else 0) -> `FPN.lateral` / `FPN.smooth`;
  ``_coarse_feature_layers/j/{k, k+1}`` (stride-2 conv blocks above level 5) -> `FPN.coarse`.
- non-FPN MobileNet (``feature_map_generator/convolutions/i/...``, `KerasMultiResolutionFeatureMaps`): for
  each extra map i >= 2: [1x1 conv, bn, act, (padding Lambda), 3x3 s2 conv, bn, act] or, with use_depthwise,
  [.., depthwise 3x3 s2, bn, act, 1x1 conv, bn, act] -> `SSDExtraLayers.blocks[i-2]`.

Box predictor ``_box_predictor/``
- weight shared (`WeightSharedConvolutionalBoxPredictor`): shared tower convs
  ``_head_scope_conv_layers/{PredictionTower|BoxPredictionTower|ClassPredictionTower}/i``; their per-level
  batch norms ``_base_tower_layers_for_heads/{box_encodings|class_predictions_with_background}/L/(3i+1)``;
  projections ``_additional_projection_layers/L/{0 conv, 1 bn}``; heads
  ``_box_prediction_head/_box_encoder_layers/0`` and
  ``_prediction_heads/class_predictions_with_background/_class_predictor_layers/0``.
- convolutional (`ConvolutionalBoxPredictor`): ``_shared_nets/L/{3j conv, 3j+1 bn}``; per-level heads
  ``_prediction_heads/box_encodings/L/_box_encoder_layers/...`` and
  ``_prediction_heads/class_predictions_with_background/L/_class_predictor_layers/...`` ([Dropout when
  use_dropout], conv; with use_depthwise: depthwise, bn, act, 1x1 conv).

Layouts: Conv2D kernel HWIO -> OIHW; DepthwiseConv2D / SeparableConv2D depthwise kernel (H, W, C, 1) ->
(C, 1, H, W); batch norm gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var
(epsilon is not stored: it comes from the config, as in TF).
"""

from __future__ import annotations

from torch import nn

from odkit.models.heads.convolutional import ConvolutionalBoxPredictor
from odkit.models.heads.weight_shared import WeightSharedConvolutionalBoxPredictor
from odkit.models.necks.fpn import FPN
from odkit.tfcompat.mapping.backbones import resnet_v1_keras_maps
from odkit.tfcompat.mapping.plan import Transform
from odkit.tfcompat.mapping.transforms import conv_kernel, depthwise_kernel, identity

Triple = tuple[str, str, Transform]
ROOT = "model"
FE = f"{ROOT}/_feature_extractor"
BP = f"{ROOT}/_box_predictor"
BN_LEAVES = (
    ("gamma", "weight"),
    ("beta", "bias"),
    ("moving_mean", "running_mean"),
    ("moving_variance", "running_var"),
)


def _ones_like(a):
    import numpy as np

    return np.ones_like(a)


def _zeros_like(a):
    import numpy as np

    return np.zeros_like(a)


def is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels


def conv_maps(conv: nn.Conv2d, odkit: str, tf: str) -> list[Triple]:
    """A Keras Conv2D / DepthwiseConv2D at ``tf`` -> the torch conv at ``odkit``."""
    if is_depthwise(conv):
        out = [(f"{odkit}.weight", f"{tf}/depthwise_kernel", depthwise_kernel)]
    else:
        out = [(f"{odkit}.weight", f"{tf}/kernel", conv_kernel)]
    if conv.bias is not None:
        out.append((f"{odkit}.bias", f"{tf}/bias", identity))
    return out


def separable_maps(
    depthwise: nn.Conv2d, pointwise: nn.Conv2d, dw_odkit: str, pw_odkit: str, tf: str
) -> list[Triple]:
    """A Keras SeparableConv2D at ``tf`` -> odkit's depthwise conv + 1x1 conv pair."""
    out = [
        (f"{dw_odkit}.weight", f"{tf}/depthwise_kernel", depthwise_kernel),
        (f"{pw_odkit}.weight", f"{tf}/pointwise_kernel", conv_kernel),
    ]
    if depthwise.bias is not None:
        raise ValueError(f"{dw_odkit}: a SeparableConv2D has no depthwise bias")
    if pointwise.bias is not None:
        out.append((f"{pw_odkit}.bias", f"{tf}/bias", identity))
    return out


def bn_maps(odkit: str, tf: str, tf_names: set[str] | None = None) -> list[Triple]:
    """Keras BatchNormalization -> torch BatchNorm2d. Without gamma (scale: false) the weight is filled with
    ones, without beta (center: false) the bias with zeros (TF's constants)."""
    out = []
    for tf_leaf, torch_leaf in BN_LEAVES:
        name = f"{tf}/{tf_leaf}"
        if tf_names is not None and name not in tf_names and tf_leaf in ("gamma", "beta"):
            out.append(
                (
                    f"{odkit}.{torch_leaf}",
                    f"{tf}/moving_variance",
                    _ones_like if tf_leaf == "gamma" else _zeros_like,
                )
            )
        else:
            out.append((f"{odkit}.{torch_leaf}", name, identity))
    return out


def layer_maps(module: nn.Module, odkit: str, tf: str, tf_names: set[str]) -> list[Triple]:
    if isinstance(module, nn.BatchNorm2d):
        return bn_maps(odkit, tf, tf_names)
    if isinstance(module, nn.Conv2d):
        return conv_maps(module, odkit, tf)
    raise TypeError(f"{odkit}: no TF layer for {type(module).__name__}")


def conv_block_maps(block: nn.Module, odkit: str, tf: str, first: int, tf_names: set[str]) -> list[Triple]:
    """odkit ConvBnAct [conv, bn, act] or SeparableConv [dw, pw, bn, act] -> TF [.., conv, bn, act] from
    index ``first`` (TF `create_conv_block` / the extra-layer lists)."""
    convs = [(i, m) for i, m in enumerate(block) if isinstance(m, nn.Conv2d)]
    norms = [(i, m) for i, m in enumerate(block) if isinstance(m, nn.BatchNorm2d)]
    out: list[Triple] = []
    if len(convs) == 2:
        (i, dw), (j, pw) = convs
        out += separable_maps(dw, pw, f"{odkit}.{i}", f"{odkit}.{j}", f"{tf}/{first}")
    else:
        ((i, conv),) = convs
        out += conv_maps(conv, f"{odkit}.{i}", f"{tf}/{first}")
    for i, _bn in norms:
        out += bn_maps(f"{odkit}.{i}", f"{tf}/{first + 1}", tf_names)
    return out


def weighted_layers(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """(name, module) of every conv and batch norm under ``module`` in module order."""
    return [
        (f"{prefix}{n}", m) for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]


def sequential_backbone_maps(backbone: nn.Module, odkit: str, tf: str, tf_names: set[str]) -> list[Triple]:
    """Keras functional backbones whose weighted layers come in network order (MobileNet v1/v2)."""
    out: list[Triple] = []
    for n, (name, m) in enumerate(weighted_layers(backbone, odkit)):
        out += layer_maps(m, name, f"{tf}/layer_with_weights-{n}", tf_names)
    return out


# ----------------------------------------------------------------------------------------------- extractor


def backbone_maps(fe, tf_names: set[str]) -> list[Triple]:
    odkit = "feature_extractor.backbone."
    tf = f"{FE}/classification_backbone"
    name = fe.type_name
    if name.startswith("ssd_resnet"):
        return list(resnet_v1_keras_maps(odkit, tf, fe.backbone.depth, (1, 2, 3, 4, 5)))
    if name.startswith("ssd_mobilenet"):
        return sequential_backbone_maps(fe.backbone, odkit, tf, tf_names)
    raise NotImplementedError(f"no TF backbone mapping for {name}")


def fpn_maps(neck, tf_names: set[str], explicit_padding: bool) -> list[Triple]:
    odkit = "feature_extractor.neck"
    gen = f"{FE}/_fpn_features_generator"
    levels = neck.levels
    k = 1 if explicit_padding else 0
    top = levels[-1]
    out = conv_maps(neck.lateral[str(top)], f"{odkit}.lateral.{top}", f"{gen}/top_layers/0")
    for i, lvl in enumerate(reversed(levels[:-1])):
        out += conv_maps(neck.lateral[str(lvl)], f"{odkit}.lateral.{lvl}", f"{gen}/residual_blocks/{i}/0")
        out += conv_block_maps(
            neck.smooth[str(lvl)], f"{odkit}.smooth.{lvl}", f"{gen}/conv_layers/{i}", k, tf_names
        )
    for j, block in enumerate(neck.coarse):
        out += conv_block_maps(block, f"{odkit}.coarse.{j}", f"{FE}/_coarse_feature_layers/{j}", k, tf_names)
    return out


def extra_layers_maps(extra, tf_names: set[str], explicit_padding: bool) -> list[Triple]:
    odkit = "feature_extractor.neck.extra.blocks"
    out: list[Triple] = []
    for j, block in enumerate(extra.blocks):
        tf = f"{FE}/feature_map_generator/convolutions/{j + 2}"
        out += conv_block_maps(block[0], f"{odkit}.{j}.0", tf, 0, tf_names)
        down = block[1]
        k = 4 if explicit_padding else 3
        if isinstance(down[0], nn.Conv2d):  # ConvBnAct 3x3 s2
            out += conv_block_maps(down, f"{odkit}.{j}.1", tf, k, tf_names)
        else:  # depthwise ConvBnAct + 1x1 ConvBnAct
            out += conv_block_maps(down[0], f"{odkit}.{j}.1.0", tf, k, tf_names)
            out += conv_block_maps(down[1], f"{odkit}.{j}.1.1", tf, k + 3, tf_names)
    return out


def feature_extractor_maps(model, model_config, tf_names: set[str]) -> list[Triple]:
    fe = model.feature_extractor
    proto = model_config.ssd.feature_extractor
    out = backbone_maps(fe, tf_names)
    if isinstance(fe.neck, FPN):
        explicit = bool(proto.use_explicit_padding) and not fe.type_name.startswith("ssd_resnet")
        out += fpn_maps(fe.neck, tf_names, explicit)
    else:
        out += extra_layers_maps(fe.neck.extra, tf_names, bool(proto.use_explicit_padding))
    return out


# ----------------------------------------------------------------------------------------------- predictors


def _shared_conv_maps(conv: nn.Module, odkit: str, tf: str) -> list[Triple]:
    if isinstance(conv, nn.Sequential):  # separable: depthwise + pointwise
        return separable_maps(conv[0], conv[1], f"{odkit}.0", f"{odkit}.1", tf)
    return conv_maps(conv, odkit, tf)


def weight_shared_predictor_maps(
    bp, tf_names: set[str], odkit: str = "box_predictor", tf: str = BP
) -> list[Triple]:
    """`WeightSharedConvolutionalBoxPredictor` (also EfficientDet's) -> TF Keras names."""
    out: list[Triple] = []
    for level, proj in enumerate(bp.project):
        if isinstance(proj, nn.Identity):
            continue
        if isinstance(proj, nn.Sequential):
            out += conv_maps(
                proj[0], f"{odkit}.project.{level}.0", f"{tf}/_additional_projection_layers/{level}/0"
            )
            out += bn_maps(
                f"{odkit}.project.{level}.1", f"{tf}/_additional_projection_layers/{level}/1", tf_names
            )
        else:
            out += conv_maps(
                proj, f"{odkit}.project.{level}", f"{tf}/_additional_projection_layers/{level}/0"
            )
    shared = bp.class_tower is None
    towers = [("box_tower", "PredictionTower" if shared else "BoxPredictionTower", "box_encodings")]
    if not shared:
        towers.append(("class_tower", "ClassPredictionTower", "class_predictions_with_background"))
    for attr, scope, head in towers:
        tower = getattr(bp, attr)
        for i, conv in enumerate(tower.convs):
            out += _shared_conv_maps(
                conv, f"{odkit}.{attr}.convs.{i}", f"{tf}/_head_scope_conv_layers/{scope}/{i}"
            )
            for level, norm in enumerate(tower.norms[i]):
                if isinstance(norm, nn.BatchNorm2d):
                    out += bn_maps(
                        f"{odkit}.{attr}.norms.{i}.{level}",
                        f"{tf}/_base_tower_layers_for_heads/{head}/{level}/{3 * i + 1}",
                        tf_names,
                    )
    out += _shared_conv_maps(
        bp.box_head, f"{odkit}.box_head", f"{tf}/_box_prediction_head/_box_encoder_layers/0"
    )
    out += _shared_conv_maps(
        bp.class_head,
        f"{odkit}.class_head",
        f"{tf}/_prediction_heads/class_predictions_with_background/_class_predictor_layers/0",
    )
    return out


def _head_maps(head: nn.Module, odkit: str, tf: str, first: int, tf_names: set[str]) -> list[Triple]:
    """A convolutional-predictor head: conv, or [ConvBnAct(depthwise), 1x1 conv] -> TF [dw, bn, act, conv]."""
    if isinstance(head, nn.Conv2d):
        return conv_maps(head, odkit, f"{tf}/{first}")
    dw_block, pw = head[0], head[1]
    return conv_block_maps(dw_block, f"{odkit}.0", tf, first, tf_names) + conv_maps(
        pw, f"{odkit}.1", f"{tf}/{first + 3}"
    )


def convolutional_predictor_maps(bp, proto, tf_names: set[str]) -> list[Triple]:
    out: list[Triple] = []
    heads = f"{BP}/_prediction_heads"
    dropout_slot = 1 if proto.use_dropout else 0
    for level, tower in enumerate(bp.towers):
        for j, block in enumerate(tower):
            out += conv_block_maps(
                block, f"box_predictor.towers.{level}.{j}", f"{BP}/_shared_nets/{level}", 3 * j, tf_names
            )
        out += _head_maps(
            bp.box_heads[level],
            f"box_predictor.box_heads.{level}",
            f"{heads}/box_encodings/{level}/_box_encoder_layers",
            0,
            tf_names,
        )
        cls = bp.class_heads[level]
        cls_name = f"box_predictor.class_heads.{level}"
        if isinstance(cls, nn.Sequential) and isinstance(cls[0], nn.Dropout):
            cls, cls_name = cls[1], f"{cls_name}.1"
        out += _head_maps(
            cls,
            cls_name,
            f"{heads}/class_predictions_with_background/{level}/_class_predictor_layers",
            dropout_slot,
            tf_names,
        )
    return out


def box_predictor_maps(model, model_config, tf_names: set[str]) -> list[Triple]:
    bp = model.box_predictor
    if isinstance(bp, WeightSharedConvolutionalBoxPredictor):
        return weight_shared_predictor_maps(bp, tf_names)
    if isinstance(bp, ConvolutionalBoxPredictor):
        return convolutional_predictor_maps(
            bp, model_config.ssd.box_predictor.convolutional_box_predictor, tf_names
        )
    raise NotImplementedError(f"no TF mapping for box predictor {type(bp).__name__}")


def tf_maps(model, model_config, tf_names: set[str]) -> list[Triple]:
    """(odkit name, TF name, transform) for every tensor of an SSD (MobileNet v1/v2, FPN, ResNet v1 FPN)."""
    return feature_extractor_maps(model, model_config, tf_names) + box_predictor_maps(
        model, model_config, tf_names
    )
