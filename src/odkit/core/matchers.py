"""Matchers (TF OD API `matchers/*`), batched over padded groundtruth.

`matcher.match(similarity [B, N, M], valid_rows [B, N] bool | None) -> matches int64 [B, M]`:
rows are groundtruth, columns anchors; value >= 0 is the matched row, -1 unmatched (negative),
-2 ignored (TF `Match` convention). Invalid (padding) rows never match. An unbatched `[N, M]`
similarity gives `[M]`.

- `ArgMaxMatcher(matched_threshold=0.5, unmatched_threshold=None, negatives_lower_than_unmatched=True,
  force_match_for_each_row=False, use_matmul_gather=False)`; matched_threshold None matches every
  column to its best row.
- `BipartiteMatcher(use_matmul_gather=False)`: greedy bipartite matching (TF
  `GreedyBipartiteMatcher`), one column per valid row.

Helpers: `gather_based_on_match(values [B, N, ...], matches [B, M], unmatched_value, ignored_value)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

UNMATCHED = -1
IGNORED = -2


def _batched(similarity: Tensor, valid_rows: Tensor | None) -> tuple[Tensor, Tensor, bool]:
    unbatched = similarity.dim() == 2
    if unbatched:
        similarity = similarity.unsqueeze(0)
        valid_rows = valid_rows.unsqueeze(0) if valid_rows is not None else None
    if valid_rows is None:
        valid_rows = torch.ones(similarity.shape[:2], dtype=torch.bool, device=similarity.device)
    return similarity, valid_rows.to(torch.bool), unbatched


class Matcher:
    def match(self, similarity: Tensor, valid_rows: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    __call__ = match


class ArgMaxMatcher(Matcher):
    """TF `ArgMaxMatcher` semantics (thresholds, negatives_lower_than_unmatched, force_match_for_each_row)."""

    def __init__(
        self,
        matched_threshold: float | None = 0.5,
        unmatched_threshold: float | None = None,
        negatives_lower_than_unmatched: bool = True,
        force_match_for_each_row: bool = False,
        use_matmul_gather: bool = False,
    ) -> None:
        if matched_threshold is None and unmatched_threshold is not None:
            raise ValueError("unmatched_threshold needs matched_threshold")
        if unmatched_threshold is None:
            unmatched_threshold = matched_threshold
        elif matched_threshold is not None and unmatched_threshold > matched_threshold:
            raise ValueError("unmatched_threshold must be <= matched_threshold")
        self.matched_threshold = matched_threshold
        self.unmatched_threshold = unmatched_threshold
        self.negatives_lower_than_unmatched = negatives_lower_than_unmatched
        self.force_match_for_each_row = force_match_for_each_row
        self.use_matmul_gather = use_matmul_gather  # accepted; gathers are index based either way

    def match(self, similarity: Tensor, valid_rows: Tensor | None = None) -> Tensor:
        sim, valid, unbatched = _batched(similarity, valid_rows)
        b, n, m = sim.shape
        if n == 0:
            out = torch.full((b, m), UNMATCHED, dtype=torch.int64, device=sim.device)
            return out[0] if unbatched else out
        neg_inf = torch.finfo(sim.dtype).min
        masked = torch.where(valid.unsqueeze(-1), sim, torch.full_like(sim, neg_inf))
        matched_vals, matches = masked.max(dim=1)
        any_valid = valid.any(dim=1, keepdim=True)
        if self.matched_threshold is not None:
            below = matched_vals < self.unmatched_threshold
            between = (matched_vals >= self.unmatched_threshold) & (matched_vals < self.matched_threshold)
            if self.negatives_lower_than_unmatched:
                matches = torch.where(below, torch.full_like(matches, UNMATCHED), matches)
                matches = torch.where(between, torch.full_like(matches, IGNORED), matches)
            else:
                matches = torch.where(below, torch.full_like(matches, IGNORED), matches)
                matches = torch.where(between, torch.full_like(matches, UNMATCHED), matches)
        if self.force_match_for_each_row:
            col_ids = masked.argmax(dim=2)  # [B, N] best anchor per row
            # TF: argmax over rows of the one-hot indicators of the valid rows' best columns, i.e. the first
            # valid row that picked a column; a scatter of row ids with amin, not an [B, N, M] argmax
            rows = torch.arange(n, device=sim.device).expand(b, n)
            rows = torch.where(valid, rows, torch.full_like(rows, n))
            force_row = torch.full((b, m), n, dtype=torch.int64, device=sim.device)
            force_row.scatter_reduce_(1, col_ids, rows, reduce="amin")
            matches = torch.where(force_row < n, force_row, matches)
        matches = torch.where(any_valid, matches, torch.full_like(matches, UNMATCHED))
        return matches[0] if unbatched else matches


class BipartiteMatcher(Matcher):
    """Greedy bipartite matching: repeatedly take the globally most similar free (row, column) pair."""

    def __init__(self, use_matmul_gather: bool = False) -> None:
        self.use_matmul_gather = use_matmul_gather

    def match(self, similarity: Tensor, valid_rows: Tensor | None = None) -> Tensor:
        sim, valid, unbatched = _batched(similarity, valid_rows)
        b, n, m = sim.shape
        matches = torch.full((b, m), UNMATCHED, dtype=torch.int64, device=sim.device)
        if n == 0 or m == 0:
            return matches[0] if unbatched else matches
        neg_inf = torch.finfo(sim.dtype).min
        work = torch.where(valid.unsqueeze(-1), sim, torch.full_like(sim, neg_inf)).clone()
        batch_idx = torch.arange(b, device=sim.device)
        for _ in range(min(n, m)):  # loop over match rounds, vectorised over the batch
            flat = work.reshape(b, -1)
            best, pos = flat.max(dim=1)
            row = pos // m
            col = pos % m
            ok = best > neg_inf
            cur = matches[batch_idx, col]
            matches[batch_idx, col] = torch.where(ok, row, cur)
            row_fill = torch.where(
                ok.view(b, 1),
                torch.full((b, m), neg_inf, device=sim.device, dtype=sim.dtype),
                work[batch_idx, row],
            )
            work[batch_idx, row] = row_fill
            col_fill = torch.where(
                ok.view(b, 1),
                torch.full((b, n), neg_inf, device=sim.device, dtype=sim.dtype),
                work[batch_idx, :, col],
            )
            work[batch_idx, :, col] = col_fill
        return matches[0] if unbatched else matches


def gather_based_on_match(
    values: Tensor, matches: Tensor, unmatched_value: Tensor | float, ignored_value: Tensor | float
) -> Tensor:
    """`values [B, N, ...]` gathered by `matches [B, M]` -> `[B, M, ...]`; -1 / -2 get the given values.

    One row gather from [values; unmatched; ignored] (rows of the trailing dims stay contiguous), instead of
    an element-wise gather and two full-size selects: the same values, a fraction of the time for the
    [B, anchors, classes] class targets.
    """
    b, m = matches.shape
    n = values.shape[1]
    extra = values.shape[2:]
    fill = [torch.as_tensor(v, dtype=values.dtype, device=values.device).expand(b, 1, *extra)
            for v in (unmatched_value, ignored_value)]
    table = torch.cat([values, *fill], dim=1).reshape(b * (n + 2), -1)  # [B * (N + 2), prod(extra)]
    idx = torch.where(matches >= 0, matches, torch.where(matches == UNMATCHED, n, n + 1))
    idx = idx + torch.arange(b, device=matches.device).unsqueeze(1) * (n + 2)
    return table.index_select(0, idx.reshape(-1)).view(b, m, *extra)
