"""COCO box and keypoint metrics, a vectorised re-implementation of pycocotools' COCOeval (iouType="bbox"
and iouType="keypoints": OKS with per-keypoint sigmas, top-20 detections, areas all / medium / large,
groundtruth without labelled keypoints ignored, pycocotools' summarizeKps).

Numbers are identical to pycocotools on the same annotations (tests/test_coco_metrics.py):
same IoU formula (crowd boxes: intersection over detection area), same greedy matching (gts
sorted non-ignored first, the last gt with the best IoU wins ties), same top-100 per
(image, category), same stable score ordering across images, same interpolated precision at
101 recall points, -1 where a category has no (non-ignored) groundtruth.

Inputs are flat numpy arrays in COCO conventions (absolute pixels, ``[x, y, w, h]``).
Matching runs in padded batches of (image, category) groups of similar size, one loop step per
detection rank, vectorised over groups and IoU thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")

# (TF OD API name, ap?, iou threshold or None, area label, max dets): pycocotools' summarize() order.
SUMMARY = (
    ("Precision/mAP", True, None, "all", 100),
    ("Precision/mAP@.50IOU", True, 0.5, "all", 100),
    ("Precision/mAP@.75IOU", True, 0.75, "all", 100),
    ("Precision/mAP (small)", True, None, "small", 100),
    ("Precision/mAP (medium)", True, None, "medium", 100),
    ("Precision/mAP (large)", True, None, "large", 100),
    ("Recall/AR@1", False, None, "all", 1),
    ("Recall/AR@10", False, None, "all", 10),
    ("Recall/AR@100", False, None, "all", 100),
    ("Recall/AR@100 (small)", False, None, "small", 100),
    ("Recall/AR@100 (medium)", False, None, "medium", 100),
    ("Recall/AR@100 (large)", False, None, "large", 100),
)
METRIC_PREFIX = "DetectionBoxes_"
MASK_METRIC_PREFIX = "DetectionMasks_"
COCO_METRIC_KEYS = tuple(METRIC_PREFIX + name for name, *_ in SUMMARY)

# pycocotools' keypoint Params and summarizeKps, with the TF OD API's names (COCO_KEYPOINT_METRIC_NAMES_AND_INDEX)
KEYPOINT_MAX_DETS = (20,)
KEYPOINT_AREA_RANGES = ((0.0, 1e5**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
KEYPOINT_AREA_LABELS = ("all", "medium", "large")
KEYPOINT_SUMMARY = (
    ("Precision/mAP", True, None, "all", 20),
    ("Precision/mAP@.50IOU", True, 0.5, "all", 20),
    ("Precision/mAP@.75IOU", True, 0.75, "all", 20),
    ("Precision/mAP (medium)", True, None, "medium", 20),
    ("Precision/mAP (large)", True, None, "large", 20),
    ("Recall/AR@1", False, None, "all", 20),
    ("Recall/AR@10", False, 0.5, "all", 20),
    ("Recall/AR@100", False, 0.75, "all", 20),
    ("Recall/AR@100 (medium)", False, None, "medium", 20),
    ("Recall/AR@100 (large)", False, None, "large", 20),
)
KEYPOINT_METRIC_PREFIX = "Keypoints_"
# pycocotools' default kpt_oks_sigmas (COCO's 17 person keypoints)
COCO_PERSON_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89,
                               .89]) / 10.0


@dataclass(frozen=True)
class EvalParams:
    """What differs between pycocotools' bbox and keypoint evaluation."""

    max_dets: tuple[int, ...] = MAX_DETS
    area_ranges: tuple[tuple[float, float], ...] = AREA_RANGES
    area_labels: tuple[str, ...] = AREA_LABELS
    summary: tuple[tuple[str, bool, float | None, str, int], ...] = SUMMARY


BOX_PARAMS = EvalParams()
KEYPOINT_PARAMS = EvalParams(KEYPOINT_MAX_DETS, KEYPOINT_AREA_RANGES, KEYPOINT_AREA_LABELS, KEYPOINT_SUMMARY)


@dataclass
class CocoGroundtruth:
    """Groundtruth annotations: one row per box (absolute pixels, xywh)."""

    image_ids: np.ndarray  # int64 [N]
    category_ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float64 [N, 4] x, y, w, h
    areas: np.ndarray  # float64 [N]
    iscrowd: np.ndarray  # bool [N]
    all_image_ids: np.ndarray  # int64: every evaluated image (also those without boxes)
    category_list: np.ndarray  # int64: every evaluated category id
    keypoints: np.ndarray | None = None  # float64 [N, K, 3] x, y, visibility (COCO's triples), for OKS
    num_keypoints: np.ndarray | None = None  # int64 [N] (COCO's num_keypoints; default: count of v > 0)
    masks: Sequence[dict] | None = None  # iouType "segm": one COCO RLE {"size": [h, w], "counts"} per row


@dataclass
class CocoDetections:
    """Detections: one row per box (absolute pixels, xywh)."""

    image_ids: np.ndarray  # int64 [D]
    category_ids: np.ndarray  # int64 [D]
    boxes: np.ndarray  # float64 [D, 4]
    scores: np.ndarray  # float64 [D]
    keypoints: np.ndarray | None = None  # float64 [D, K, 2 or 3] x, y (visibility unused by OKS)
    masks: Sequence[dict] | None = None  # iouType "segm": one COCO RLE per row (areas: the masks' areas)
    areas: np.ndarray | None = None  # float64 [D]; default box w * h (TF's COCOWrapper; pycocotools' loadRes
    # for keypoints uses the keypoints' extent: pass that here to reproduce it)


@dataclass
class CocoEvalResult:
    """pycocotools' ``eval`` arrays plus the 12 summary numbers."""

    precision: np.ndarray  # [T, R, K, A, M], -1 where undefined
    recall: np.ndarray  # [T, K, A, M]
    scores: np.ndarray  # [T, R, K, A, M] score at each recall threshold
    category_ids: np.ndarray  # [K]
    params: EvalParams = BOX_PARAMS
    stats: np.ndarray = field(init=False)  # [12] ([10] for keypoints)

    def __post_init__(self) -> None:
        self.stats = np.array([self._summarize(*spec[1:]) for spec in self.params.summary])

    def _summarize(self, ap: bool, iou: float | None, area: str, max_dets: int, k: int | None = None) -> float:
        a = self.params.area_labels.index(area)
        m = self.params.max_dets.index(max_dets)
        s = self.precision[:, :, :, a, m] if ap else self.recall[:, :, a, m]
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        if k is not None:
            s = s[:, :, k] if ap else s[:, k]
        valid = s[s > -1]
        return float(np.mean(valid)) if valid.size else -1.0

    def category_stats(self) -> np.ndarray:
        """[12, K]: the summary numbers per category (TF OD API's summarize_per_category)."""
        out = np.zeros((len(self.params.summary), len(self.category_ids)))
        for k in range(len(self.category_ids)):
            for i, spec in enumerate(self.params.summary):
                out[i, k] = self._summarize(*spec[1:], k=k)
        return out


def box_iou_xywh(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU as pycocotools' bbIou: dt [..., D, 4], gt [..., G, 4], crowd [..., G] -> [..., D, G]."""
    d = dt[..., :, None, :]
    g = gt[..., None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    da = d[..., 2] * d[..., 3]
    ga = g[..., 2] * g[..., 3]
    inter = w * h
    union = np.where(crowd[..., None, :], da, da + ga - inter)
    ok = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def keypoint_oks(dt_kp: np.ndarray, gt_kp: np.ndarray, gt_box: np.ndarray, gt_area: np.ndarray,
                 sigmas: np.ndarray) -> np.ndarray:
    """pycocotools' computeOks, batched: dt_kp [..., D, K, >=2] (x, y), gt_kp [..., G, K, 3], gt_box [..., G, 4]
    xywh, gt_area [..., G] -> OKS [..., D, G]. Groundtruth without labelled keypoints (v > 0) is scored by the
    distance outside its box doubled on every side, over all K keypoints."""
    variances = (np.asarray(sigmas, np.float64) * 2) ** 2
    xg, yg, vg = gt_kp[..., None, :, :, 0], gt_kp[..., None, :, :, 1], gt_kp[..., None, :, :, 2]  # [..., 1, G, K]
    xd, yd = dt_kp[..., :, None, :, 0], dt_kp[..., :, None, :, 1]  # [..., D, 1, K]
    labelled = vg > 0
    k1 = labelled.sum(-1, keepdims=True)  # [..., 1, G, 1]
    b = gt_box[..., None, :, None, :]
    x0, x1 = b[..., 0] - b[..., 2], b[..., 0] + b[..., 2] * 2
    y0, y1 = b[..., 1] - b[..., 3], b[..., 1] + b[..., 3] * 2
    zero = np.zeros(())
    dx = np.where(k1 > 0, xd - xg, np.maximum(zero, x0 - xd) + np.maximum(zero, xd - x1))
    dy = np.where(k1 > 0, yd - yg, np.maximum(zero, y0 - yd) + np.maximum(zero, yd - y1))
    e = (dx**2 + dy**2) / variances / (gt_area[..., None, :, None] + np.spacing(1)) / 2
    use = np.where(k1 > 0, labelled, True)
    n = np.where(k1[..., 0] > 0, k1[..., 0], e.shape[-1])
    return np.where(use, np.exp(-e), 0.0).sum(-1) / n


def _mask_ious(dt_masks: Sequence[dict], gt_masks: Sequence[dict], d_rows: np.ndarray, g_rows: np.ndarray,
               nd: np.ndarray, ng: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """[N, D, G] mask IoUs of padded groups (pycocotools maskUtils.iou; zeros in the padding)."""
    from faster_coco_eval.core import mask as mask_api

    out = np.zeros((d_rows.shape[0], d_rows.shape[1], g_rows.shape[1]))
    for i in range(d_rows.shape[0]):
        d = [dt_masks[int(j)] for j in d_rows[i, : nd[i]]]
        g = [gt_masks[int(j)] for j in g_rows[i, : ng[i]]]
        iou = np.asarray(mask_api.iou(d, g, [int(c) for c in crowd[i, : ng[i]]]), np.float64)
        out[i, : nd[i], : ng[i]] = iou.reshape(len(d), len(g))
    return out


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys of a sorted key array and their start offsets (plus the end)."""
    if keys.size == 0:
        return keys, np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.r_[starts, keys.size]


def _bucket(n: np.ndarray) -> np.ndarray:
    """Padded size class: 0, 1, 2, 4, 8, ..."""
    out = np.zeros_like(n)
    nz = n > 0
    out[nz] = 2 ** np.ceil(np.log2(n[nz])).astype(np.int64)
    return out


def _match_bucket(
    ious: np.ndarray,  # [N, D, G]
    nd: np.ndarray,  # [N]
    gt_ignore: np.ndarray,  # [N, G] (padding: True)
    gt_crowd: np.ndarray,  # [N, G]
    gt_valid: np.ndarray,  # [N, G]
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of pycocotools' evaluateImg for one area range.

    Returns matched [N, T, D] and matched_to_ignored [N, T, D].
    """
    n, d_max, g_max = ious.shape
    t = IOU_THRESHOLDS.size
    # gts sorted non-ignored first (stable), padding last
    key = np.where(gt_valid, gt_ignore.astype(np.int64), 2)
    perm = np.argsort(key, axis=1, kind="stable")
    ious = np.take_along_axis(ious, perm[:, None, :], axis=2)
    ig = np.take_along_axis(gt_ignore, perm, axis=1)
    crowd = np.take_along_axis(gt_crowd, perm, axis=1)
    valid = np.take_along_axis(gt_valid, perm, axis=1)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]
    gtm = np.zeros((n, t, g_max), dtype=bool)
    matched = np.zeros((n, t, d_max), dtype=bool)
    matched_ig = np.zeros((n, t, d_max), dtype=bool)
    rows = np.arange(n)[:, None]
    for d in range(d_max):
        iou_d = ious[:, d, :][:, None, :]  # [N, 1, G]
        elig = (iou_d >= thr) & (~gtm | crowd[:, None, :]) & valid[:, None, :]
        elig &= (d < nd)[:, None, None]
        picks = []
        for part in (~ig, ig):
            e = elig & part[:, None, :]
            vals = np.where(e, iou_d, -1.0)[..., ::-1]
            idx = g_max - 1 - np.argmax(vals, axis=-1)  # last gt with the best IoU
            picks.append((e.any(-1), idx))
        (has1, idx1), (has2, idx2) = picks
        m = np.where(has1, idx1, idx2)
        hit = has1 | has2  # [N, T]
        matched[:, :, d] = hit
        matched_ig[:, :, d] = hit & ig[rows, m]
        r, c = np.nonzero(hit)
        gtm[r, c, m[r, c]] = True
    return matched, matched_ig


@dataclass
class _Rows:
    """Groundtruth or detection rows of the evaluated (image, category) pairs, sorted by ``group`` =
    image index * number of categories + category index; ``row`` is the index in the caller's arrays."""

    group: np.ndarray
    img: np.ndarray
    cat: np.ndarray
    box: np.ndarray
    area: np.ndarray
    kp: np.ndarray
    row: np.ndarray
    crowd: np.ndarray | None = None  # groundtruth
    ignore: np.ndarray | None = None  # groundtruth: crowd (and, for keypoints, no labelled keypoint)
    score: np.ndarray | None = None  # detections
    rank: np.ndarray | None = None  # detections: rank by score within the group

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(**{k: (v[index] if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()})


def _lookup(ids: Sequence[int] | np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in the sorted ``table``, found) for each id."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.clip(np.searchsorted(table, ids), 0, table.size - 1)
    return pos, table[pos] == ids


def _groundtruth_rows(gt: CocoGroundtruth, img_ids: np.ndarray, cat_ids: np.ndarray,
                      g_kp_all: np.ndarray | None) -> _Rows:
    gi, ok_i = _lookup(gt.image_ids, img_ids)
    gk, ok_k = _lookup(gt.category_ids, cat_ids)
    keep = ok_i & ok_k
    crowd = np.asarray(gt.iscrowd, dtype=bool)[keep]
    ignore = crowd.copy()  # pycocotools: ignore = iscrowd (and, for keypoints, num_keypoints == 0)
    kp = np.zeros((crowd.size, 0, 3))
    if g_kp_all is not None:
        kp = g_kp_all[keep]
        num_kp = (kp[:, :, 2] > 0).sum(1) if gt.num_keypoints is None else np.asarray(gt.num_keypoints)[keep]
        ignore |= num_kp == 0
    rows = _Rows(group=gi[keep] * cat_ids.size + gk[keep], img=gi[keep], cat=gk[keep],
                 box=np.asarray(gt.boxes, dtype=np.float64).reshape(-1, 4)[keep],
                 area=np.asarray(gt.areas, dtype=np.float64)[keep], kp=kp, row=np.flatnonzero(keep),
                 crowd=crowd, ignore=ignore)
    return rows.take(np.lexsort((np.arange(rows.group.size), rows.group)))


def _detection_rows(dt: CocoDetections, img_ids: np.ndarray, cat_ids: np.ndarray, d_kp_all: np.ndarray | None,
                    max_det: int) -> _Rows:
    """The top ``max_det`` detections per (image, category) by score (stable)."""
    di, ok_i = _lookup(dt.image_ids, img_ids)
    dk, ok_k = _lookup(dt.category_ids, cat_ids)
    keep = ok_i & ok_k
    box = np.asarray(dt.boxes, dtype=np.float64).reshape(-1, 4)[keep]
    rows = _Rows(group=di[keep] * cat_ids.size + dk[keep], img=di[keep], cat=dk[keep], box=box,
                 area=box[:, 2] * box[:, 3] if dt.areas is None else np.asarray(dt.areas, np.float64)[keep],
                 kp=d_kp_all[keep] if d_kp_all is not None else np.zeros((box.shape[0], 0, 2)),
                 row=np.flatnonzero(keep), score=np.asarray(dt.scores, dtype=np.float64)[keep])
    rows = rows.take(np.lexsort((-rows.score, rows.group)))
    _, bounds = _segments(rows.group)
    rows.rank = np.arange(rows.group.size) - np.repeat(bounds[:-1], np.diff(bounds))
    return rows.take(rows.rank < max_det)


IouFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _match(g: _Rows, d: _Rows, ious_of: IouFn, area_ranges: Sequence[tuple[float, float]], t_n: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' evaluateImg for every (image, category) with both detections and groundtruth, batched by
    size: (matched, ignored) [areas, thresholds, detections]."""
    d_keys, d_bounds = _segments(d.group)
    g_keys, g_bounds = _segments(g.group)
    _, d_sel, g_sel = np.intersect1d(d_keys, g_keys, return_indices=True)
    nd_all = np.diff(d_bounds)[d_sel]
    ng_all = np.diff(g_bounds)[g_sel]
    d_start = d_bounds[:-1][d_sel]
    g_start = g_bounds[:-1][g_sel]
    det_matched = np.zeros((len(area_ranges), t_n, d.group.size), dtype=bool)
    det_ignored = np.zeros((len(area_ranges), t_n, d.group.size), dtype=bool)
    bucket_key = _bucket(nd_all) * 1_000_000 + _bucket(ng_all)
    for bk in np.unique(bucket_key):
        sel = np.flatnonzero(bucket_key == bk)
        nd, ng = nd_all[sel], ng_all[sel]
        dm, gm = int(nd.max()), int(ng.max())
        dpos = d_start[sel][:, None] + np.arange(dm)[None, :]
        dvalid = np.arange(dm)[None, :] < nd[:, None]
        dpos = np.where(dvalid, dpos, 0)
        gpos = g_start[sel][:, None] + np.arange(gm)[None, :]
        gvalid = np.arange(gm)[None, :] < ng[:, None]
        gpos = np.where(gvalid, gpos, 0)
        crowd = g.crowd[gpos] & gvalid
        area = g.area[gpos]
        ious = ious_of(dpos, gpos, nd, ng, crowd, area)
        for a, (lo, hi) in enumerate(area_ranges):
            ignore = g.ignore[gpos] | (area < lo) | (area > hi) | ~gvalid
            matched, matched_ig = _match_bucket(ious, nd, ignore, crowd, gvalid)
            flat = dpos[dvalid]
            det_matched[a][:, flat] = matched.transpose(1, 0, 2)[:, dvalid]
            det_ignored[a][:, flat] = matched_ig.transpose(1, 0, 2)[:, dvalid]
    return det_matched, det_ignored


def _accumulate(g: _Rows, d: _Rows, det_matched: np.ndarray, det_ignored: np.ndarray, params: EvalParams,
                n_cat: int, precision: np.ndarray, recall: np.ndarray, score_out: np.ndarray) -> None:
    """pycocotools' accumulate(): fills precision / recall / scores per threshold, category, area and maxDets."""
    t_n, r_n = IOU_THRESHOLDS.size, REC_THRESHOLDS.size
    order = np.lexsort((d.rank, d.img, -d.score, d.cat))
    s_cat, s_rank, s_score = d.cat[order], d.rank[order], d.score[order]
    cat_keys, cat_bounds = _segments(s_cat)
    cat_start = {int(k): (int(cat_bounds[i]), int(cat_bounds[i + 1])) for i, k in enumerate(cat_keys)}
    for a, (lo, hi) in enumerate(params.area_ranges):
        g_ig = g.ignore | (g.area < lo) | (g.area > hi)
        npig_all = np.bincount(g.cat[~g_ig], minlength=n_cat)
        out_of_range = (d.area < lo) | (d.area > hi)
        dtm = det_matched[a][:, order]
        dtig = det_ignored[a][:, order] | (~det_matched[a][:, order] & out_of_range[order][None, :])
        tps_all = dtm & ~dtig
        fps_all = ~dtm & ~dtig
        for k in range(n_cat):
            npig = int(npig_all[k])
            if npig == 0:
                continue
            lo_k, hi_k = cat_start.get(k, (0, 0))
            for m, max_det in enumerate(params.max_dets):
                rsel = lo_k + np.flatnonzero(s_rank[lo_k:hi_k] < max_det)
                nd = rsel.size
                if nd == 0:
                    recall[:, k, a, m] = 0
                    precision[:, :, k, a, m] = 0
                    score_out[:, :, k, a, m] = 0
                    continue
                tp = np.cumsum(tps_all[:, rsel], axis=1).astype(float)
                fp = np.cumsum(fps_all[:, rsel], axis=1).astype(float)
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                recall[:, k, a, m] = rc[:, -1]
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                sc = s_score[rsel]
                for t in range(t_n):
                    inds = np.searchsorted(rc[t], REC_THRESHOLDS, side="left")
                    ok = inds < nd
                    q = np.zeros(r_n)
                    ss = np.zeros(r_n)
                    # pycocotools stops filling at the first out-of-range index (inds is sorted)
                    q[ok] = pr[t, inds[ok]]
                    ss[ok] = sc[inds[ok]]
                    precision[t, :, k, a, m] = q
                    score_out[t, :, k, a, m] = ss


def evaluate(gt: CocoGroundtruth, dt: CocoDetections, *, iou_type: str = "bbox",
             oks_sigmas: np.ndarray | None = None) -> CocoEvalResult:
    """pycocotools' evaluate() + accumulate(), vectorised; ``iou_type`` "bbox", "segm" (mask IoU of the
    rows' RLEs with pycocotools' own mask API as shipped by faster-coco-eval; crowd: intersection over the
    detection's area; dt.areas should be the masks' areas as loadRes sets them) or "keypoints" (OKS with
    ``oks_sigmas`` [K], default pycocotools' COCO person sigmas; gt and dt need ``keypoints``)."""
    if iou_type not in ("bbox", "keypoints", "segm"):
        raise ValueError(f"iou_type {iou_type!r}")
    if iou_type == "segm" and (gt.masks is None or dt.masks is None):
        raise ValueError("segm evaluation needs groundtruth and detection masks (RLE)")
    params = KEYPOINT_PARAMS if iou_type == "keypoints" else BOX_PARAMS
    img_ids = np.unique(np.asarray(gt.all_image_ids, dtype=np.int64))
    cat_ids = np.unique(np.asarray(gt.category_list, dtype=np.int64))
    t_n, r_n, a_n, m_n = IOU_THRESHOLDS.size, REC_THRESHOLDS.size, len(params.area_ranges), len(params.max_dets)
    precision = -np.ones((t_n, r_n, cat_ids.size, a_n, m_n))
    recall = -np.ones((t_n, cat_ids.size, a_n, m_n))
    score_out = -np.ones((t_n, r_n, cat_ids.size, a_n, m_n))
    if cat_ids.size == 0 or img_ids.size == 0:
        return CocoEvalResult(precision, recall, score_out, cat_ids, params)
    g_kp_all = d_kp_all = sigmas = None
    if iou_type == "keypoints":
        g_kp_all, d_kp_all, sigmas = _keypoint_inputs(gt, dt, oks_sigmas)
    g = _groundtruth_rows(gt, img_ids, cat_ids, g_kp_all)
    d = _detection_rows(dt, img_ids, cat_ids, d_kp_all, params.max_dets[-1])

    def ious_of(dpos: np.ndarray, gpos: np.ndarray, nd: np.ndarray, ng: np.ndarray, crowd: np.ndarray,
                area: np.ndarray) -> np.ndarray:
        if iou_type == "keypoints":
            return keypoint_oks(d.kp[dpos], g.kp[gpos], g.box[gpos], area, sigmas)
        if iou_type == "segm":
            return _mask_ious(dt.masks, gt.masks, d.row[dpos], g.row[gpos], nd, ng, g.crowd[gpos])
        return box_iou_xywh(d.box[dpos], g.box[gpos], crowd)

    det_matched, det_ignored = _match(g, d, ious_of, params.area_ranges, t_n)
    _accumulate(g, d, det_matched, det_ignored, params, cat_ids.size, precision, recall, score_out)
    return CocoEvalResult(precision, recall, score_out, cat_ids, params)


def _keypoint_inputs(gt: CocoGroundtruth, dt: CocoDetections, oks_sigmas: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt keypoints [N, K, 3], dt keypoints [D, K, 2], sigmas [K]) checked for one K."""
    if gt.keypoints is None or dt.keypoints is None:
        raise ValueError("keypoint evaluation needs groundtruth and detection keypoints")
    g = np.asarray(gt.keypoints, np.float64)
    d = np.asarray(dt.keypoints, np.float64)
    g = g if g.ndim == 3 else g.reshape(len(gt.image_ids), -1 if g.size else 0, 3)
    d = (d if d.ndim == 3 else d.reshape(len(dt.image_ids), -1 if d.size else 0, 3))[..., :2]
    k = g.shape[1] if g.shape[0] else d.shape[1]
    sigmas = COCO_PERSON_SIGMAS if oks_sigmas is None else np.asarray(oks_sigmas, np.float64).reshape(-1)
    if d.shape[0] == 0:
        d = np.zeros((0, k, 2))
    if g.shape[0] == 0:
        g = np.zeros((0, k, 3))
    if d.shape[1] != k or sigmas.size != k:
        raise ValueError(f"keypoint counts differ: groundtruth {g.shape[1]}, detections {d.shape[1]}, "
                         f"sigmas {sigmas.size}")
    return g, d, sigmas


def summary_metrics(
    result: CocoEvalResult,
    category_names: dict[int, str] | None = None,
    *,
    include_metrics_per_category: bool = False,
    all_metrics_per_category: bool = False,
    prefix: str = METRIC_PREFIX,
) -> dict[str, float]:
    """The TF OD API's coco_detection_metrics dict (DetectionBoxes_* keys; coco_mask_metrics: prefix
    MASK_METRIC_PREFIX, DetectionMasks_*)."""
    METRIC_PREFIX = prefix  # noqa: N806 - the keys below use the requested prefix
    out = {METRIC_PREFIX + name: float(v) for (name, *_), v in zip(result.params.summary, result.stats)}
    if include_metrics_per_category:
        names = category_names or {}
        per_cat = result.category_stats()
        for k, cid in enumerate(result.category_ids):
            name = names.get(int(cid), str(int(cid)))
            out[f"{METRIC_PREFIX}PerformanceByCategory/mAP/{name}"] = float(per_cat[0, k])
            if all_metrics_per_category:
                for i, (metric, *_) in enumerate(SUMMARY):
                    out[f"{METRIC_PREFIX}{metric} ByCategory/{name}"] = float(per_cat[i, k])
    return out


def keypoint_summary_metrics(result: CocoEvalResult, class_name: str) -> dict[str, float]:
    """The TF OD API's CocoKeypointEvaluator dict for one class:
    ``Keypoints_Precision/mAP ByCategory/<class>`` ... (COCO_KEYPOINT_METRIC_NAMES_AND_INDEX)."""
    return {f"{KEYPOINT_METRIC_PREFIX}{name} ByCategory/{class_name}": float(v)
            for (name, *_), v in zip(result.params.summary, result.stats)}
