"""Numerical parity with the TF OD API itself, on fixtures the real TF OD API wrote (issue 13).

One case per fixture folder (``pipeline.config``, ``checkpoint/ckpt-0.*``, ``reference.npz``, ``README.md``
saying how each array was made): every folder of ``shared/compat/tfod_reference`` plus every subfolder of
``$ODKIT_TFOD_FIXTURES`` (locally made with ``shared/tools/tfod_reference/make_tfod_reference.py``; skipped
when unset). The TF checkpoint is read with odkit's own reader and mapped onto a model built from the
fixture's pipeline.config; the fixture's uint8 images go through odkit's resizer and preprocess.

What is compared, and how close (the scale of a tensor is max |TF value|):
- the mapping: every TF model variable consumed, every odkit parameter/buffer filled, no shape mismatch;
- preprocess outputs and true_image_shapes: 1e-4 of the scale;
- anchors, every feature map, box_encodings, class logits (eval mode, on TF's preprocessed batch): 1e-4 of
  the scale. Where float32 rounding itself exceeds that, the bound is twice odkit's own measured float32
  error on that tensor (``|odkit float32 - odkit float64|``): a deep network amplifies rounding, and the
  fixtures show TF's own float32 result as far from the float64 result as odkit's (ResNet-50 FPN 640x640:
  box_encodings 1.7e-4 (TF) vs 1.5e-4 (odkit) of the scale). A wrong computation still fails: it moves
  odkit away from TF but not from odkit's own float64 result;
- postprocess on TF's own eval predictions (decode, score converter, batched multiclass NMS, clipping):
  same classes, scores within 1e-5, boxes within 1e-4 for every TF detection with score >= 0.05;
- postprocess end to end from the images (torch and the exported ONNX model under onnxruntime): the same
  detections (class equal), scores and boxes within the bounds that follow from the already-checked
  per-anchor differences (sigmoid/softmax slope x logit difference; decoded raw box difference), never
  below 1e-5 / 1e-4;
- training-mode loss terms: the loss computed by odkit from TF's training-mode predictions (the fixture's
  groundtruth, one-hot classes zero-indexed -> label ids) within 1e-4 relative; regularization loss within
  1e-4. End to end (odkit's own training-mode forward, batch-statistics batch norm) TF's batch moments
  carry float32 reduction error: measured on the MobileNet v1 FPN fixture's first batch norm, TF's batch
  variance is up to 3.5e-5 (oneDNN) / 1.2e-5 (Eigen) relative off the float64 value, odkit's 5e-8; TF's
  two CPU backends then disagree by 1.1% of the scale at conv_pw_13 in training mode. So the end-to-end loss
  terms must agree within 1e-4, or within 4x the change that moment errors of that size (3.5e-5) cause in
  odkit's own loss (measured per fixture).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))  # as conftest
SHIPPED = SHARED / "compat" / "tfod_reference"
MAPPING_OWNERS = {"efficientdet": "tfparity-effdet", "faster_rcnn": "tfparity-frcnn", "center_net": "centernet"}
# Families whose numerical parity is claimed: the others run the mapping test only and skip the rest with a
# reason, until their owner adds them here (EfficientDet and Faster R-CNN parity is their owners' work).
PARITY_FAMILIES = {"ssd"}
# Families whose numerical parity lives in a test of its own (their tensors are not SSD-shaped).
PARITY_ELSEWHERE = {"center_net": "tests/test_tf_parity_center_net.py"}


def _fixture_dirs() -> list[Path]:
    dirs = sorted(p for p in SHIPPED.iterdir() if p.is_dir()) if SHIPPED.is_dir() else []
    extra = os.environ.get("ODKIT_TFOD_FIXTURES")
    if extra and Path(extra).is_dir():
        dirs += sorted(p for p in Path(extra).iterdir() if p.is_dir())
    return [d for d in dirs if (d / "reference.npz").is_file() and (d / "pipeline.config").is_file()]


FIXTURES = _fixture_dirs()


def rel_diff(got, want) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


class Case:
    """Everything computed once per fixture (module scope)."""

    def __init__(self, folder: Path) -> None:
        import odkit.config as config_lib
        from odkit.builders.model_builder import build_model
        from odkit.tfcompat import open_tf_checkpoint
        from odkit.tfcompat.mapping import family_of, map_tf_variables

        self.folder = folder
        self.config = config_lib.load(folder / "pipeline.config")
        self.family = family_of(self.config.model)
        self.ref = np.load(folder / "reference.npz")
        self.ckpt = open_tf_checkpoint(folder / "checkpoint")
        self.model = build_model(self.config.model, is_training=False).eval()
        try:
            self.plan = map_tf_variables(self.model, self.config.model, self.ckpt)
        except Exception as e:  # noqa: BLE001 - an unsupported family is a skip, not an error
            if type(e).__name__ == "UnsupportedError" and "no TF checkpoint mapping" in str(e):
                owner = MAPPING_OWNERS.get(self.family, "?")
                pytest.skip(f"{folder.name}: no TF name mapping for the {self.family} family yet (owner {owner})")
            raise
        self.plan.load_into(self.model, self.ckpt, strict=False)
        self._build_model = build_model

    @property
    def arch(self):
        return getattr(self.config.model, self.config.model.WhichOneof("model"))

    @functools.cached_property
    def images(self) -> list[np.ndarray]:
        out, i = [], 0
        while f"input/image_{i}_uint8" in self.ref:
            out.append(self.ref[f"input/image_{i}_uint8"])
            i += 1
        return out

    @functools.cached_property
    def resizer(self):
        from odkit.inputs.resizers import build_image_resizer

        return build_image_resizer(self.arch.image_resizer)

    @functools.cached_property
    def preprocessed(self) -> tuple[torch.Tensor, torch.Tensor]:
        pres, shapes = [], []
        with torch.no_grad():
            for img in self.images:  # one by one, as TF's inputs.transform_input_data
                resized, shape = self.resizer(torch.from_numpy(img).permute(2, 0, 1)[None].float())
                pres.append(self.model.preprocess(resized))
                shapes.append(shape)
        return torch.cat(pres), torch.cat(shapes)

    @functools.cached_property
    def tf_input(self) -> torch.Tensor:
        return torch.from_numpy(self.ref["eval/preprocess/preprocessed_inputs"]).permute(0, 3, 1, 2).contiguous()

    @functools.cached_property
    def true_shapes(self) -> torch.Tensor:
        return torch.from_numpy(self.ref["eval/preprocess/true_image_shapes"]).long()

    def _predict(self, model, x) -> dict[str, np.ndarray]:
        with torch.no_grad():
            feats = model.feature_extractor(x)
            pred = model.predict(x)
        out = {k: v.numpy() for k, v in pred.items() if k in ("box_encodings", "class_predictions_with_background",
                                                              "anchors")}
        for j, f in enumerate(feats):
            out[f"feature_maps_{j}"] = f.permute(0, 2, 3, 1).numpy()
        return out

    @functools.cached_property
    def predicted(self) -> dict[str, np.ndarray]:
        return self._predict(self.model, self.tf_input)

    @functools.cached_property
    def predicted64(self) -> dict[str, np.ndarray]:
        import copy

        m64 = copy.deepcopy(self.model).double()
        return self._predict(m64, self.tf_input.double())

    def bound(self, key: str) -> tuple[float, float]:
        """(measured relative difference to TF, allowed): 1e-4, or 2x odkit's own float32 error."""
        want = self.ref[f"eval/predict/{key}"]
        got = self.predicted[key]
        diff = rel_diff(got, want)
        if diff <= 1e-4:
            return diff, 1e-4
        noise = rel_diff(got, self.predicted64[key]) * np.abs(self.predicted64[key]).max() / np.abs(want).max()
        return diff, max(1e-4, 2.0 * noise)

    def detections(self, prediction: dict[str, torch.Tensor], shapes: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.no_grad():
            det = self.model.postprocess(prediction, shapes)
        return {k: v.numpy() for k, v in det.items()}

    @functools.cached_property
    def groundtruth(self) -> dict[str, torch.Tensor]:
        n = len(self.images)
        boxes = [self.ref[f"groundtruth/boxes_{b}"] for b in range(n)]
        ids = [self.ref[f"groundtruth/class_ids_{b}"] for b in range(n)]
        onehot = [self.ref[f"groundtruth/classes_onehot_{b}"] for b in range(n)]
        for i, o in zip(ids, onehot):  # one-hot is zero-indexed without background: ids are argmax + 1
            assert np.array_equal(i, o.argmax(axis=1) + 1)
        weights = [self.ref[f"groundtruth/weights_{b}"] for b in range(n)]
        m = max(len(b) for b in boxes)
        gt = {"boxes": torch.zeros(n, m, 4), "classes": torch.zeros(n, m, dtype=torch.int64),
              "weights": torch.zeros(n, m), "num_boxes": torch.tensor([len(b) for b in boxes])}
        for b in range(n):
            k = len(boxes[b])
            gt["boxes"][b, :k] = torch.from_numpy(boxes[b])
            gt["classes"][b, :k] = torch.from_numpy(ids[b]).long()
            gt["weights"][b, :k] = torch.from_numpy(weights[b])
        return gt

    @functools.cached_property
    def train_model(self):
        model = self._build_model(self.config.model, is_training=True)
        self.plan.load_into(model, self.ckpt, strict=False)
        return model.train()

    @functools.cached_property
    def train_prediction(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.train_model.predict(self.tf_input)


@pytest.fixture(scope="module", params=FIXTURES, ids=[p.name for p in FIXTURES])
def any_case(request) -> Case:
    torch.manual_seed(0)
    return Case(request.param)


@pytest.fixture()
def case(any_case: Case) -> Case:
    if any_case.family in PARITY_ELSEWHERE:
        pytest.skip(f"{any_case.folder.name}: {any_case.family} parity is checked by {PARITY_ELSEWHERE[any_case.family]}")
    if any_case.family not in PARITY_FAMILIES:
        owner = MAPPING_OWNERS.get(any_case.family, "?")
        pytest.skip(f"{any_case.folder.name}: numerical parity for the {any_case.family} family is not claimed "
                    f"yet (owner {owner}: add it to PARITY_FAMILIES)")
    return any_case


def test_fixtures_found(shared_dir: Path) -> None:
    assert SHIPPED.is_dir() and FIXTURES, f"no TF reference fixtures under {SHIPPED}"


def test_every_variable_mapped(any_case: Case) -> None:
    case = any_case
    plan = case.plan
    assert plan.unmatched_tf == [], f"TF variables not consumed: {plan.unmatched_tf[:10]}"
    assert plan.unfilled == [], f"odkit tensors not filled: {plan.unfilled[:10]}"
    assert plan.mismatched == []
    # every TF model variable is read; one may fill two odkit tensors (a BN without `scale`: its moving
    # variance also shapes the all-ones gamma), but no odkit tensor is filled twice
    assert {m.tf_name for m in plan.maps} == {n for n in case.ckpt.variables() if n.startswith("model/")}
    assert len({m.odkit_name for m in plan.maps}) == len(plan.maps)


def test_preprocess(case: Case) -> None:
    pre, shapes = case.preprocessed
    assert rel_diff(pre.permute(0, 2, 3, 1).numpy(), case.ref["eval/preprocess/preprocessed_inputs"]) <= 1e-4
    np.testing.assert_array_equal(shapes.numpy(), case.ref["eval/preprocess/true_image_shapes"])


def test_predict_tensors(case: Case) -> None:
    keys = ["anchors", "box_encodings", "class_predictions_with_background"]
    keys += sorted((k.split("/")[-1] for k in case.ref.files if k.startswith("eval/predict/feature_maps_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    report = {}
    for key in keys:
        diff, allowed = case.bound(key)
        report[key] = (diff, allowed)
    bad = {k: v for k, v in report.items() if v[0] > v[1]}
    assert not bad, f"relative differences above the bound (diff, bound): {bad}"


def test_postprocess_on_tf_predictions(case: Case) -> None:
    """odkit postprocess on TF's own eval predictions: decode + score converter + NMS are exact."""
    r = case.ref
    pred = {"box_encodings": torch.from_numpy(r["eval/predict/box_encodings"]),
            "class_predictions_with_background": torch.from_numpy(r["eval/predict/class_predictions_with_background"]),
            "anchors": torch.from_numpy(r["eval/predict/anchors"]),
            "preprocessed_shape": torch.tensor(case.tf_input.shape[-2:], dtype=torch.int64)}
    det = case.detections(pred, case.true_shapes)
    _assert_same_detections(det, r, score_tol=1e-5, box_tol=1e-4)
    assert rel_diff(det["raw_detection_boxes"], r["eval/postprocess/raw_detection_boxes"]) <= 1e-5


def _assert_same_detections(det: dict[str, np.ndarray], r, score_tol: float, box_tol: float) -> None:
    """Every TF detection with score >= 0.05 has an odkit twin (same class, scores/boxes within tolerance);
    odkit has no extra ones above 0.05 + score_tol. Near-ties may come out in another order."""
    tf_scores, tf_classes = r["eval/postprocess/detection_scores"], r["eval/postprocess/detection_classes"]
    tf_boxes = r["eval/postprocess/detection_boxes"]
    for b in range(tf_scores.shape[0]):
        keep = tf_scores[b] >= 0.05
        ours = det["detection_scores"][b] >= 0.05 - score_tol
        o_scores, o_boxes = det["detection_scores"][b][ours], det["detection_boxes"][b][ours]
        o_classes = det["detection_classes"][b][ours] - 1.0  # odkit: 1-based label ids; fixture: 0-based
        used = np.zeros(len(o_scores), dtype=bool)
        for s, c, box in zip(tf_scores[b][keep], tf_classes[b][keep], tf_boxes[b][keep]):
            cand = (~used) & (o_classes == c) & (np.abs(o_scores - s) <= score_tol)
            cand &= np.abs(o_boxes - box).max(axis=1) <= box_tol
            idx = np.flatnonzero(cand)
            assert len(idx), f"image {b}: TF detection class {c} score {s} box {box} has no odkit twin"
            used[idx[0]] = True
        extra = o_scores[~used]
        assert (extra < 0.05 + score_tol).all(), f"image {b}: odkit detections TF does not have: {extra}"


def _end_to_end(case: Case) -> tuple[dict[str, np.ndarray], float, float]:
    """odkit detections from the images, and the score/box tolerances implied by the measured per-anchor
    differences to TF (logits; decoded raw boxes)."""
    if not hasattr(case, "_e2e"):
        r = case.ref
        pre, shapes = case.preprocessed
        with torch.no_grad():
            pred = case.model.predict(pre)
        det = case.detections(pred, shapes)
        logits = pred["class_predictions_with_background"].numpy()
        dlogit = float(np.abs(logits - r["eval/predict/class_predictions_with_background"]).max())
        conv = case.model.score_converter
        slope = 0.25 if conv.kind == "SIGMOID" else 0.5  # max d(score)/d(logit)
        dbox = float(np.abs(det["raw_detection_boxes"] - r["eval/postprocess/raw_detection_boxes"]).max())
        case._e2e = (det, max(1e-5, slope * dlogit / conv.logit_scale), max(1e-4, dbox))
    return case._e2e


def test_postprocess_end_to_end(case: Case) -> None:
    det, score_tol, box_tol = _end_to_end(case)
    assert score_tol <= 2e-3 and box_tol <= 2e-3, (score_tol, box_tol)
    _assert_same_detections(det, case.ref, score_tol, box_tol)


TF_MOMENT_ERROR = 3.5e-5  # measured: relative error of TF's batch variance in a first-layer batch norm


def _perturbed_batch_norm(module: torch.nn.BatchNorm2d, rel: float, seed: int):
    """Training-mode batch norm whose batch moments are off by ``rel`` (variance, relative) and
    ``rel`` standard deviations (mean), with fixed random signs per channel."""
    g = torch.Generator().manual_seed(seed)
    c = module.num_features
    sv = torch.randint(0, 2, (c,), generator=g).float() * 2 - 1
    sm = torch.randint(0, 2, (c,), generator=g).float() * 2 - 1

    def forward(x):
        var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
        mean = mean + rel * sm * var.sqrt()
        var = var * (1 + rel * sv)
        scale = module.weight * torch.rsqrt(var + module.eps)
        return x * scale[None, :, None, None] + (module.bias - mean * scale)[None, :, None, None]

    return forward


def _training_loss_sensitivity(case: Case) -> dict[str, float]:
    """|loss change| when every batch norm's batch moments carry TF-sized float32 reduction errors."""
    model = case.train_model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training]
    for i, m in enumerate(norms):
        m.forward = _perturbed_batch_norm(m, TF_MOMENT_ERROR, seed=i)
    try:
        with torch.no_grad():
            perturbed = model.loss(model.predict(case.tf_input), case.groundtruth, case.true_shapes)
            own = model.loss(case.train_prediction, case.groundtruth, case.true_shapes)
    finally:
        for m in norms:
            del m.forward
    return {k: abs(float(perturbed[k]) - float(own[k])) for k in own}


def test_training_losses(case: Case) -> None:
    r = case.ref
    model = case.train_model
    pred = dict(case.train_prediction)
    with torch.no_grad():
        own = model.loss(pred, case.groundtruth, case.true_shapes)
        # the loss itself, on TF's training-mode predictions: deterministic, must agree tightly
        pred_tf = dict(pred)
        pred_tf["box_encodings"] = torch.from_numpy(r["train/predict/box_encodings"])
        has_tf_logits = "train/predict/class_predictions_with_background" in r
        if has_tf_logits:
            pred_tf["class_predictions_with_background"] = torch.from_numpy(
                r["train/predict/class_predictions_with_background"])
        on_tf = model.loss(pred_tf, case.groundtruth, case.true_shapes)
        reg = float(model.regularization_loss())
    want_reg = float(r["train/loss/Loss/regularization_loss"])
    assert abs(reg - want_reg) <= 1e-4 * abs(want_reg), (reg, want_reg)
    sensitivity = None
    for key in ("Loss/localization_loss", "Loss/classification_loss"):
        want = float(r[f"train/loss/{key}"])
        if key == "Loss/localization_loss" or has_tf_logits:  # (the shipped copies lack training logits)
            assert abs(float(on_tf[key]) - want) <= 1e-4 * abs(want), (key, float(on_tf[key]), want)
        diff = abs(float(own[key]) - want)
        if diff > 1e-4 * abs(want):
            # end to end, TF's batch statistics carry float32 reduction error; allow what errors of that
            # size do to odkit's loss (x4: one sample of a random effect)
            sensitivity = sensitivity or _training_loss_sensitivity(case)
            allowed = max(1e-4 * abs(want), 4 * sensitivity[key])
            assert diff <= allowed, (key, float(own[key]), want, allowed)


def test_exported_onnx_matches_tf(case: Case, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from odkit.export.exporter import export_model
    from odkit.export.resize import export_resizer

    export_model(case.model, export_resizer(case.resizer), tmp_path / "export", formats=("onnx",), verify=False)
    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = ["detection_boxes", "detection_scores", "detection_classes", "raw_detection_boxes"]
    per_image = [session.run(names, {"input_tensor": img[None]}) for img in case.images]
    det = {n: np.concatenate([o[i] for o in per_image]) for i, n in enumerate(names)}
    _, score_tol, box_tol = _end_to_end(case)
    _assert_same_detections(det, case.ref, score_tol, box_tol)
