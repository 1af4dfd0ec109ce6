"""CenterNet keypoint estimation task (issue 16): targets and candidate snapping as the TF OD API, the builder
(keypoint label map, per-keypoint std), and a tiny model that overfits keypoints within a few pixels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from odkit.builders.model_builder import build_model
from odkit.protos import model_pb2

SIZE = 64
LABEL_MAP = """item { name: "/m/01g317" id: 1 display_name: "person"
  keypoints { id: 0 label: "head" } keypoints { id: 1 label: "left_hand" } keypoints { id: 2 label: "right_hand" } }
item { name: "/m/cat" id: 2 display_name: "cat" }
"""
TINY = """center_net {
  num_classes: NUM_CLASSES
  feature_extractor { type: "hourglass_10" }
  image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
  object_detection_task { localization_loss { l1_localization_loss {} } scale_loss_weight: 0.1
    scale_head_params { num_filters: 32 kernel_sizes: 3 } offset_head_params { num_filters: 32 kernel_sizes: 3 } }
  object_center_params { max_box_predictions: 10 min_box_overlap_iou: 0.7
    classification_loss { penalty_reduced_logistic_focal_loss { alpha: 2.0 beta: 4.0 } }
    center_head_params { num_filters: 32 kernel_sizes: 3 } }
  keypoint_label_map_path: "LABEL_MAP"
  keypoint_estimation_task {
    task_name: "human_pose" keypoint_class_name: "/m/01g317"
    loss { localization_loss { l1_localization_loss {} }
           classification_loss { penalty_reduced_logistic_focal_loss { alpha: 2.0 beta: 4.0 } } }
    keypoint_label_to_std { key: "head" value: 0.8 }
    keypoint_regression_loss_weight: 0.1 keypoint_heatmap_loss_weight: 1.0 keypoint_offset_loss_weight: 1.0
    offset_peak_radius: 1 per_keypoint_offset: true
    heatmap_head_params { num_filters: 32 kernel_sizes: 3 } offset_head_params { num_filters: 32 kernel_sizes: 3 }
    regress_head_params { num_filters: 32 kernel_sizes: 3 }
  }
}"""
COLORS = ((230, 40, 40), (40, 220, 40), (40, 40, 230))


def _model(tmp_path: Path, num_classes: int = 1, extra: str = "", is_training: bool = True):
    lm = tmp_path / "kp_label_map.pbtxt"
    lm.write_text(LABEL_MAP)
    text = TINY.replace("NUM_CLASSES", str(num_classes)).replace("LABEL_MAP", str(lm))
    text = text.replace("offset_peak_radius: 1", f"offset_peak_radius: 1 {extra}")
    return build_model(text_format.Parse(text, model_pb2.DetectionModel()), is_training=is_training)


def synthetic_people(n: int = 6, size: int = SIZE, seed: int = 0):
    """n gray images with 1-2 light boxes ("persons"), each with 3 keypoints drawn as coloured 3x3 dots:
    head (red) near the top, left hand (green) and right hand (blue) lower down; one hand unlabelled at times."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 90, dtype=torch.uint8)
    boxes, kps, vis = torch.zeros(n, 2, 4), torch.zeros(n, 2, 3, 2), torch.zeros(n, 2, 3, dtype=torch.bool)
    classes = torch.zeros(n, 2, dtype=torch.int64)
    for i in range(n):
        for j in range(1 + i % 2):
            h = int(torch.randint(size // 3, size // 2, (1,), generator=g))
            w = int(torch.randint(size // 4, size // 2 - 4, (1,), generator=g))
            y0 = int(torch.randint(0, size - h, (1,), generator=g))
            x0 = int(torch.randint(0, size // 2 - w, (1,), generator=g)) + j * (size // 2)
            images[i, :, y0:y0 + h, x0:x0 + w] = 150
            pts = [(y0 + 3, x0 + w // 2), (y0 + 2 * h // 3, x0 + 2), (y0 + 2 * h // 3, x0 + w - 3)]
            for k, (py, px) in enumerate(pts):
                images[i, :, py - 1:py + 2, px - 1:px + 2] = torch.tensor(COLORS[k], dtype=torch.uint8).view(3, 1, 1)
                kps[i, j, k] = torch.tensor([py + 0.5, px + 0.5]) / size
            vis[i, j] = True
            boxes[i, j] = torch.tensor([y0, x0, y0 + h, x0 + w], dtype=torch.float32) / size
            classes[i, j] = 1
    return images, {"boxes": boxes, "classes": classes, "weights": (classes > 0).float(),
                    "num_boxes": (classes > 0).sum(1), "keypoints": kps, "keypoint_visibilities": vis}



def test_builder_reads_the_keypoint_label_map(tmp_path) -> None:
    model = _model(tmp_path, num_classes=2)
    task = model.tasks[1]
    assert task.class_id == 0 and task.keypoint_indices == (0, 1, 2) and not task.single_class_path
    assert task.keypoint_std_dev.tolist() == pytest.approx([0.8, 1.0, 1.0]) and task.per_keypoint_offset
    pred = model.predict(model.preprocess(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)))
    assert pred["human_pose/keypoint/offset"].shape[2] == 6 and pred["human_pose/keypoint/regression"].shape[2] == 6
    assert pred["human_pose/keypoint/heatmap"].shape[2] == 3
    from odkit.builders.center_net_keypoint_builder import build_keypoint_tasks
    from odkit.errors import ConfigError, UnsupportedError

    lm = tmp_path / "kp_label_map.pbtxt"
    base = TINY.replace("NUM_CLASSES", "1").replace("LABEL_MAP", str(lm))

    def tasks(text: str):
        from odkit.builders.center_net_builder import _head

        return build_keypoint_tasks(text_format.Parse(text, model_pb2.DetectionModel()).center_net, _head)

    assert tasks(base)[0].single_class_path and tasks(base)[0].output_indices == (0, 1, 2)
    with pytest.raises(ConfigError, match="keypoint_class_name 'dog'"):
        tasks(base.replace('"/m/01g317"', '"dog"'))
    with pytest.raises(UnsupportedError, match="predict_depth"):
        tasks(base.replace("offset_peak_radius: 1", "offset_peak_radius: 1 predict_depth: true"))
    with pytest.raises(ConfigError, match="keypoint_label_to_std names"):
        tasks(base.replace('key: "head"', 'key: "tail"'))
    with pytest.raises(ConfigError, match="needs keypoint_label_map_path"):
        tasks(base.replace(f'keypoint_label_map_path: "{lm}"', ""))


def test_zoo_keypoint_config_builds(compat_dir, tmp_path) -> None:
    """The TF2 zoo CenterNet ResNet50 FPN keypoint config with TF's COCO keypoint label map: 17 person keypoints,
    the config's per-keypoint std, TF's multi-class output (90 classes), eval keypoint metrics resolve."""
    from odkit.config import load
    from odkit.data.label_map import load_label_map
    from odkit.evaluation.metrics import keypoint_metric_specs

    lm = compat_dir / "label_maps" / "mscoco_with_keypoints_label_map.pbtxt"
    cfg = load(compat_dir / "tfod_configs" / "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config",
               [f"model.center_net.keypoint_label_map_path={lm}"])
    model = build_model(cfg.model, is_training=False)
    task = model.tasks[1]
    assert task.task_name == "human_pose" and task.class_id == 0 and task.keypoint_indices == tuple(range(17))
    assert task.keypoint_std_dev[0] == pytest.approx(0.89) and task.offset_peak_radius == 3  # id 0: left_ankle
    assert task.per_keypoint_offset and task.num_total_keypoints == 17 and not task.single_class_path
    with torch.no_grad():
        det = model.postprocess(model.predict(model.preprocess(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))),
                                torch.tensor([[64, 64, 3]]))
    assert det["detection_keypoints"].shape == (1, 100, 17, 2) and det["detection_keypoint_scores"].shape == (1, 100, 17)
    spec = keypoint_metric_specs(cfg.eval_config, load_label_map(lm))[0]
    assert spec.class_id == 1 and len(spec.keypoint_ids) == 17 and spec.sigmas[0] == pytest.approx(0.089)


def _refine_inputs():
    rng = np.random.default_rng(0)
    b, d, c, k = 2, 5, 4, 3
    reg = rng.uniform(2, 14, (b, d, k, 2)).astype(np.float32)
    cand = (reg[:, :c] + rng.normal(0, 1.0, (b, c, k, 2))).astype(np.float32)  # near instance c's keypoints
    scores = rng.uniform(0, 1, (b, c, k)).astype(np.float32)
    num = rng.integers(1, c + 1, (b, k)).astype(np.int32)
    lo, hi = reg.min(2), reg.max(2)
    boxes = np.concatenate([lo - rng.uniform(0, 2, (b, d, 2)), hi + rng.uniform(0, 2, (b, d, 2))], -1)
    return [torch.from_numpy(x) for x in (reg, cand, scores, num, boxes.astype(np.float32))]


# TF OD API center_net_meta_arch.refine_keypoints on _refine_inputs() (TF 2, measured once)
TF_REFINE = json.loads(
    '{"min_distance":[[[[[9.2071,4.0676],[2.4917,2.1983],[12.0882,12.6945]],[[9.2796,10.754],[9.1568,11.0174]'
    ',[11.8423,2.7166]],[[12.2888,2.403],[10.7559,4.1079],[12.3581,8.4975]],[[5.5965,7.0722],[2.3398,3.4914],'
    '[10.0475,9.7663]],[[9.3846,6.6041],[13.9665,13.77],[10.2265,9.8055]]],[[[8.9837,7.2975],[4.2023,11.9524]'
    ',[9.1081,6.8939]],[[7.83,12.6739],[12.7757,5.5581],[9.1081,6.8939]],[[8.9837,7.2975],[4.2023,11.9524],[5'
    '.2286,10.468]],[[3.0082,11.9917],[12.7757,5.5581],[11.8047,3.3238]],[[6.0334,3.8033],[4.2023,11.9524],[4'
    '.7677,2.6243]]]],[[[0.6144,0.1,0.7192],[0.1,0.758,0.5128],[0.1,0.1,0.1],[0.1,0.1,0.1],[0.1,0.1,0.1]],[[0'
    '.9661,0.5622,0.2259],[0.1,0.8881,0.2259],[0.9661,0.5622,0.5861],[0.1,0.8881,0.5605],[0.1,0.5622,0.1]]]],'
    '"score_distance_ratio":[[[[[9.2071,4.0676],[9.1568,11.0174],[12.0882,12.6945]],[[9.2071,4.0676],[9.1568,'
    '11.0174],[11.8423,2.7166]],[[12.2888,2.403],[10.7559,4.1079],[12.3581,8.4975]],[[5.5965,7.0722],[9.1568,'
    '11.0174],[10.0475,9.7663]],[[9.3846,6.6041],[13.9665,13.77],[10.2265,9.8055]]],[[[8.9837,7.2975],[4.2023'
    ',11.9524],[8.3042,5.7229]],[[8.9837,7.2975],[12.7757,5.5581],[8.8584,5.8624]],[[8.9837,7.2975],[4.2023,1'
    '1.9524],[5.2286,10.468]],[[3.0082,11.9917],[12.7757,5.5581],[11.8047,3.3238]],[[6.0334,3.8033],[4.2023,1'
    '1.9524],[4.7677,2.6243]]]],[[[0.6144,0.758,0.7192],[0.6144,0.758,0.5128],[0.1,0.1,0.1],[0.1,0.758,0.1],['
    '0.1,0.1,0.1]],[[0.9661,0.5622,0.1],[0.9661,0.8881,0.1],[0.9661,0.5622,0.5861],[0.1,0.8881,0.5605],[0.1,0'
    '.5622,0.1]]]],"score_scaled_distance_ratio":[[[[[9.2071,4.0676],[9.1568,11.0174],[12.0882,12.6945]],[[9.'
    '2071,4.0676],[9.1568,11.0174],[11.8423,2.7166]],[[12.2888,2.403],[10.7559,4.1079],[12.3581,8.4975]],[[5.'
    '5965,7.0722],[9.1568,11.0174],[10.0475,9.7663]],[[9.3846,6.6041],[13.9665,13.77],[10.2265,9.8055]]],[[[8'
    '.9837,7.2975],[4.2023,11.9524],[8.3042,5.7229]],[[8.9837,7.2975],[12.7757,5.5581],[9.1081,6.8939]],[[8.9'
    '837,7.2975],[4.2023,11.9524],[5.2286,10.468]],[[3.0082,11.9917],[12.7757,5.5581],[11.8047,3.3238]],[[6.0'
    '334,3.8033],[4.2023,11.9524],[4.7677,2.6243]]]],[[[0.6144,0.758,0.7192],[0.6144,0.758,0.5128],[0.1,0.1,0'
    '.1],[0.1,0.758,0.1],[0.1,0.1,0.1]],[[0.9661,0.5622,0.1],[0.9661,0.8881,0.2259],[0.9661,0.5622,0.5861],[0'
    '.1,0.8881,0.5605],[0.1,0.5622,0.1]]]],"gaussian_weighted":[[[[[9.2071,4.0676],[2.4917,2.1983],[12.0882,1'
    '2.6945]],[[9.2796,10.754],[8.5235,13.2209],[11.8423,2.7166]],[[12.2888,2.403],[10.7559,4.1079],[12.3581,'
    '8.4975]],[[5.5965,7.0722],[2.3398,3.4914],[10.0475,9.7663]],[[9.3846,6.6041],[13.9665,13.77],[10.2265,9.'
    '8055]]],[[[10.2614,6.6671],[4.2023,11.9524],[8.3042,5.7229]],[[7.83,12.6739],[12.7757,5.5581],[9.1081,6.'
    '8939]],[[9.1316,6.0549],[6.6994,12.6833],[4.7259,9.4782]],[[3.0082,11.9917],[12.7757,5.5581],[11.8047,3.'
    '3238]],[[6.0334,3.8033],[7.4041,11.5559],[4.7677,2.6243]]]],[[[0.2511,0.1,0.6744],[0.1,0.1,0.2002],[0.1,'
    '0.1,0.1],[0.1,0.1,0.1],[0.1,0.1,0.1]],[[0.1,0.1319,0.1],[0.1,0.5257,0.1004],[0.1,0.1,0.1],[0.1,0.39,0.40'
    '36],[0.1,0.1,0.1]]]]}'
)


@pytest.mark.parametrize("mode", ["min_distance", "score_distance_ratio", "score_scaled_distance_ratio",
                                  "gaussian_weighted"])
def test_refine_keypoints_equals_tf(tmp_path, mode) -> None:
    """Candidate ranking and snapping (TF refine_keypoints: box_scale 1.2, candidate_search_scale 0.3,
    threshold 0.1, unmatched score 0.1, score_distance_offset 1, multiplier 0.1, std (0.8, 1, 1))."""
    task = _model(tmp_path).tasks[1]
    task.ranking_mode = mode
    reg, cand, scores, num, boxes = _refine_inputs()
    coords, ks = task.refine(reg, cand, scores, num.long(), boxes)
    want_c, want_s = TF_REFINE[mode]
    torch.testing.assert_close(coords, torch.tensor(want_c), rtol=0, atol=1e-4)
    torch.testing.assert_close(ks, torch.tensor(want_s), rtol=0, atol=1e-4)
    assert (ks == 0.1).any() and (ks != 0.1).any()  # both snapped and unmatched keypoints occur


# TF OD API prediction_tensors_to_keypoint_candidates (max pool 3, 5 candidates, threshold 0.5) on the
# heatmap / offsets of test_keypoint_candidates_equal_tf (TF 2, measured once)
TF_CANDIDATES = json.loads(
    '{"per_kp":[[[[[1.9624,3.0458],[-0.9495,5.6739],[5.9865,2.6303]],[[0.7319,0.5864],[4.88,5.5482],[1.9669,5'
    '.9807]],[[6.9453,3.8432],[1.8226,3.6956],[5.2816,1.3327]],[[3.4987,4.1803],[3.6825,1.6363],[2.7256,1.117'
    ']],[[2.6288,-0.0293],[6.8294,-0.8452],[5.6056,8.1193]]],[[[5.685,3.2406],[3.9646,2.2276],[4.637,1.6423]]'
    ',[[4.8401,4.9701],[6.4579,4.6704],[1.1101,7.5796]],[[0.7934,4.9002],[5.9957,5.9801],[3.5276,-0.0245]],[['
    '-0.9759,1.6649],[5.4407,6.8247],[0.9071,4.113]],[[3.0342,3.5181],[0.3943,0.1456],[5.6427,6.0663]]]],[[[0'
    '.9279,0.9955,0.9716],[0.9172,0.9804,0.9678],[0.9134,0.9787,0.9509],[0.9092,0.9671,0.9039],[0.8741,0.9614'
    ',0.8782]],[[0.9954,0.9968,0.9929],[0.9879,0.9416,0.9448],[0.9601,0.915,0.9064],[0.9383,0.9144,0.8929],[0'
    '.8839,0.8826,0.8605]]],[[5,5,5],[5,5,5]]],"shared":[[[[[1.9624,3.0458],[0.4027,5.2319],[5.555,2.8191]],['
    '[0.7319,0.5864],[4.7623,5.5145],[1.9845,5.958]],[[6.9453,3.8432],[1.5193,2.3048],[6.0584,1.2258]],[[3.49'
    '87,4.1803],[3.2539,0.3518],[2.9085,0.6364]],[[2.6288,-0.0293],[7.217,0.3412],[4.8244,7.4579]]],[[[5.685,'
    '3.2406],[4.3949,2.3683],[4.0958,1.8873]],[[4.8401,4.9701],[6.8461,4.3796],[0.7105,6.4154]],[[0.7934,4.90'
    '02],[5.8637,5.6345],[3.0605,0.0511]],[[-0.9759,1.6649],[4.0085,6.8517],[-0.0502,4.2773]],[[3.0342,3.5181'
    '],[1.8171,1.0522],[5.8932,6.5684]]]],[[[0.9279,0.9955,0.9716],[0.9172,0.9804,0.9678],[0.9134,0.9787,0.95'
    '09],[0.9092,0.9671,0.9039],[0.8741,0.9614,0.8782]],[[0.9954,0.9968,0.9929],[0.9879,0.9416,0.9448],[0.960'
    '1,0.915,0.9064],[0.9383,0.9144,0.8929],[0.8839,0.8826,0.8605]]],[[5,5,5],[5,5,5]]]}'
)


@pytest.mark.parametrize("offsets", ["per_kp", "shared"])
def test_keypoint_candidates_equal_tf(offsets) -> None:
    from odkit.models.center_net_keypoints import keypoint_candidates

    rng = np.random.default_rng(7)
    hm = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    hm[0, 2, 2, 0] = hm[0, 2, 3, 0]  # a tie between neighbours
    off = rng.normal(0, 0.5, (2, 8, 8, 6)).astype(np.float32)
    off = off if offsets == "per_kp" else np.ascontiguousarray(off[..., :2])
    cand, scores, num = keypoint_candidates(torch.from_numpy(hm).permute(0, 3, 1, 2),
                                            torch.from_numpy(off).permute(0, 3, 1, 2), 3, 5, 0.5)
    want_c, want_s, want_n = TF_CANDIDATES[offsets]
    torch.testing.assert_close(cand, torch.tensor(want_c), rtol=0, atol=1e-4)
    torch.testing.assert_close(scores, torch.tensor(want_s), rtol=0, atol=1e-4)
    assert num.tolist() == want_n


def _target_inputs():
    rng = np.random.default_rng(5)
    kps = rng.uniform(0.05, 0.95, (2, 3, 4, 2)).astype(np.float32)
    kps[0, 1, 2] = kps[1, 0, 0] = kps[1, 2, 3] = np.nan
    lo, hi = np.nanmin(kps, 2) - 0.05, np.nanmax(kps, 2) + 0.05
    boxes = np.clip(np.concatenate([lo, hi], -1), 0, 1).astype(np.float32)
    vis = torch.from_numpy(~np.isnan(kps).any(-1))
    return (torch.from_numpy(np.nan_to_num(kps)), vis, torch.tensor([[1, 1, 2], [1, 2, 1]]),
            torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.5]]), torch.from_numpy(boxes))


# TF OD API CenterNetKeypointTargetAssigner(stride 4, class_id 0, keypoint_indices [0, 2, 3], keypoint_std_dev
# [1, 0.5, 2], per_keypoint_offset, peak_radius 1) on _target_inputs() at 64x64 (TF 2, measured once; the
# full tensors agreed to 5e-6, these are their summaries)
TF_TARGETS = json.loads(
    '{"heatmap_sum":[[13.7442,2.1443,52.6167],[2.1816,2.7629,19.8529]],"heatmap_sq":[[7.3648,1.223,29.855],[0'
    '.5477,1.4761,10.6162]],"heatmap_argmax":[[31,22,97],[124,209,160]],"num":[[2,1,2],[0,1,1]],"valid_sum":['
    '[184,61,184],[95,179,159]],"off_w":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,1,0,0,0,0,0,1,1,1,1,1,0,0,0,0,'
    '0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1,1,0,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0.5,0.5,0.5,0.5,0.5,0.'
    '5,0.5,0.5,0.5,0.5,0,0,0,0,0],"off_wsum":[21.0876,16.19],"off_idx_wsum":[14,316.5,270,40.5],"reg_w":[1,1,'
    '1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,'
    '1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0,0,0,0,0],"reg_wsum":'
    '[70.0776,12.1954],"reg_idx_wsum":[15,280,290,42.5]}'
)


def test_keypoint_targets_equal_tf() -> None:
    from odkit.core import center_net_keypoint_targets as kpt

    kps, vis, classes, weights, boxes = _target_inputs()
    kp, kw = kpt.select_task_keypoints(kps, vis, classes, weights, 0, (0, 2, 3), 16, 16)
    hm, num, valid = kpt.keypoint_heatmap_targets(kp, kw, boxes, 16, 16, torch.tensor([1.0, 0.5, 2.0]))
    t = TF_TARGETS
    torch.testing.assert_close(hm.sum((2, 3)), torch.tensor(t["heatmap_sum"]), rtol=0, atol=2e-3)
    torch.testing.assert_close((hm ** 2).sum((2, 3)), torch.tensor(t["heatmap_sq"]), rtol=0, atol=2e-3)
    assert hm.flatten(2).argmax(-1).tolist() == t["heatmap_argmax"] and num.tolist() == t["num"]
    assert valid.sum((2, 3)).tolist() == t["valid_sum"]
    b, m, k, _ = kp.shape
    yc, xc, _, _ = kpt.box_centers_sizes(boxes, 16, 16)
    for name, (sy, sx) in (("off", (kp[..., 0], kp[..., 1])),
                           ("reg", (yc[..., None].expand(b, m, k), xc[..., None].expand(b, m, k)))):
        yi, xi, ok, off = kpt.neighbour_offsets(sy, sx, kp[..., 0], kp[..., 1], 16, 16, 1)
        w = (ok.float() * kw[..., None]).reshape(-1)
        n = yi.shape[-1]
        idx = torch.stack([torch.arange(b).repeat_interleave(m * k * n), yi.reshape(-1), xi.reshape(-1),
                           torch.arange(k).repeat_interleave(n).repeat(b * m)], 1)
        assert w.tolist() == t[f"{name}_w"]
        assert (idx * w[:, None]).sum(0).tolist() == t[f"{name}_idx_wsum"]
        torch.testing.assert_close((off.reshape(-1, 2) * w[:, None]).sum(0), torch.tensor(t[f"{name}_wsum"]),
                                   rtol=0, atol=2e-3)


@pytest.mark.slow
def test_tiny_center_net_overfits_keypoints(tmp_path, one_thread) -> None:
    """hourglass_10, 32-filter heads, 64x64, 6 images, 50 Adam steps (~9 s on a loaded CPU): every person found
    (score > 0.3) and its 3 keypoints within 3 px. Measured over seeds 0-2: max error 0.27-0.73 px, mean
    0.11-0.21 px (80 steps: max 0.09-0.33 px)."""
    torch.manual_seed(0)
    model = _model(tmp_path)
    images, gt = synthetic_people()
    shapes = torch.tensor([[SIZE, SIZE, 3]] * images.shape[0])
    steps, base = 50, 1e-2
    opt = torch.optim.Adam(model.parameters(), lr=base)
    for step in range(steps):
        lr = base * (step + 1) / 10 if step < 10 else 0.5 * base * (1 + math.cos(math.pi * (step - 10) / (steps - 10)))
        for group in opt.param_groups:
            group["lr"] = lr
        losses = model.loss(model.predict(model.preprocess(images)), gt, shapes)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        det = model.postprocess(model.predict(model.preprocess(images)), shapes)
    errors = []
    for i in range(images.shape[0]):
        for j in range(int(gt["num_boxes"][i])):
            # the detection whose box centre is nearest this person's
            c = (gt["boxes"][i, j, :2] + gt["boxes"][i, j, 2:]) / 2
            centres = (det["detection_boxes"][i, :, :2] + det["detection_boxes"][i, :, 2:]) / 2
            d = int(((centres - c) ** 2).sum(1).argmin())
            assert det["detection_scores"][i, d] > 0.3
            err = (det["detection_keypoints"][i, d] - gt["keypoints"][i, j]).norm(dim=-1) * SIZE
            errors.append(err)
    err = torch.cat(errors)
    print("keypoint error px: max", float(err.max()), "mean", float(err.mean()))
    assert float(err.max()) < 3.0 and float(err.mean()) < 1.5


@pytest.mark.slow
def test_keypoint_center_net_exports(tmp_path, shared_dir) -> None:
    """ONNX / TorchScript / eager agree on detection_keypoints (export verification compares them like box
    coordinates) and the Detector returns them on a real image (~10 s CPU)."""
    from tiny_model import FixedResizer

    from odkit.export.exporter import export_model
    from odkit.export.wrapper import ExportWrapper
    from odkit.inference.detector import Detector
    from odkit.inference.images import load_image

    torch.manual_seed(0)
    model = _model(tmp_path, num_classes=2, is_training=False).eval()
    probe = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (2, 3, SIZE, SIZE), dtype=np.uint8))
    for key, head in (("object_center", model.center_heads[-1][-1]),
                      ("human_pose/keypoint/heatmap", model.tasks[1].heads["human_pose_keypoint_heatmap"][-1][-1])):
        with torch.no_grad():  # untrained logits sit at the bias: spread them (std 1.5, no saturated ties)
            head.weight.normal_()
            head.bias.zero_()
            head.weight.mul_(1.5 / float(model.predict(model.preprocess(probe))[key].std()))
    result = export_model(model, FixedResizer(SIZE, SIZE), tmp_path / "export", formats=["onnx", "torchscript"])
    assert {"detection_keypoints", "detection_keypoint_scores"} <= set(result.info["outputs"])
    assert all(v.get("verification") for v in result.info["formats"].values())
    image = load_image(str(shared_dir / "datasets" / "raccoon" / "images" / "raccoon-1.jpg"), 10**8)
    wrapper = ExportWrapper(model, FixedResizer(SIZE, SIZE), tuple(result.info["outputs"])).eval()
    with torch.no_grad():
        eager = dict(zip(wrapper.output_names, (t.numpy() for t in wrapper(torch.from_numpy(image[None]).float()))))
    for backend in ("onnx", "torchscript"):
        raw = Detector(tmp_path / "export", backend=backend).detect_raw(image)
        n = int(eager["num_detections"][0])
        assert n > 0
        np.testing.assert_allclose(raw["detection_keypoints"][0, :n], eager["detection_keypoints"][0, :n], atol=1e-4)
        np.testing.assert_allclose(raw["detection_keypoint_scores"][0, :n], eager["detection_keypoint_scores"][0, :n],
                                   atol=1e-4)
