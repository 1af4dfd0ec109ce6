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

`inception_resnet_v2_keras_layers(part)`: the TF OD API Keras Inception-ResNet-v2
(`models/keras_models/inception_resnet_v2.py`) in Keras' functional order, part "proposal" (stem ..
block17_20) or "box_classifier" (mixed_7a .. conv_7b, N restarting at 0): Keras orders layers by depth
from the output, ties in creation order; inside a mixed / block module that is every branch's conv_bn
layers sorted by their distance to the concatenation (conv 3 * (n - i) + 3, batch norm one less, i-th of
n conv_bn in the branch), ties in creation (branch, position) order, then the block's up-projection conv.
(Checked layer by layer against `model.layers` of TF's `FasterRCNNInceptionResnetV2KerasFeatureExtractor`.)
odkit side: `odkit.models.backbones.inception_resnet_v2.InceptionResNetV2` (ConvBN = [conv, bn, relu]).
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


def _branch_module(prefix: str, branches: list[list[str]], up: str | None = None) -> list[tuple[str, str]]:
    """Keras order of a concat module: branches = lists of ConvBN module paths (creation order)."""
    items = []
    order = 0
    for branch in branches:
        n = len(branch)
        for i, path in enumerate(branch, 1):
            dist = 3 * (n - i) + 3
            items.append((-dist, order, f"{prefix}{path}.0", "conv"))
            items.append((-(dist - 1), order, f"{prefix}{path}.1", "bn"))
            order += 1
    out = [(path, kind) for _, _, path, kind in sorted(items, key=lambda t: (t[0], t[2].endswith(".1"), t[1]))]
    if up is not None:
        out.append((f"{prefix}{up}", "conv_bias"))
    return out


def _block(prefix: str, kind: str) -> list[tuple[str, str]]:
    if kind == "block35":
        branches = [["branches.0"], ["branches.1.0", "branches.1.1"], ["branches.2.0", "branches.2.1", "branches.2.2"]]
    else:
        branches = [["branches.0"], ["branches.1.0", "branches.1.1", "branches.1.2"]]
    return _branch_module(prefix, branches, "up")


def inception_resnet_v2_keras_layers(part: str) -> list[tuple[str, str]]:
    """[(odkit module path relative to the backbone, "conv" | "bn" | "conv_bias")] in layer_with_weights order."""
    out: list[tuple[str, str]] = []
    if part == "proposal":
        for i in (0, 1, 2, 4, 5):
            out += [(f"stem.{i}.0", "conv"), (f"stem.{i}.1", "bn")]
        out += _branch_module("mixed_5b.", [["b0"], ["b1.0", "b1.1"], ["b2.0", "b2.1", "b2.2"], ["b3"]])
        out += [x for i in range(10) for x in _block(f"block35.{i}.", "block35")]
        out += _branch_module("mixed_6a.", [["b0"], ["b1.0", "b1.1", "b1.2"]])
        out += [x for i in range(20) for x in _block(f"block17.{i}.", "block17")]
    elif part == "box_classifier":
        out += _branch_module("mixed_7a.", [["b0.0", "b0.1"], ["b1.0", "b1.1"], ["b2.0", "b2.1", "b2.2"]])
        out += [x for i in range(10) for x in _block(f"block8.{i}.", "block8")]
        out += [("conv_7b.0", "conv"), ("conv_7b.1", "bn")]
    else:
        raise ValueError(part)
    return out


def inception_resnet_v2_keras_maps(odkit_prefix: str, tf_prefix: str, part: str) -> list[Map]:
    """(odkit state_dict name, TF variable name, transform); batch norms have no gamma (scale=False): the
    odkit weight is filled with ones."""
    from odkit.tfcompat.mapping.transforms import ones_like

    maps: list[Map] = []
    for n, (path, kind) in enumerate(inception_resnet_v2_keras_layers(part)):
        tf = f"{tf_prefix}/layer_with_weights-{n}"
        if kind == "bn":
            maps.append((f"{odkit_prefix}{path}.weight", f"{tf}/moving_variance", ones_like))
            maps += [(f"{odkit_prefix}{path}.{o}", f"{tf}/{t}", identity) for t, o in BN_LEAVES[1:]]
        else:
            maps += _conv(odkit_prefix + path, tf)
            if kind == "conv_bias":
                maps.append((f"{odkit_prefix}{path}.bias", f"{tf}/bias", identity))
    return maps
