"""TF Serving's REST JSON for ``:predict``: parse row / columnar requests into images, build the answers.

Runs in a worker thread (JSON and image decoding are CPU work). Every problem is a :class:`ApiError` with
TF Serving's status code and a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from odkit.data.image_io import check_image_pixels
from odkit.errors import DataError
from odkit.inference.images import load_image, open_image
from odkit.serve.models import SIGNATURE, ServedModel

MAX_INSTANCES = 256


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_image_bytes(data: bytes, where: str, max_pixels: int) -> np.ndarray:
    """JPEG / PNG / ... bytes -> HxWx3 uint8 (the same decoding as ``odkit predict``)."""
    if not data:
        raise ApiError(400, f"{where}: empty image")
    try:
        return np.asarray(open_image(data, max_pixels), dtype=np.uint8)
    except DataError as exc:
        raise ApiError(400, f"{where}: {exc.message}") from None  # hints name CLI flags, not ours


def _image_from_json(value: Any, where: str, model: ServedModel) -> np.ndarray:
    max_pixels = model.detector.max_pixels
    if isinstance(value, Mapping):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ApiError(400, f'{where}: expected {{"b64": "<base64 image bytes>"}} or a [H][W][3] list')
        try:
            data = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{where}: b64 is not valid base64") from None
        return decode_image_bytes(data, where, max_pixels)
    if not isinstance(value, list):
        raise ApiError(400, f"{where}: expected an image as a [H][W][3] list of uint8 or {{\"b64\": ...}}")
    try:
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, f"{where}: ragged nested list; an image must be [H][W][3]") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ApiError(400, f"{where}: image shape {list(arr.shape)} is not [H][W][3] with H, W > 0")
    try:
        check_image_pixels(int(arr.shape[1]), int(arr.shape[0]), where, limit=max_pixels)
    except DataError as exc:
        raise ApiError(400, f"{where}: {exc.message} (--max_pixels)") from None
    if model.input_is_float:
        if arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
            raise ApiError(400, f"{where}: expects finite numbers (DT_FLOAT), got {arr.dtype.kind!r} values")
        return load_image(arr.astype(np.float32))
    if arr.dtype.kind not in "iu":
        raise ApiError(400, f"{where}: {model.input_name} is DT_UINT8; got non-integer values")
    if arr.min() < 0 or arr.max() > 255:
        raise ApiError(400, f"{where}: {model.input_name} is DT_UINT8; values must be in [0, 255]")
    return np.ascontiguousarray(arr.astype(np.uint8))


def _unwrap_named(value: Any, where: str, model: ServedModel) -> Any:
    """``{"input_tensor": x}`` -> x (TF Serving's named-input form); a bare b64 object passes through."""
    if isinstance(value, Mapping) and "b64" not in value:
        if set(value) != {model.input_name}:
            raise ApiError(400, f"{where}: unknown input(s) {sorted(value)}; the signature's input is "
                                f"{model.input_name!r}")
        return value[model.input_name]
    return value


def parse_predict(body: bytes, model: ServedModel) -> tuple[list[np.ndarray], bool]:
    """Request body -> (images, columnar). Raises ApiError(400) for anything malformed."""
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(400, f"JSON Parse error: {exc}"[:300]) from None
    if not isinstance(req, dict):
        raise ApiError(400, "JSON Value: request body must be a JSON object with 'instances' or 'inputs'")
    sig = req.get("signature_name", SIGNATURE)
    if sig not in (SIGNATURE, "", None):
        raise ApiError(400, f'Serving signature name: "{sig}" not found in signature def')
    if ("instances" in req) == ("inputs" in req):
        raise ApiError(400, "JSON Value: request must have exactly one of 'instances' (row) or 'inputs' (columnar)")
    columnar = "inputs" in req
    if columnar:
        value = _unwrap_named(req["inputs"], "inputs", model)
        items = [value] if isinstance(value, Mapping) else value
        where = "inputs"
    else:
        items = req["instances"]
        where = "instances"
    if not isinstance(items, list) or not items:
        raise ApiError(400, f"{where}: expected a non-empty list of images")
    if len(items) > MAX_INSTANCES:
        raise ApiError(400, f"{where}: {len(items)} images in one request; at most {MAX_INSTANCES}")
    images = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        images.append(_image_from_json(item if columnar else _unwrap_named(item, w, model), w, model))
    return images, columnar


def _jsonable(arr: np.ndarray) -> Any:
    return np.asarray(arr).astype(np.float64 if arr.dtype.kind == "f" else np.int64).tolist()


def predict_response(outputs: Sequence[Mapping[str, np.ndarray]], columnar: bool) -> bytes:
    """Per-image graph outputs (each with batch dim 1) -> TF Serving's JSON answer."""
    if columnar:
        names = list(outputs[0])
        merged = {n: _jsonable(np.concatenate([o[n] for o in outputs], 0)) for n in names}
        return json.dumps({"outputs": merged}).encode()
    preds = [{n: _jsonable(v[0]) for n, v in o.items()} for o in outputs]
    return json.dumps({"predictions": preds}).encode()
