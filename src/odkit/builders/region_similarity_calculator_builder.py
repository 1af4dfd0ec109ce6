"""`RegionSimilarityCalculator` proto -> `odkit.core.similarity` calculator (TF OD API builder)."""

from __future__ import annotations

from odkit.core import similarity
from odkit.errors import UnsupportedError


def build(config, where: str = "similarity_calculator") -> similarity.RegionSimilarityCalculator:
    kind = config.WhichOneof("region_similarity")
    if kind == "iou_similarity":
        return similarity.IouSimilarity()
    if kind == "ioa_similarity":
        return similarity.IoaSimilarity()
    if kind == "neg_sq_dist_similarity":
        return similarity.NegSqDistSimilarity()
    if kind == "thresholded_iou_similarity":
        return similarity.ThresholdedIouSimilarity(config.thresholded_iou_similarity.iou_threshold)
    raise UnsupportedError(
        f"similarity calculator {kind or '(empty)'} is not supported",
        where=where,
        hint="use iou_similarity, ioa_similarity, neg_sq_dist_similarity or thresholded_iou_similarity",
    )
