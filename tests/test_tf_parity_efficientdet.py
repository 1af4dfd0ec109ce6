"""SSD EfficientDet D0 against the TF OD API, tensor for tensor (issue 13, item 5).

Fixture: ../shared/compat/tfod_reference/ssd_efficientdet_d0_512x512_coco17_tpu-8 (made by the real TF OD API;
its README says how every array was made). The model is built from the fixture's unchanged pipeline.config
and filled from its TF checkpoint with `odkit.tfcompat`; no TensorFlow is imported.

Tolerances: tensors max |odkit - TF| <= 1e-4 * max |TF| (float32, CPU); postprocess on TF's own predictions:
same classes, scores within 1e-5, boxes within 1e-4 (score >= 0.05); losses 1e-4 relative.

Why the predict-level differences are ~5e-5 of scale and not ~1e-6: TF's float32 reductions are less exact
than torch's. Measured with the TF venv (see the report of issue 13): TF's GlobalAveragePooling in the first
squeeze-excite block is 1.2e-4 (relative) off the float64 value where odkit's is 1e-7, and odkit in float64
is as far from TF as odkit in float32 is -- the residual is TF's rounding, not a semantic difference.

Training mode: TF's EfficientNet applies drop connect (Keras `Dropout(noise_shape=(None, 1, 1, 1))`) in
training, so the fixture's training-mode predictions depend on TF's random draws. Under the fixture
generator's `tf.random.set_seed(0)` right before the training `predict`, TF draws the per-sample keep masks
below (recorded with the TF venv by wrapping `Dropout.call`; the same masks in two independent TF runs). The
training-mode test replays them (`MBConvBlock.keep_mask`) and compares the losses; the localization loss is
also recomputed from TF's own training-mode box encodings, which is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = "ssd_efficientdet_d0_512x512_coco17_tpu-8"
REL = 1e-4
# block -> keep flags per batch image, TF's draws under tf.random.set_seed(0) (see the module docstring)
TF_DROP_CONNECT_KEEP = {
    "stack_1/block_1": (1, 1), "stack_2/block_1": (1, 1), "stack_3/block_1": (1, 1), "stack_3/block_2": (1, 1),
    "stack_4/block_1": (0, 0), "stack_4/block_2": (1, 1), "stack_5/block_1": (0, 1), "stack_5/block_2": (1, 1),
    "stack_5/block_3": (1, 0),
}


@pytest.fixture(scope="module")
def fixture_dir(compat_dir: Path) -> Path:
    d = compat_dir / "tfod_reference" / FIXTURE
    if not (d / "reference.npz").is_file():
        pytest.skip(f"{d} not found")
    return d


@pytest.fixture(scope="module")
def ref(fixture_dir: Path) -> dict[str, np.ndarray]:
    with np.load(fixture_dir / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def _build(fixture_dir: Path, is_training: bool):
    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.tfcompat import open_tf_checkpoint
    from odkit.tfcompat.mapping import map_tf_variables

    cfg = load(str(fixture_dir / "pipeline.config"))
    model = build_model(cfg.model, is_training=is_training)
    ckpt = open_tf_checkpoint(fixture_dir / "checkpoint")
    plan = map_tf_variables(model, cfg.model, ckpt)
    plan.load_into(model, ckpt)
    return cfg, model, plan


@pytest.fixture(scope="module")
def eval_model(fixture_dir: Path):
    cfg, model, plan = _build(fixture_dir, is_training=False)
    return cfg, model.eval(), plan


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def _close(name: str, got: torch.Tensor | np.ndarray, want: np.ndarray, rel: float = REL) -> float:
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    assert got.shape == want.shape, (name, got.shape, want.shape)
    diff = float(np.abs(got.astype(np.float64) - want).max())
    scale = float(np.abs(want).max())
    assert diff <= rel * scale, f"{name}: max |diff| {diff:.3g} > {rel:g} * scale {scale:.3g}"
    return diff / scale


def test_ssd_pads_in_normalised_space():
    """TF's SSDMetaArch.preprocess normalises, then resizes and pads: the pad value is in normalised units, so
    odkit's pixel-space pad is the pixel value the extractor maps to it (no fixture needed)."""
    from google.protobuf import text_format

    from odkit.inputs.builder import resizer_for_model
    from odkit.protos import model_pb2

    def pad(fe_type: str, extra: str = "") -> list[float]:
        text = (f'ssd {{ feature_extractor {{ type: "{fe_type}" }} image_resizer {{ keep_aspect_ratio_resizer '
                f'{{ min_dimension: 64 max_dimension: 64 pad_to_max_dimension: true {extra} }} }} }}')
        return resizer_for_model(text_format.Parse(text, model_pb2.DetectionModel())).pad_value()

    assert np.allclose(pad("ssd_efficientnet-b0_bifpn_keras"), [123.675, 116.28, 103.53])
    assert np.allclose(pad("ssd_mobilenet_v2_fpn_keras", "per_channel_pad_value: [1, 0, -1]"), [255.0, 127.5, 0.0])
    assert np.allclose(pad("ssd_resnet50_v1_fpn_keras"), [123.68, 116.779, 103.939])


def test_every_variable_consumed_and_every_tensor_filled(eval_model):
    _cfg, model, plan = eval_model
    assert plan.unmatched_tf == [] and plan.unfilled == [] and plan.mismatched == []
    # 683 TF variables (685 keys less save_counter and the object graph), each used exactly once
    assert len(plan.maps) == 683 == len({m.tf_name for m in plan.maps})


def _require_tf_resize() -> None:
    # TEMPORARY (removed when engineer tfparity-ssd's TF1 legacy resize lands on main): TF's resizers sample
    # without the half-pixel offset; main still resizes with half-pixel centres.
    from odkit.inputs import resizers

    if not hasattr(resizers, "resize_bilinear_tf_legacy"):
        pytest.skip("needs the TF1 legacy bilinear resize (odkit.inputs.resizers.resize_bilinear_tf_legacy)")


def test_preprocess_matches_tf(eval_model, ref):
    _require_tf_resize()
    from odkit.inputs.builder import resizer_for_model

    cfg, model, _plan = eval_model
    resizer = resizer_for_model(cfg.model)
    images, shapes = [], []
    for i in range(2):
        resized, true_shape = resizer(_nchw(ref[f"input/image_{i}_uint8"][None].astype(np.float32)))
        images.append(resized)
        shapes.append(true_shape)
    assert torch.cat(shapes).tolist() == ref["eval/preprocess/true_image_shapes"].tolist()
    with torch.no_grad():
        pre = model.preprocess(torch.cat(images))
    _close("preprocessed_inputs", pre.permute(0, 2, 3, 1), ref["eval/preprocess/preprocessed_inputs"])


def test_predict_tensors_match_tf(eval_model, ref):
    _cfg, model, _plan = eval_model
    x = _nchw(ref["eval/preprocess/preprocessed_inputs"])
    captured: list[list[torch.Tensor]] = []
    hook = model.feature_extractor.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            pred = model.predict(x)
    finally:
        hook.remove()
    features = captured[0]
    assert len(features) == 5
    for i, f in enumerate(features):
        _close(f"feature_maps_{i}", f.permute(0, 2, 3, 1), ref[f"eval/predict/feature_maps_{i}"])
    _close("anchors", pred["anchors"], ref["eval/predict/anchors"])
    _close("box_encodings", pred["box_encodings"], ref["eval/predict/box_encodings"])
    _close("class_predictions_with_background", pred["class_predictions_with_background"],
           ref["eval/predict/class_predictions_with_background"])


def test_postprocess_detections_match_tf(eval_model, ref):
    _cfg, model, _plan = eval_model
    pred = {"box_encodings": torch.from_numpy(ref["eval/predict/box_encodings"]),
            "class_predictions_with_background": torch.from_numpy(ref["eval/predict/class_predictions_with_background"]),
            "anchors": torch.from_numpy(ref["eval/predict/anchors"]),
            "preprocessed_shape": torch.tensor([512, 512])}
    with torch.no_grad():
        det = model.postprocess(pred, torch.from_numpy(ref["eval/preprocess/true_image_shapes"]).long())
    _check_detections(det, ref, score_tol=1e-5, box_tol=1e-4)


def _check_detections(det: dict, ref: dict, score_tol: float, box_tol: float, images=(0, 1)) -> None:
    for row, i in enumerate(images):
        scores = ref["eval/postprocess/detection_scores"][i]
        keep = scores >= 0.05
        assert keep.sum() > 10
        n = int(keep.sum())
        got = {k: np.asarray(det[k])[row][:n] for k in ("detection_classes", "detection_scores", "detection_boxes")}
        # odkit's classes are 1-based label ids; the fixture's are TF's 0-based postprocess classes
        assert np.array_equal(got["detection_classes"] - 1, ref["eval/postprocess/detection_classes"][i][:n])
        assert np.abs(got["detection_scores"] - scores[:n]).max() <= score_tol
        assert np.abs(got["detection_boxes"] - ref["eval/postprocess/detection_boxes"][i][:n]).max() <= box_tol


def test_training_losses_match_tf(fixture_dir, ref, monkeypatch):
    from odkit.models.backbones.efficientnet import MBConvBlock

    def keep_mask(self, x):
        return torch.tensor(TF_DROP_CONNECT_KEEP[self.spec.name], dtype=x.dtype).view(-1, 1, 1, 1)

    monkeypatch.setattr(MBConvBlock, "keep_mask", keep_mask)
    _cfg, model, _plan = _build(fixture_dir, is_training=True)
    model.train()
    groundtruth = {
        "boxes": torch.from_numpy(np.stack([ref["groundtruth/boxes_0"], ref["groundtruth/boxes_1"]])),
        "classes": torch.from_numpy(np.stack([ref["groundtruth/class_ids_0"], ref["groundtruth/class_ids_1"]])).long(),
        "weights": torch.from_numpy(np.stack([ref["groundtruth/weights_0"], ref["groundtruth/weights_1"]])),
        "num_boxes": torch.tensor([1, 1]),
    }
    shapes = torch.from_numpy(ref["eval/preprocess/true_image_shapes"]).long()
    with torch.no_grad():
        pred = model.predict(_nchw(ref["eval/preprocess/preprocessed_inputs"]))
        losses = dict(model.loss(pred, groundtruth, shapes))
        losses["Loss/regularization_loss"] = model.regularization_loss()
        # the loss maths alone, on TF's own training-mode box encodings: exact up to float32 rounding
        tf_pred = dict(pred, box_encodings=torch.from_numpy(ref["train/predict/box_encodings"]))
        loc_on_tf = float(model.loss(tf_pred, groundtruth, shapes)["Loss/localization_loss"])
    want_loc = float(ref["train/loss/Loss/localization_loss"])
    assert abs(loc_on_tf - want_loc) <= 1e-6 * want_loc
    for key in ("Loss/localization_loss", "Loss/classification_loss", "Loss/regularization_loss"):
        want = float(ref[f"train/loss/{key}"])
        assert abs(float(losses[key]) - want) <= REL * abs(want), (key, float(losses[key]), want)
    total = sum(float(v) for v in losses.values())
    assert abs(total - float(ref["train/loss/Loss/total_loss"])) <= REL * float(ref["train/loss/Loss/total_loss"])
    # Not an issue-13 tolerance (item 5 asks for the losses): a guard that the drop connect replay and the
    # batch-statistics batch norms are TF's (wrong masks: 0.8 of scale). TF's float32 batch statistics are
    # ~3e-4 off in variance already at the stem (measured), and TF re-run with the same masks and weights lands
    # 6e-3 of scale away from its own fixture; odkit is 1.2e-3 away.
    _close("train box_encodings", pred["box_encodings"], ref["train/predict/box_encodings"], rel=5e-3)


def test_exported_onnx_gives_tf_detections(eval_model, ref, tmp_path):
    """Export (resizer + model + postprocess in one graph), run with onnxruntime on the fixture's uint8 images.

    End to end from pixels the scores inherit the predict-level differences: the bound is what the class
    logit tolerance (REL of the logits' scale) allows through the sigmoid (slope <= 1/4); boxes within 1e-4.
    Detections are matched (class, score, box) rather than by rank, as TF's own order among scores closer than
    the tolerance is not reproducible either.
    """
    _require_tf_resize()
    ort = pytest.importorskip("onnxruntime")
    from odkit.export.compare import match_detections
    from odkit.export.exporter import export_model
    from odkit.export.resize import export_resizer
    from odkit.inputs.builder import resizer_for_model

    cfg, model, _plan = eval_model
    export_model(model, export_resizer(resizer_for_model(cfg.model)), tmp_path / "export", formats=["onnx"],
                 verify=False)
    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    score_tol = 0.25 * REL * float(np.abs(ref["eval/predict/class_predictions_with_background"]).max())
    for i in range(2):
        out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: ref[f"input/image_{i}_uint8"][None]})))
        expected = {"num_detections": ref["eval/postprocess/num_detections"][i:i + 1],
                    "detection_boxes": ref["eval/postprocess/detection_boxes"][i:i + 1],
                    "detection_scores": ref["eval/postprocess/detection_scores"][i:i + 1],
                    "detection_classes": ref["eval/postprocess/detection_classes"][i:i + 1] + 1.0}
        problems, compared, worst_box = match_detections(expected, out, min_score=0.05, box_tol=1e-4,
                                                         score_tol=score_tol)
        assert problems == [] and compared > 10, problems[:3]
        assert int(out["num_detections"][0]) == int(expected["num_detections"][0])
