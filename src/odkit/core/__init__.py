"""Stateless detection pieces shared by SSD and Faster R-CNN (TF OD API `core/`, `anchor_generators/`,
`box_coders/`, `matchers/`). Boxes are `[ymin, xmin, ymax, xmax]` float32; every module documents its API
in its docstring: box_ops, anchors, box_coders, similarity, matchers, target_assigner, losses, samplers,
post_processing.
"""
