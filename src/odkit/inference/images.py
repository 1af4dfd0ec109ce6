"""Image loading for inference with Pillow: EXIF orientation, any mode -> RGB, decompression-bomb guard."""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from odkit.data.image_io import DEFAULT_MAX_IMAGE_PIXELS, check_image_pixels, max_image_pixels
from odkit.errors import DataError

# Larger images are refused before decoding (odkit.data.image_io: the one decoded-pixels limit).
DEFAULT_MAX_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

ImageInput = Union[str, "os.PathLike[str]", bytes, Image.Image, np.ndarray]


def _pil_to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img) or img
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")  # L, LA, RGBA (alpha dropped, like tf.io.decode_image(channels=3)), CMYK, P


def open_image(source: str | os.PathLike[str] | bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode an image file or bytes to an RGB PIL image; raises DataError naming the file on any problem.

    ``max_pixels`` defaults to the decoded-pixels limit (``ODKIT_MAX_IMAGE_PIXELS``, 100 Mpx)."""
    max_pixels = max_image_pixels() if max_pixels is None else max_pixels
    name = "<bytes>" if isinstance(source, bytes) else os.fspath(source)
    try:
        fp: Any = io.BytesIO(source) if isinstance(source, bytes) else open(name, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"cannot read image: {exc.strerror or exc}", where=name) from None
    with fp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below
                img = Image.open(fp)
                w, h = img.size
                check_image_pixels(int(w), int(h), name, limit=max_pixels)
                img.load()
        except DataError:
            raise
        except Image.DecompressionBombError as exc:
            raise DataError(f"image refused as a possible decompression bomb: {exc}", where=name) from None
        except UnidentifiedImageError:
            raise DataError("not an image file Pillow can read", where=name) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"corrupt or truncated image: {exc}", where=name) from None
        return _pil_to_rgb(img)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"image array must be HxW, HxWx1, HxWx3 or HxWx4; got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
            raise DataError(f"image array dtype {arr.dtype} is not numeric")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError("image array has NaN or infinite values")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def load_image(image: ImageInput, max_pixels: int | None = None) -> np.ndarray:
    """Path, bytes, PIL image or numpy array -> HxWx3 uint8 RGB array.

    Files honour EXIF orientation; grayscale / RGBA / palette images become RGB. Arrays are taken as RGB
    pixel values in [0, 255] (float arrays are rounded and clipped).
    """
    max_pixels = max_image_pixels() if max_pixels is None else max_pixels
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        w, h = image.size
        check_image_pixels(int(w), int(h), limit=max_pixels)
        return np.array(_pil_to_rgb(image), dtype=np.uint8)
    if isinstance(image, (str, bytes, os.PathLike)):
        return np.array(open_image(image, max_pixels), dtype=np.uint8)
    raise DataError(f"cannot use a {type(image).__name__} as an image (give a path, bytes, PIL image or array)")
