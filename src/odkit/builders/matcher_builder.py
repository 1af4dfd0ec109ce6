"""`Matcher` proto -> `odkit.core.matchers` matcher (TF OD API `matcher_builder`)."""

from __future__ import annotations

from odkit.core import matchers
from odkit.errors import UnsupportedError


def build(config, where: str = "matcher") -> matchers.Matcher:
    kind = config.WhichOneof("matcher_oneof")
    if kind == "argmax_matcher":
        m = config.argmax_matcher
        matched = unmatched = None
        if not m.ignore_thresholds:
            matched, unmatched = float(m.matched_threshold), float(m.unmatched_threshold)
            if unmatched > matched:
                raise UnsupportedError(
                    f"unmatched_threshold {unmatched} is above matched_threshold {matched}",
                    where=f"{where}.argmax_matcher",
                    hint="set unmatched_threshold <= matched_threshold",
                )
        return matchers.ArgMaxMatcher(
            matched_threshold=matched,
            unmatched_threshold=unmatched,
            negatives_lower_than_unmatched=m.negatives_lower_than_unmatched,
            force_match_for_each_row=m.force_match_for_each_row,
        )  # use_matmul_gather: accepted without effect (odkit.config.support.ACCEPTED)
    if kind == "bipartite_matcher":
        return matchers.BipartiteMatcher()  # use_matmul_gather: accepted without effect
    raise UnsupportedError(
        f"matcher {kind or '(empty)'} is not supported",
        where=where,
        hint="use argmax_matcher or bipartite_matcher",
    )
