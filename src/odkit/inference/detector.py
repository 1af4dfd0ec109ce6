"""``Detector(model_dir).detect(image)``: run an odkit export folder on one image (numpy + Pillow only)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odkit.data.image_io import max_image_pixels
from odkit.errors import OdkitError
from odkit.fileio import safe_path
from odkit.inference.backends import BACKENDS, OnnxBackend, TorchScriptBackend
from odkit.inference.images import ImageInput, load_image
from odkit.masks import reframe_box_masks_to_image_masks

INFO_FILE = "export_info.json"
REQUIRED_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


@dataclass(frozen=True)
class Detection:
    """One detection: 1-based label-map id, name, score and box [ymin, xmin, ymax, xmax] normalized;
    Mask R-CNN exports also give ``mask``: uint8 [H, W] (0/1) in the image, TF's reframed and binarised
    (> 0.5) ``detection_masks``; keypoint exports give ``keypoints`` ((y, x) normalized to the image, one
    per keypoint) and ``keypoint_scores``."""

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    keypoints: tuple[tuple[float, float], ...] | None = field(default=None, compare=False, repr=False)
    keypoint_scores: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "class_id": self.class_id,
            "class_name": self.class_name,
            "score": round(self.score, 6),
            "box": [round(v, 6) for v in self.box],
        }
        if self.mask is not None:
            out["mask"] = mask_to_rle(self.mask)
        if self.keypoints is not None:
            out["keypoints"] = [[round(y, 6), round(x, 6)] for y, x in self.keypoints]
            out["keypoint_scores"] = [round(v, 6) for v in self.keypoint_scores or ()]
        return out

    def box_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in pixels of a width x height image."""
        ymin, xmin, ymax, xmax = self.box
        return xmin * width, ymin * height, xmax * width, ymax * height


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE {"size": [h, w], "counts": str} of a binary [H, W] mask (pycocotools' encoding,
    via faster-coco-eval's mask API)."""
    from faster_coco_eval.core import mask as mask_api

    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def read_export_info(model_dir: Path) -> dict[str, Any]:
    """Load and check model_dir/export_info.json; OdkitError naming the problem otherwise."""
    if not model_dir.exists():
        raise OdkitError(f"model folder {model_dir} not found", hint="give the --output_directory of `odkit export`")
    if not model_dir.is_dir():
        raise OdkitError(f"model path {model_dir} is not a folder", hint="give the --output_directory of `odkit export`")
    path = model_dir / INFO_FILE
    if not path.is_file():
        raise OdkitError(
            f"{model_dir} is not an odkit export folder (no {INFO_FILE})", hint="run `odkit export` to create one"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise OdkitError(f"cannot read {INFO_FILE}: {type(exc).__name__}: {str(exc)[:200]}", where=str(path),
                         hint="re-run odkit export") from None
    if not isinstance(info, dict) or not isinstance(info.get("formats"), dict) or not isinstance(info.get("outputs"), list):
        raise OdkitError(f"{INFO_FILE} lacks 'formats' / 'outputs'", where=str(path), hint="re-run odkit export")
    missing = [n for n in REQUIRED_OUTPUTS if n not in info["outputs"]]
    if missing:
        raise OdkitError(f"{INFO_FILE} outputs lack {missing}", where=str(path), hint="re-run odkit export")
    for fmt, entry in info["formats"].items():
        if isinstance(entry, dict) and entry.get("file") is not None:
            # a model folder names files inside itself only (no '..', absolute paths or symlinks out)
            safe_path(model_dir, str(entry["file"]), what=f"formats.{fmt}.file", where=str(path),
                      hint="an export folder names files inside itself only; re-run odkit export")
    classes = info.get("classes") or []
    if not isinstance(classes, list):
        raise OdkitError(f"{INFO_FILE} 'classes' must be a list", where=str(path), hint="re-run odkit export")
    for c in classes:
        if isinstance(c, dict) and "id" in c:
            cid = c["id"]
            if isinstance(cid, bool) or not isinstance(cid, (int, str)) or not str(cid).strip().isdigit():
                raise OdkitError(f"{INFO_FILE} has class id {str(cid)[:40]!r}, expected a positive integer",
                                 where=str(path), hint="re-run odkit export")
    return info


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def image_mask(box_mask: np.ndarray, box: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """One per-box mask [mh, mw] (probabilities) -> uint8 [H, W] 0/1 in the image (TF eval_util: reframe,
    then > 0.5)."""
    full = reframe_box_masks_to_image_masks(
        np.asarray(box_mask, np.float32)[None], np.asarray(box, np.float32)[None], int(image_hw[0]), int(image_hw[1])
    )
    return (full[0] > 0.5).astype(np.uint8)


class Detector:
    """An exported model ready to run: ``Detector("exported/").detect("dog.jpg")``.

    backend: "auto" (ONNX with onnxruntime when available, else TorchScript), "onnx" or "torchscript".
    min_score / max_boxes are the defaults for :meth:`detect`.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        backend: str = "auto",
        *,
        min_score: float = 0.5,
        max_boxes: int = 100,
        num_threads: int = 0,
        max_pixels: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise OdkitError(f"unknown backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
        self.model_dir = Path(model_dir)
        self.info = read_export_info(self.model_dir)
        self.min_score = float(min_score)
        self.max_boxes = int(max_boxes)
        self.max_pixels = max_image_pixels() if max_pixels is None else int(max_pixels)
        self.input_dtype = np.float32 if self.info.get("input_dtype") == "float32" else np.uint8
        self.output_names: list[str] = list(self.info["outputs"])
        self.class_names: dict[int, str] = {}
        for c in self.info.get("classes") or []:
            if isinstance(c, dict) and "id" in c:
                self.class_names[int(c["id"])] = str(c.get("display_name") or c.get("name") or f"class_{c['id']}")
        # eval_config.keypoint_edge of keypoint exports (drawing only): [(start, end), ...]
        edges = self.info.get("keypoint_edges") or []
        self.keypoint_edges: list[tuple[int, int]] = [
            (int(e[0]), int(e[1])) for e in edges if isinstance(e, list) and len(e) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in e)] if isinstance(edges, list) else []
        self.backend = self._open_backend(backend, num_threads)

    def _file(self, fmt: str) -> Path | None:
        entry = self.info["formats"].get(fmt)
        if not isinstance(entry, dict) or not entry.get("file"):
            return None
        path = safe_path(self.model_dir, str(entry["file"]), what=f"formats.{fmt}.file",
                         where=str(self.model_dir / INFO_FILE))
        if not path.is_file():
            raise OdkitError(f"{path.name} listed in {INFO_FILE} is missing", where=str(self.model_dir),
                             hint="re-run odkit export")
        return path

    def _open_backend(self, backend: str, num_threads: int) -> OnnxBackend | TorchScriptBackend:
        if backend == "auto":
            if self.info["formats"].get("onnx") and _has("onnxruntime"):
                backend = "onnx"
            elif self.info["formats"].get("torchscript") and _has("torch"):
                backend = "torchscript"
            else:
                have = ", ".join(self.info["formats"]) or "none"
                raise OdkitError(
                    f"no usable runtime for {self.model_dir} (formats: {have})",
                    hint="install onnxruntime for model.onnx, or torch for model.torchscript.pt",
                )
        path = self._file(backend)
        if path is None:
            raise OdkitError(f"{self.model_dir} has no {backend} model", hint="re-export with --formats onnx,torchscript")
        if backend == "onnx":
            return OnnxBackend(path, str(self.info.get("input_name", "input_tensor")), self.output_names, num_threads)
        return TorchScriptBackend(path, self.output_names, num_threads)

    def class_name(self, class_id: int) -> str:
        return self.class_names.get(class_id, f"class_{class_id}")

    def detect_raw(self, image: ImageInput) -> dict[str, np.ndarray]:
        """All graph outputs (batch of one) for one image."""
        pixels = load_image(image, self.max_pixels)
        return self.run_batch(pixels[None])

    def run_batch(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Graph outputs for ``[B, H, W, 3]`` pixels (B must be 1 unless the export has a dynamic batch)."""
        return self.backend.run(np.ascontiguousarray(images.astype(self.input_dtype, copy=False)))

    def to_detections(
        self, raw: dict[str, np.ndarray], index: int = 0, *, min_score: float | None = None,
        max_boxes: int | None = None, image_hw: tuple[int, int] | None = None,
    ) -> list[Detection]:
        """Detections of image ``index`` in ``raw`` with score >= min_score, at most max_boxes, best first.
        With ``image_hw`` and ``detection_masks`` in ``raw``, each detection gets its image mask."""
        min_score = self.min_score if min_score is None else float(min_score)
        max_boxes = self.max_boxes if max_boxes is None else int(max_boxes)
        n = int(np.asarray(raw["num_detections"]).reshape(-1)[index])
        boxes = np.asarray(raw["detection_boxes"])[index][:n]
        scores = np.asarray(raw["detection_scores"])[index][:n]
        classes = np.asarray(raw["detection_classes"])[index][:n]
        kps = np.asarray(raw["detection_keypoints"])[index][:n] if "detection_keypoints" in raw else None
        kp_scores = np.asarray(raw["detection_keypoint_scores"])[index][:n] \
            if "detection_keypoint_scores" in raw else None
        out = []
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < min_score or len(out) >= max_boxes:
                break
            cid = int(round(float(classes[i])))
            box = tuple(float(v) for v in np.clip(boxes[i], 0.0, 1.0))
            mask = None
            if image_hw is not None and "detection_masks" in raw:
                mask = image_mask(np.asarray(raw["detection_masks"])[index][i], boxes[i], image_hw)
            kp = kp_score = None
            if kps is not None:
                kp = tuple((float(y), float(x)) for y, x in np.clip(kps[i], 0.0, 1.0))
                kp_score = tuple(float(v) for v in (kp_scores[i] if kp_scores is not None else np.ones(len(kp))))
            out.append(Detection(cid, self.class_name(cid), float(scores[i]), box, mask,  # type: ignore[arg-type]
                                 kp, kp_score))
        return out

    def detect(
        self, image: ImageInput, *, min_score: float | None = None, max_boxes: int | None = None
    ) -> list[Detection]:
        """Detections for a path, bytes, PIL image or HxWx3 uint8 array."""
        pixels = load_image(image, self.max_pixels)
        raw = self.run_batch(pixels[None])
        return self.to_detections(raw, min_score=min_score, max_boxes=max_boxes, image_hw=pixels.shape[:2])
