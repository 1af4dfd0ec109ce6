"""CenterNet targets, loss and postprocess against numbers computed with the TF OD API's own code.

The expected values were printed by the TF OD API (snapshot in /root/tfod-src, TF 2.21) for the same inputs:
`core/target_assigner.py` (max_distance_for_overlap, _compute_std_dev_from_box_size,
CenterNetCenterHeatmapTargetAssigner, CenterNetBoxTargetAssigner), `core/losses.py`
(PenaltyReducedLogisticFocalLoss) and `CenterNetMetaArch.loss` / `.postprocess` with a pass-through feature
extractor (2 feature outputs, stride 4, 64x48 input) on prediction tensors drawn with numpy's default_rng.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from odkit.core import center_net_targets as T
from odkit.core.heatmap_peaks import top_k_peaks
from odkit.core.losses import L1LocalizationLoss, PenaltyReducedLogisticFocalLoss
from odkit.models.center_net import CenterNetMetaArch, ObjectDetectionTask

H = torch.tensor([10.0, 3.0, 40.0, 7.5, 1.0])
W = torch.tensor([20.0, 3.0, 12.0, 100.0, 1.0])
TF_RADIUS = {0.7: [3.6779251098632812, 0.8199601173400879, 5.171142578125, 4.075675964355469, 0.2733200788497925],
             0.3: [6.779733657836914, 1.4863353967666626, 9.827545166015625, 8.616397857666016, 0.4954451322555542]}
TF_SIGMA = {0.7: [1.1666666269302368, 0.1666666716337204, 1.8333333730697632, 1.5, 0.1666666716337204],
            0.3: [2.1666667461395264, 0.5, 3.1666667461395264, 2.8333332538604736, 0.1666666716337204]}


def _groundtruth(seed: int = 0):
    rng = np.random.default_rng(seed)
    b, m = 2, 3
    y0, x0 = rng.uniform(0, 0.6, (b, m)), rng.uniform(0, 0.6, (b, m))
    hh, ww = rng.uniform(0.05, 0.4, (b, m)), rng.uniform(0.05, 0.4, (b, m))
    boxes = np.stack([y0, x0, y0 + hh, x0 + ww], -1).astype(np.float32)
    boxes[1, 1:] = 0
    return {"boxes": torch.from_numpy(boxes), "classes": torch.tensor([[1, 3, 3], [2, 0, 0]]),
            "weights": torch.tensor([[1.0, 0.5, 1.0], [1.0, 0.0, 0.0]]), "num_boxes": torch.tensor([3, 1])}


@pytest.mark.parametrize("iou", [0.7, 0.3])
def test_gaussian_radius_and_sigma_match_tf(iou):
    np.testing.assert_allclose(T.max_distance_for_overlap(H, W, iou).numpy(), TF_RADIUS[iou], rtol=1e-5)
    np.testing.assert_allclose(T.gaussian_sigma(H, W, iou).numpy(), TF_SIGMA[iou], rtol=1e-6)


def test_center_heatmap_matches_tf():
    gt = _groundtruth()
    out_h, out_w = T.output_size(64, 48, 4)
    hm = T.center_heatmap_targets(gt["boxes"], gt["classes"], gt["weights"], out_h, out_w, 4, 0.7)
    assert hm.shape == (2, 4, 16, 12)
    assert float(hm.sum()) == pytest.approx(3.5, abs=1e-5)
    np.testing.assert_allclose(hm.amax(dim=(2, 3)).numpy(), [[1, 0, 1, 0], [0, 1, 0, 0]])
    tf_sample = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.380227064264453e-32, 0.0],
                 [0.0, 2.319531698722325e-16, 1.5230009253741628e-08, 2.319531698722325e-16],
                 [5.380227064264453e-32, 1.5230009253741628e-08, 1.0, 1.5230009253741628e-08]]
    np.testing.assert_allclose(hm[0, 0, 5:9, 3:7].numpy(), tf_sample, rtol=1e-4, atol=1e-38)
    # the weight-0.5 box of class 3 peaks at 0.5, under the max with the other class-3 box
    assert float(hm[0, 2].max()) == 1.0 and 0.5 in hm[0, 2].flatten().tolist()


def test_box_targets_match_tf():
    gt = _groundtruth()
    y, x, hw, off = T.box_size_offset_targets(gt["boxes"], 16, 12)
    tf_idx = [[8, 5], [3, 6], [2, 4], [1, 7]]
    tf_hw = [[5.601463794708252, 1.8587899208068848], [0.988079309463501, 2.375286102294922],
             [4.886070728302002, 0.7189421653747559], [1.783671498298645, 1.1219902038574219]]
    tf_off = [[0.9155645370483398, 0.29717254638671875], [0.08399200439453125, 0.4400186538696289],
              [0.836381196975708, 0.2735710144042969], [0.050501108169555664, 0.2935161590576172]]
    real = [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [[int(y[i, j]), int(x[i, j])] for i, j in real] == tf_idx
    np.testing.assert_allclose([hw[i, j].tolist() for i, j in real], tf_hw, rtol=1e-5)
    np.testing.assert_allclose([off[i, j].tolist() for i, j in real], tf_off, atol=2e-6)


def test_penalty_reduced_focal_loss_matches_tf():
    rng = np.random.default_rng(1)
    pred = rng.normal(0, 2, (2, 5, 3)).astype(np.float32)
    tgt = rng.uniform(0, 1, (2, 5, 3)).astype(np.float32)
    tgt[0, 1, 2] = 1.0
    tgt[1, 3, 0] = 1.0
    wts = rng.uniform(0, 1, (2, 5, 1)).astype(np.float32)
    loss = PenaltyReducedLogisticFocalLoss(2.0, 4.0)(torch.from_numpy(pred), torch.from_numpy(tgt), torch.from_numpy(wts))
    assert loss.shape == (2, 5, 3)
    np.testing.assert_allclose(loss.sum(dim=(1, 2)).numpy(), [0.3820612132549286, 5.816796779632568], rtol=1e-5)


class _PassThrough(nn.Module):
    out_stride, num_feature_outputs, out_channels = 4, 2, 8

    def preprocess(self, x):
        return x.float()

    def forward(self, x):
        return [x, x]


def _tf_case_model(max_box_predictions: int = 6) -> CenterNetMetaArch:
    return CenterNetMetaArch(
        num_classes=4, feature_extractor=_PassThrough(), center_loss=PenaltyReducedLogisticFocalLoss(2.0, 4.0),
        tasks=[ObjectDetectionTask(L1LocalizationLoss(), scale_loss_weight=0.1, offset_loss_weight=1.0,
                                   task_loss_weight=0.7)],
        min_box_overlap_iou=0.7, max_box_predictions=max_box_predictions)


def _tf_case_predictions() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(2)
    center = rng.normal(-2, 1.5, (2, 2, 16, 12, 4)).astype(np.float32)  # [outputs, B, h, w, C] as TF
    scale = rng.uniform(0, 6, (2, 2, 16, 12, 2)).astype(np.float32)
    offset = rng.uniform(0, 1, (2, 2, 16, 12, 2)).astype(np.float32)

    def nchw(a):
        return torch.from_numpy(a).permute(0, 1, 4, 2, 3).contiguous()

    return {"object_center": nchw(center), "box/scale": nchw(scale), "box/offset": nchw(offset),
            "preprocessed_shape": torch.tensor([64, 48])}


TRUE_SHAPES = torch.tensor([[64, 48, 3], [40, 30, 3]])


def test_meta_arch_loss_matches_tf():
    losses = _tf_case_model().loss(_tf_case_predictions(), _groundtruth(), TRUE_SHAPES)
    assert set(losses) == {"Loss/object_center", "Loss/box/scale", "Loss/box/offset"}
    tf_losses = {"Loss/object_center": 18.04711151123047, "Loss/box/scale": 0.266221284866333,
                 "Loss/box/offset": 0.4966212511062622}
    for k, v in tf_losses.items():
        assert float(losses[k]) == pytest.approx(v, rel=1e-5), k


def test_meta_arch_postprocess_matches_tf():
    det = _tf_case_model().postprocess(_tf_case_predictions(), TRUE_SHAPES)
    tf_boxes = [[[0.17380207777023315, 0.280411958694458, 0.3577485680580139, 0.594369649887085],
                 [0.5532604455947876, 0.6064710021018982, 0.7684979438781738, 0.6887710094451904],
                 [0.5788545608520508, 0.02414419688284397, 0.7292017936706543, 0.16603755950927734],
                 [0.619574248790741, 0.6629645228385925, 0.6494095921516418, 0.90371173620224],
                 [0.432873010635376, 0.7115802764892578, 0.7686550617218018, 0.845923900604248],
                 [0.0, 0.04971259832382202, 0.0683216080069542, 0.16339634358882904]],
                [[0.20334914326667786, 0.857103705406189, 0.6408641934394836, 1.0], [1.0, 1.0, 1.0, 1.0],
                 [0.7734168171882629, 0.19528254866600037, 1.0, 0.9502403736114502],
                 [0.0, 1.0, 0.22752313315868378, 1.0], [0.6510294079780579, 0.8317543268203735, 1.0, 1.0],
                 [0.0, 0.30496156215667725, 0.2909476161003113, 0.5445322394371033]]]
    tf_scores = [[0.9319398999214172, 0.9033395648002625, 0.9006106853485107, 0.8308048844337463,
                  0.8247096538543701, 0.8219290971755981],
                 [0.9649146199226379, 0.9100180268287659, 0.8917539715766907, 0.8868197202682495,
                  0.8636158108711243, 0.8396956324577332]]
    tf_classes0 = [[3, 3, 0, 2, 3, 2], [0, 1, 1, 2, 0, 2]]  # TF: 0-based channel; odkit: 1-based label id
    np.testing.assert_allclose(det["detection_boxes"].numpy(), tf_boxes, atol=1e-6)
    np.testing.assert_allclose(det["detection_scores"].numpy(), tf_scores, rtol=1e-6)
    np.testing.assert_array_equal(det["detection_classes"].numpy(), np.array(tf_classes0) + 1)
    np.testing.assert_array_equal(det["num_detections"].numpy(), [6, 6])
    assert det["detection_multiclass_scores"].shape == (2, 6, 4)
    np.testing.assert_allclose(det["detection_multiclass_scores"].amax(-1).numpy(), tf_scores, rtol=1e-6)


def test_peaks_keep_only_local_maxima_in_tf_order():
    heat = torch.zeros(1, 2, 5, 5)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2] = 0.9, 0.8  # 0.8 is next to a higher value: suppressed
    heat[0, 1, 3, 3] = 0.8  # same score in another channel, later in TF's channels-last order
    heat[0, 0, 4, 0] = 0.8  # ... and a tie at a later pixel
    scores, y, x, c = top_k_peaks(heat, 3, k=4)
    assert scores[0, :3].tolist() == pytest.approx([0.9, 0.8, 0.8])
    assert list(zip(y[0, :3].tolist(), x[0, :3].tolist(), c[0, :3].tolist())) == [(1, 1, 0), (3, 3, 1), (4, 0, 0)]
    assert float(scores[0, 3]) == 0.0


# ------------------------------------------------------------------ configs
BOX_CONFIGS = ("centernet_hg104_512x512_coco17_tpu-8.config", "centernet_hourglass104_512x512_coco17_tpu-8.config",
               "centernet_hourglass104_1024x1024_coco17_tpu-32.config",
               "centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config",
               "center_net_resnet101_v1_fpn_512x512_coco17_tpu-8.config")


def test_zoo_center_net_box_configs_are_fully_supported(compat_dir):
    from odkit.config import load
    from odkit.workflows.config_check import check as check_config

    def check(config):  # the unsupported findings (odkit config check)
        return check_config(config).unsupported

    for name in BOX_CONFIGS:
        assert [str(p) for p in check(load(compat_dir / "tfod_configs" / name))] == [], name
    # the other CenterNet box config reads Google-internal input readers
    rest = {"centernet_resnet50_v2_512x512_coco17_tpu-8.config": ["train_input_reader.external_input_reader",
                                                                  "eval_input_reader[0].external_input_reader"]}
    for name, paths in rest.items():
        assert [p.path for p in check(load(compat_dir / "tfod_configs" / name))] == paths, name
    # DeepMAC stays refused by name; the keypoint configs are supported (tests/test_center_net_keypoints.py)
    deepmac = check(load(compat_dir / "tfod_configs" / "center_net_deepmac_1024x1024_coco_tpu-128.config"))
    assert "model.center_net.deepmac_mask_estimation" in [p.path for p in deepmac]
    kpts = check(load(compat_dir / "tfod_configs" / "centernet_hg104_512x512_kpts_coco17_tpu-32.config"))
    assert [p.path for p in kpts] == []


@pytest.mark.parametrize("name,feature_extractor,outputs,channels", [
    ("centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config", "resnet_v2_101", 1, 64),
    ("centernet_hg104_512x512_coco17_tpu-8.config", "hourglass_20", 1, 96),
])
def test_zoo_config_builds_and_predicts_at_stride_4(compat_dir, name, feature_extractor, outputs, channels):
    from odkit.builders.model_builder import build_model
    from odkit.config import load

    config = load(compat_dir / "tfod_configs" / name)
    cn = config.model.center_net
    cn.feature_extractor.type = feature_extractor  # hourglass_104 itself is 190M parameters: too slow here
    torch.manual_seed(0)
    model = build_model(config.model, is_training=False)
    assert model.num_classes == 90 and model.input_size == (512, 512) and model.max_box_predictions == 100
    assert model.feature_extractor.out_channels == channels and model.num_feature_outputs == outputs
    x = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    with torch.no_grad():
        pred = model.predict(model.preprocess(x))
    assert pred["object_center"].shape == (outputs, 1, 90, 16, 16)
    assert float(model.center_heads[0][-1].bias[0].detach()) == pytest.approx(-2.19)  # heatmap_bias_init default


@pytest.mark.parametrize("edit,where", [
    ("feature_extractor { type: 'resnet_v1_152_fpn' }", "feature_extractor.type"),
    ("feature_extractor { type: 'resnet_v2_50' depth_multiplier: 0.5 }", "feature_extractor.depth_multiplier"),
    ("feature_extractor { type: 'resnet_v2_50' use_depthwise: true }", "feature_extractor.use_depthwise"),
    ("mask_estimation_task { }", "mask_estimation_task"),
    ("keypoint_label_map_path: 'kp.pbtxt'", "keypoint_label_map_path"),
    ("object_center_params { use_labeled_classes: true }", "object_center_params.use_labeled_classes"),
    ("object_detection_task { localization_loss { weighted_iou { } } }", "object_detection_task.localization_loss"),
    ("object_detection_task { scale_head_params { num_filters: [8, 8] kernel_sizes: 3 } }",
     "object_detection_task.scale_head_params"),
])
def test_builder_refuses_by_name(edit, where):
    from google.protobuf import text_format

    from odkit.builders.model_builder import build_model
    from odkit.errors import UnsupportedError
    from odkit.protos import model_pb2

    base = """center_net { num_classes: 2 feature_extractor { type: "hourglass_10" }
      object_detection_task { localization_loss { l1_localization_loss {} } }
      object_center_params { classification_loss { penalty_reduced_logistic_focal_loss { alpha: 2 beta: 4 } } } }"""
    proto = text_format.Parse(base, model_pb2.DetectionModel())
    text_format.Merge(edit, proto.center_net)
    with pytest.raises(UnsupportedError) as err:
        build_model(proto, is_training=False)
    assert f"model.center_net.{where}" in str(err.value)
