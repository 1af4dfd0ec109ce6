"""`AnchorGenerator` proto -> `odkit.core.anchors` generator (TF OD API `anchor_generator_builder`).

`build(anchor_generator_config, where="anchor_generator")`; grid, ssd, multiscale and flexible grid
generators, TF defaults (empty scales / aspect_ratios in a grid generator mean (0.5, 1.0, 2.0)).
"""

from __future__ import annotations

from odkit.core import anchors
from odkit.errors import UnsupportedError


def build(config, where: str = "anchor_generator") -> anchors.AnchorGenerator:
    kind = config.WhichOneof("anchor_generator_oneof")
    if kind == "grid_anchor_generator":
        g = config.grid_anchor_generator
        return anchors.GridAnchorGenerator(
            scales=list(g.scales) or (0.5, 1.0, 2.0),
            aspect_ratios=list(g.aspect_ratios) or (0.5, 1.0, 2.0),
            base_anchor_size=(g.height, g.width),
            anchor_stride=(g.height_stride, g.width_stride),
            anchor_offset=(g.height_offset, g.width_offset),
        )
    if kind == "ssd_anchor_generator":
        g = config.ssd_anchor_generator
        strides = list(zip(g.height_stride, g.width_stride)) or None
        offsets = list(zip(g.height_offset, g.width_offset)) or None
        for name, pairs in (("stride", strides), ("offset", offsets)):
            hs, ws = getattr(g, f"height_{name}"), getattr(g, f"width_{name}")
            if len(hs) != len(ws) or (pairs and len(pairs) != g.num_layers):
                raise UnsupportedError(
                    f"height_{name} / width_{name} need one value per layer ({g.num_layers})",
                    where=f"{where}.ssd_anchor_generator",
                )
        if g.num_layers < 2 and not g.scales:
            raise UnsupportedError(
                "num_layers must be >= 2 unless scales are given",
                where=f"{where}.ssd_anchor_generator.num_layers",
            )
        return anchors.ssd_anchor_generator(
            num_layers=g.num_layers,
            min_scale=g.min_scale,
            max_scale=g.max_scale,
            scales=list(g.scales),
            aspect_ratios=list(g.aspect_ratios),
            interpolated_scale_aspect_ratio=g.interpolated_scale_aspect_ratio,
            base_anchor_size=(g.base_anchor_height, g.base_anchor_width),
            anchor_strides=strides,
            anchor_offsets=offsets,
            reduce_boxes_in_lowest_layer=g.reduce_boxes_in_lowest_layer,
        )
    if kind == "multiscale_anchor_generator":
        g = config.multiscale_anchor_generator
        if g.max_level < g.min_level:
            raise UnsupportedError(
                "max_level must be >= min_level", where=f"{where}.multiscale_anchor_generator"
            )
        return anchors.MultiscaleGridAnchorGenerator(
            min_level=g.min_level,
            max_level=g.max_level,
            anchor_scale=g.anchor_scale,
            aspect_ratios=list(g.aspect_ratios),
            scales_per_octave=g.scales_per_octave,
            normalize_coordinates=g.normalize_coordinates,
        )
    if kind == "flexible_grid_anchor_generator":
        g = config.flexible_grid_anchor_generator
        grids = list(g.anchor_grid)
        for i, grid in enumerate(grids):
            if len(grid.base_sizes) != len(grid.aspect_ratios):
                raise UnsupportedError(
                    "base_sizes and aspect_ratios must have the same length",
                    where=f"{where}.flexible_grid_anchor_generator.anchor_grid[{i}]",
                )
        return anchors.FlexibleGridAnchorGenerator(
            base_sizes=[list(x.base_sizes) for x in grids],
            aspect_ratios=[list(x.aspect_ratios) for x in grids],
            anchor_strides=[(x.height_stride, x.width_stride) for x in grids],
            anchor_offsets=[(x.height_offset, x.width_offset) for x in grids],
            normalize_coordinates=g.normalize_coordinates,
        )
    raise UnsupportedError(
        f"anchor generator {kind or '(empty)'} is not supported",
        where=where,
        hint="use grid/ssd/multiscale/flexible_grid anchor generator",
    )
