"""Mask R-CNN pieces against the TF OD API itself: `reframe_box_masks_to_image_masks` (float bilinear and uint8
nearest, boxes partly outside the image and sub-pixel boxes) and the Keras `MaskRCNNMaskHead` (automatic conv
depth, batch norm with non-trivial statistics, both upsampling modes) with TF's weights.

Fixture: `$ODKIT_TFOD_FIXTURES/maskrcnn_pieces/pieces.npz`, written by `make_mask_pieces.py` (kept next to it)
with the TF venv (see ../shared/tools/tfod_reference/README.md); skipped without it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from odkit.masks import reframe_box_masks_to_image_masks


@pytest.fixture(scope="module")
def pieces() -> dict[str, np.ndarray]:
    root = os.environ.get("ODKIT_TFOD_FIXTURES")
    path = Path(root) / "maskrcnn_pieces" / "pieces.npz" if root else None
    if path is None or not path.is_file():
        pytest.skip("no maskrcnn_pieces fixture (set ODKIT_TFOD_FIXTURES, see the docstring)")
    return dict(np.load(path))


def test_reframe_equals_tf(pieces):
    got = reframe_box_masks_to_image_masks(pieces["reframe_masks"], pieces["reframe_boxes"], 23, 31)
    ref = pieces["reframe_float"]
    assert got.dtype == np.float32
    # same float32 formula in the TF kernel's order: measured max difference 0 or a few ulps
    assert np.abs(got - ref).max() <= 1e-6, np.abs(got - ref).max()
    got8 = reframe_box_masks_to_image_masks(pieces["reframe_u8_in"], pieces["reframe_boxes"], 23, 31)
    np.testing.assert_array_equal(got8, pieces["reframe_u8"])


@pytest.mark.parametrize("up", [0, 1])
def test_mask_head_equals_tf(pieces, up):
    from odkit.builders.hyperparams_builder import build_conv_hyperparams
    from odkit.models.faster_rcnn_heads import MaskRCNNMaskHead
    from odkit.protos import hyperparams_pb2

    hp = build_conv_hyperparams(text_format.Parse(
        "op: CONV regularizer { l2_regularizer { weight: 0.0 } } "
        "initializer { truncated_normal_initializer { stddev: 0.3 } } "
        "batch_norm { decay: 0.997 epsilon: 0.001 scale: true center: true }", hyperparams_pb2.Hyperparams()), "hp")
    head = MaskRCNNMaskHead(16, 3, hp, mask_height=10, mask_width=10, num_conv_layers=3, conv_depth=0,
                            convolve_then_upsample=bool(up)).eval()
    tf_vars = {k.split("|", 1)[1]: v for k, v in pieces.items() if k.startswith(f"head{up}_var")}

    def conv(module: torch.nn.Module, name: str) -> None:
        module.weight.data = torch.from_numpy(tf_vars[f"{name}|kernel"]).permute(3, 2, 0, 1).contiguous()
        if module.bias is not None:
            module.bias.data = torch.from_numpy(tf_vars[f"{name}|bias"])

    def bn(module: torch.nn.Module, name: str) -> None:
        module.weight.data = torch.from_numpy(tf_vars[f"{name}|gamma"])
        module.bias.data = torch.from_numpy(tf_vars[f"{name}|beta"])
        module.running_mean.data = torch.from_numpy(tf_vars[f"{name}|moving_mean"])
        module.running_var.data = torch.from_numpy(tf_vars[f"{name}|moving_variance"])

    for i, block in enumerate(head.convs):
        conv(block[0], f"MaskPredictor_conv2d_{i}")
        bn(block[1], f"MaskPredictor_batchnorm_{i}")
    if up:
        conv(head.upsample_conv[0], "MaskPredictor_upsample_conv2d")
        bn(head.upsample_conv[1], "MaskPredictor_upsample_batchnorm")
    conv(head.last, "MaskPredictor_last_conv2d")
    with torch.no_grad():
        out = head(torch.from_numpy(pieces["head_features"]).permute(0, 3, 1, 2))
    ref = pieces[f"head{up}_output"][:, 0]  # TF [N, 1, classes, h, w]
    assert out.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert float(np.abs(out.numpy() - ref).max()) <= 1e-5 * scale, float(np.abs(out.numpy() - ref).max()) / scale
