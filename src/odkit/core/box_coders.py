"""Box coders (TF OD API `box_coders/*`): `encode(boxes, anchors)` / `decode(rel_codes, anchors)`.

Both take tensors broadcastable to `[..., 4]` (boxes/anchors) and `[..., code_size]` (codes), in
`[ymin, xmin, ymax, xmax]` order; anchors usually `[A, 4]` against `[B, A, 4]` boxes.

- `FasterRcnnBoxCoder(scale_factors=(10, 10, 5, 5) or None)`: codes `[ty, tx, th, tw]`, code_size 4.
- `MeanStddevBoxCoder(stddev=0.01)`: `(boxes - anchors) / stddev` on corners, code_size 4.
- `SquareBoxCoder(scale_factors=None)`: codes `[ty, tx, tl]` with `l = sqrt(h * w)`, code_size 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from odkit.core.box_ops import from_center_size, to_center_size

EPSILON = 1e-8


class BoxCoder:
    """Base class: `code_size`, `encode`, `decode`."""

    code_size: int = 4

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, rel_codes: Tensor, anchors: Tensor) -> Tensor:
        raise NotImplementedError


class FasterRcnnBoxCoder(BoxCoder):
    """TF `FasterRcnnBoxCoder`: epsilon-guarded log size ratios, optional per-coordinate scaling."""

    code_size = 4

    def __init__(self, scale_factors: Sequence[float] | None = None) -> None:
        if scale_factors is not None:
            if len(scale_factors) != 4:
                raise ValueError("FasterRcnnBoxCoder needs 4 scale factors")
            if any(s <= 0 for s in scale_factors):
                raise ValueError("FasterRcnnBoxCoder scale factors must be > 0")
        self.scale_factors = tuple(float(s) for s in scale_factors) if scale_factors else None

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        ya, xa, ha, wa = to_center_size(anchors)
        y, x, h, w = to_center_size(boxes)
        ha = ha + EPSILON
        wa = wa + EPSILON
        h = h + EPSILON
        w = w + EPSILON
        ty = (y - ya) / ha
        tx = (x - xa) / wa
        th = torch.log(h / ha)
        tw = torch.log(w / wa)
        codes = torch.stack([ty, tx, th, tw], dim=-1)
        if self.scale_factors:
            codes = codes * codes.new_tensor(self.scale_factors)
        return codes

    def decode(self, rel_codes: Tensor, anchors: Tensor) -> Tensor:
        ya, xa, ha, wa = to_center_size(anchors)
        if self.scale_factors:
            rel_codes = rel_codes / rel_codes.new_tensor(self.scale_factors)
        ty, tx, th, tw = rel_codes.unbind(-1)
        w = torch.exp(tw) * wa
        h = torch.exp(th) * ha
        yc = ty * ha + ya
        xc = tx * wa + xa
        return from_center_size(yc, xc, h, w)


class MeanStddevBoxCoder(BoxCoder):
    """TF `MeanStddevBoxCoder`: corner offsets divided by `stddev`."""

    code_size = 4

    def __init__(self, stddev: float = 0.01) -> None:
        if stddev <= 0:
            raise ValueError("MeanStddevBoxCoder stddev must be > 0")
        self.stddev = float(stddev)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        return (boxes - anchors) / self.stddev

    def decode(self, rel_codes: Tensor, anchors: Tensor) -> Tensor:
        return rel_codes * self.stddev + anchors


class SquareBoxCoder(BoxCoder):
    """TF `SquareBoxCoder`: square boxes of side `sqrt(h*w)`; codes `[ty, tx, tl]`."""

    code_size = 3

    def __init__(self, scale_factors: Sequence[float] | None = None) -> None:
        if scale_factors is not None:
            if len(scale_factors) != 3:
                raise ValueError("SquareBoxCoder needs 3 scale factors")
            if any(s <= 0 for s in scale_factors):
                raise ValueError("SquareBoxCoder scale factors must be > 0")
        self.scale_factors = tuple(float(s) for s in scale_factors) if scale_factors else None

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        ya, xa, ha, wa = to_center_size(anchors)
        la = torch.sqrt(ha * wa) + EPSILON
        y, x, h, w = to_center_size(boxes)
        length = torch.sqrt(h * w) + EPSILON
        codes = torch.stack([(y - ya) / la, (x - xa) / la, torch.log(length / la)], dim=-1)
        if self.scale_factors:
            codes = codes * codes.new_tensor(self.scale_factors)
        return codes

    def decode(self, rel_codes: Tensor, anchors: Tensor) -> Tensor:
        ya, xa, ha, wa = to_center_size(anchors)
        la = torch.sqrt(ha * wa)
        if self.scale_factors:
            rel_codes = rel_codes / rel_codes.new_tensor(self.scale_factors)
        ty, tx, tl = rel_codes.unbind(-1)
        length = torch.exp(tl) * la
        return from_center_size(ty * la + ya, tx * la + xa, length, length)
