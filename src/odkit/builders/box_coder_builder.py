"""`BoxCoder` proto -> `odkit.core.box_coders` coder (TF OD API `box_coder_builder`)."""

from __future__ import annotations

from odkit.core import box_coders
from odkit.errors import UnsupportedError


def build(config, where: str = "box_coder") -> box_coders.BoxCoder:
    kind = config.WhichOneof("box_coder_oneof")
    if kind == "faster_rcnn_box_coder":
        c = config.faster_rcnn_box_coder
        scales = [c.y_scale, c.x_scale, c.height_scale, c.width_scale]
        if any(s <= 0 for s in scales):
            raise UnsupportedError("scales must be > 0", where=f"{where}.faster_rcnn_box_coder")
        return box_coders.FasterRcnnBoxCoder(scales)
    if kind == "mean_stddev_box_coder":
        if config.mean_stddev_box_coder.stddev <= 0:
            raise UnsupportedError("stddev must be > 0", where=f"{where}.mean_stddev_box_coder.stddev")
        return box_coders.MeanStddevBoxCoder(config.mean_stddev_box_coder.stddev)
    if kind == "square_box_coder":
        c = config.square_box_coder
        scales = [c.y_scale, c.x_scale, c.length_scale]
        if any(s <= 0 for s in scales):
            raise UnsupportedError("scales must be > 0", where=f"{where}.square_box_coder")
        return box_coders.SquareBoxCoder(scales)
    if kind == "keypoint_box_coder":
        raise UnsupportedError(
            "keypoint_box_coder is not supported (odkit has no keypoint heads)",
            where=f"{where}.keypoint_box_coder",
            hint="use faster_rcnn_box_coder",
        )
    raise UnsupportedError(
        f"box coder {kind or '(empty)'} is not supported",
        where=where,
        hint="use faster_rcnn_box_coder, mean_stddev_box_coder or square_box_coder",
    )
