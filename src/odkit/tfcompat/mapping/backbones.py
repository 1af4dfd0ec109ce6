"""Shared backbone name mappings: TF OD API Keras backbones -> odkit backbone modules.

`resnet_v1_keras_maps(odkit_prefix, tf_prefix, depth, stages, first_index=0)`: the TF OD API Keras
ResNet v1 (`models/keras_models/resnet_v1.py`, tf.keras.applications layout, layer names
`conv1_conv`, `conv2_block1_0_conv`, ...) saved in an object-based checkpoint as
`<tf_prefix>/layer_with_weights-N/{kernel,gamma,beta,moving_mean,moving_variance}`, N counting the layers
that own weights in Keras' functional order:
stem: conv1_conv, conv1_bn; first block of a stage: 1_conv, 1_bn, 2_conv, 2_bn, 0_conv (shortcut), 3_conv,
0_bn, 3_bn; other blocks: 1_conv, 1_bn, 2_conv, 2_bn, 3_conv, 3_bn. (Checked against the `full_name` of every
variable in TF-written Faster R-CNN and SSD ResNet-50 checkpoints.) A sub-model that starts inside the
network (Faster R-CNN's box classifier = conv5) restarts N at `first_index` = 0.
odkit side: `odkit.models.backbones.resnet.ResNetBackbone` (torchvision names conv1, bn1, layerK.i.convJ,
layerK.i.bnJ, layerK.0.downsample.{0,1}); stage 1 = stem, stages 2..5 = layer1..layer4 (TF conv2..conv5).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from odkit.tfcompat.mapping.transforms import conv_kernel, identity

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BN_LEAVES = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
             ("moving_variance", "running_var"))

Map = tuple[str, str, "callable[[np.ndarray], np.ndarray]"]


def _conv(odkit: str, tf: str) -> list[Map]:
    return [(f"{odkit}.weight", f"{tf}/kernel", conv_kernel)]


def _bn(odkit: str, tf: str) -> list[Map]:
    return [(f"{odkit}.{o}", f"{tf}/{t}", identity) for t, o in BN_LEAVES]


def resnet_v1_keras_layers(depth: int, stages: Iterable[int]) -> list[tuple[str, str]]:
    """[(odkit module path relative to the backbone, "conv" | "bn")] in Keras layer_with_weights order."""
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"no ResNet v1 depth {depth}")
    out: list[tuple[str, str]] = []
    for stage in stages:
        if stage == 1:
            out += [("conv1", "conv"), ("bn1", "bn")]
            continue
        for i in range(RESNET_BLOCKS[depth][stage - 2]):
            b = f"layer{stage - 1}.{i}"
            out += [(f"{b}.conv1", "conv"), (f"{b}.bn1", "bn"), (f"{b}.conv2", "conv"), (f"{b}.bn2", "bn")]
            if i == 0:
                out += [(f"{b}.downsample.0", "conv"), (f"{b}.conv3", "conv"),
                        (f"{b}.downsample.1", "bn"), (f"{b}.bn3", "bn")]
            else:
                out += [(f"{b}.conv3", "conv"), (f"{b}.bn3", "bn")]
    return out


def resnet_v1_keras_maps(odkit_prefix: str, tf_prefix: str, depth: int, stages: Iterable[int],
                         first_index: int = 0) -> list[Map]:
    """(odkit state_dict name, TF variable name, transform) for the given ResNet stages (1 = stem .. 5)."""
    maps: list[Map] = []
    for n, (path, kind) in enumerate(resnet_v1_keras_layers(depth, stages), start=first_index):
        tf = f"{tf_prefix}/layer_with_weights-{n}"
        maps += _conv(odkit_prefix + path, tf) if kind == "conv" else _bn(odkit_prefix + path, tf)
    return maps
