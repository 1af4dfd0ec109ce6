"""Instance masks through the data pipeline: tf.Example PNG / dense round trips, decoder errors, every
geometric augmentation moves masks as it moves boxes (property test), the input pipeline's resize / pad."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from odkit.data.example import decode_detection_example, encode_detection_example, encode_from
from odkit.errors import DataError
from odkit.inputs.augment import crop, geometric
from odkit.inputs.augment.sample import make_sample


def _jpeg(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _record(masks: np.ndarray, mask_format: str = "png") -> bytes:
    n, h, w = masks.shape
    boxes = np.tile(np.array([[0.1, 0.1, 0.6, 0.7]], np.float32), (n, 1))
    return encode_detection_example(_jpeg(h, w), format="jpeg", height=h, width=w, boxes=boxes,
                                    labels=np.ones(n, np.int64), masks=masks, mask_format=mask_format)


@pytest.mark.parametrize("fmt,mask_type", [("png", "PNG_MASKS"), ("numerical", "NUMERICAL_MASKS")])
def test_mask_round_trip(fmt, mask_type):
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 17, 23)) > 0.6).astype(np.uint8)
    ex = decode_detection_example(_record(masks, fmt), load_instance_masks=True, mask_type=mask_type)
    assert ex.masks.dtype == np.uint8 and ex.masks.shape == (3, 17, 23)
    np.testing.assert_array_equal(ex.masks, masks)
    again = decode_detection_example(encode_from(ex), load_instance_masks=True, mask_type="PNG_MASKS")
    np.testing.assert_array_equal(again.masks, masks)
    # not asked for: masks are ignored (TF), not an error
    assert decode_detection_example(_record(masks, fmt)).masks is None
    assert ex.select(np.array([True, False, True])).masks.shape == (2, 17, 23)


def test_png_masks_with_values_above_one_and_palette():
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 2:4] = 255
    from odkit.data.image_io import decode_mask_png

    buf = io.BytesIO()
    Image.fromarray(m).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_mask_png(buf.getvalue()), (m > 0).astype(np.uint8))
    pal = Image.fromarray((m > 0).astype(np.uint8) * 3, mode="L").convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    np.testing.assert_array_equal(decode_mask_png(buf.getvalue()), (m > 0).astype(np.uint8))


def test_mask_decoder_errors():
    masks = np.ones((2, 8, 8), np.uint8)
    with pytest.raises(DataError, match="mask_type is NUMERICAL_MASKS"):
        decode_detection_example(_record(masks, "png"), load_instance_masks=True, mask_type="NUMERICAL_MASKS")
    with pytest.raises(DataError, match="PNG_MASKS"):
        decode_detection_example(_record(masks, "numerical"), load_instance_masks=True, mask_type="PNG_MASKS")
    no_masks = encode_detection_example(_jpeg(8, 8), format="jpeg", height=8, width=8,
                                        boxes=[[0, 0, 1, 1]], labels=[1])
    with pytest.raises(DataError, match="no image/object/mask"):
        decode_detection_example(no_masks, load_instance_masks=True, mask_type="PNG_MASKS")
    from odkit.data.example import build_example, detection_features, mask_features, serialize

    feats = detection_features(_jpeg(8, 8), format="jpeg", height=8, width=8, boxes=[[0, 0, 1, 1]] * 2,
                               labels=[1, 1])
    feats.update(mask_features(np.ones((3, 8, 8), np.uint8)))
    with pytest.raises(DataError, match="3 masks for 2 boxes"):
        decode_detection_example(serialize(build_example(feats)), load_instance_masks=True, mask_type="PNG_MASKS")
    feats.update(mask_features(np.ones((2, 8, 9), np.uint8)))
    with pytest.raises(DataError, match="9x8"):
        decode_detection_example(serialize(build_example(feats)), load_instance_masks=True, mask_type="PNG_MASKS")


OPS = [
    ("random_horizontal_flip", lambda s, r: geometric.random_horizontal_flip(s, r, 1.0), 0),
    ("random_vertical_flip", lambda s, r: geometric.random_vertical_flip(s, r, 1.0), 0),
    ("random_rotation90", lambda s, r: geometric.random_rotation90(s, r, 1.0), 0),
    ("random_crop_image", lambda s, r: crop.random_crop_image(s, r, 0.0, overlap_thresh=0.0), 0),
    ("random_crop_pad_image", lambda s, r: crop.random_crop_pad_image(s, r, 0.0, overlap_thresh=0.0), 0),
    ("random_crop_to_aspect_ratio", lambda s, r: crop.random_crop_to_aspect_ratio(s, r, 1.0, 0.0), 0),
    ("random_pad_to_aspect_ratio", lambda s, r: crop.random_pad_to_aspect_ratio(s, r, 2.0), 0),
    ("ssd_random_crop", lambda s, r: crop.ssd_random_crop(s, r), 0),
    ("random_pad_image", lambda s, r: geometric.random_pad_image(s, r), 0),
    ("random_absolute_pad_image", lambda s, r: geometric.random_absolute_pad_image(s, r, 20, 30), 0),
    ("random_self_concat_image", lambda s, r: geometric.random_self_concat_image(s, r, 1.0, 1.0), 0),
    ("random_image_scale", lambda s, r: geometric.random_image_scale(s, r, 0.5, 2.0), 2),
    ("resize_image", lambda s, r: geometric.resize_image(s, r, 37, 53), 2),
    ("random_scale_crop_and_pad_to_square",
     lambda s, r: geometric.random_scale_crop_and_pad_to_square(s, r, 64, 0.5, 1.5), 2),
    # TF copies [yc - size//2, yc + size//2) into a size x size canvas: odd sizes lose the last row / column
    # of pixels while the box frame keeps it (the mask follows the pixels)
    ("random_square_crop_by_scale", lambda s, r: geometric.random_square_crop_by_scale(s, r, 0.6, 1.3, 16), 1),
]


@pytest.mark.parametrize("name,op,tol", OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("seed", range(4))
def test_augmentations_move_masks_as_boxes(name, op, tol, seed):
    """Each object's mask is its box's pixel rectangle; after the op the mask's extent is the box again."""
    g = np.random.default_rng(seed)
    h, w = int(g.integers(30, 60)), int(g.integers(30, 60))
    n = 3
    boxes_px = []
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        y0, x0 = int(g.integers(0, h - 8)), int(g.integers(0, w - 8))
        y1, x1 = int(g.integers(y0 + 4, h + 1)), int(g.integers(x0 + 4, w + 1))
        masks[i, y0:y1, x0:x1] = 1
        boxes_px.append([y0 / h, x0 / w, y1 / h, x1 / w])
    image = torch.from_numpy(g.integers(0, 255, (3, h, w), dtype=np.uint8))
    s = make_sample(image, torch.tensor(boxes_px), torch.arange(1, n + 1), masks=torch.from_numpy(masks))
    s = op(s, random.Random(seed))
    H, W = s.height, s.width
    m = s.fields["masks"]
    assert m.shape == (s.boxes.shape[0], H, W) and m.dtype == torch.uint8
    for i in range(s.boxes.shape[0]):
        ys, xs = torch.nonzero(m[i], as_tuple=True)
        b = s.boxes[i].clamp(0, 1) * torch.tensor([H, W, H, W])
        if ys.numel() == 0:  # a box squeezed below one pixel by a downscale
            assert float((b[2] - b[0]) * (b[3] - b[1])) < (tol + 1) ** 2 * 4
            continue
        extent = torch.tensor([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], dtype=torch.float32)
        assert torch.allclose(extent, b, atol=tol + 1e-3), (name, i, extent.tolist(), b.tolist())


def test_input_transform_resizes_and_pads_masks():
    from google.protobuf import text_format

    from odkit.inputs.dataset import InputTransform
    from odkit.inputs.resizers import build_image_resizer
    from odkit.protos import image_resizer_pb2

    proto = text_format.Parse(
        "keep_aspect_ratio_resizer { min_dimension: 32 max_dimension: 48 pad_to_max_dimension: true }",
        image_resizer_pb2.ImageResizer(),
    )
    resizer = build_image_resizer(proto)
    t = InputTransform(resizer, load_masks=True)
    masks = torch.zeros((1, 40, 20), dtype=torch.uint8)
    masks[0, 10:30, 5:15] = 1
    out = t(torch.zeros((3, 40, 20), dtype=torch.uint8), torch.tensor([[0.25, 0.25, 0.75, 0.75]]),
            torch.tensor([1]), torch.tensor([1.0]), random.Random(0), masks=masks)
    assert out["masks"].shape == (1, 48, 48) and out["image"].shape[-2:] == (48, 48)
    ys, xs = torch.nonzero(out["masks"][0], as_tuple=True)
    b = out["boxes"][0] * 48
    assert torch.allclose(torch.tensor([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]).float(), b, atol=1.01)
