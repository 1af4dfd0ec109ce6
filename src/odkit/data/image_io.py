"""Encoded image bytes -> RGB uint8 tensors, sizes and formats.

``decode_image`` uses torchvision's native decoders (JPEG / PNG, EXIF orientation applied) and falls
back to Pillow for everything else (GIF, CMYK JPEG, BMP, WebP, ...). Output is always ``[3, H, W]`` RGB.
torch is imported lazily so the converters and ``records inspect`` stay light.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from odkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import torch

# torchvision 0.29 warns that its image codecs are deprecated (in favour of torchcodec); they are what we use.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

# The decoded-pixels limit (records, converters, predict, serving): a small file can decode to gigabytes.
# Configurable with the environment variable ODKIT_MAX_IMAGE_PIXELS (an integer, e.g. 400000000).
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "ODKIT_MAX_IMAGE_PIXELS"
# Pillow's own guard stays as a backstop above ours (it raises at twice this value).
Image.MAX_IMAGE_PIXELS = None


def max_image_pixels() -> int:
    """The decoded-pixels limit: ``$ODKIT_MAX_IMAGE_PIXELS`` or 100 Mpx."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{MAX_PIXELS_ENV}={text!r} is not an integer") from None
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV} must be >= 1, got {value}")
    return value


def check_image_pixels(width: int, height: int, where: str | None = None, limit: int | None = None) -> None:
    """DataError if a ``width`` x ``height`` image is over the decoded-pixels limit (or has no pixels)."""
    limit = max_image_pixels() if limit is None else limit
    if width < 1 or height < 1:
        raise DataError(f"image has no pixels ({width}x{height})", where=where)
    if width * height > limit:
        raise DataError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} Mpx, over the {limit / 1e6:.0f} Mpx limit "
            "on decoded pixels (possible decompression bomb)",
            where=where, hint=f"resize it, or raise the limit with {MAX_PIXELS_ENV}=N",
        )


def sniff_format(data: bytes) -> str | None:
    """The true format from magic bytes: 'jpeg', 'png', 'gif', 'bmp', 'webp', 'tiff' or None."""
    head = bytes(data[:16])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _pil_open(data: bytes, where: str | None) -> Image.Image:
    """Pillow image from bytes (header only), refused when over the decoded-pixels limit."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DataError(f"image too large ({exc})", where=where) from exc
    except Image.UnidentifiedImageError:
        raise DataError("cannot read image (not a format Pillow can read)", where=where) from None
    except Exception as exc:
        raise DataError(f"cannot read image ({type(exc).__name__}: {str(exc)[:200]})", where=where) from None
    w, h = img.size
    check_image_pixels(int(w), int(h), where)
    return img


def image_size(data: bytes, where: str | None = None) -> tuple[int, int]:
    """(height, width) as stored (no EXIF rotation), read from the header only."""
    img = _pil_open(data, where)
    w, h = img.size
    return int(h), int(w)


def image_info(data: bytes, where: str | None = None, check: bool = True) -> dict[str, Any]:
    """{'format', 'height', 'width', 'mode'}; with ``check`` the pixel data is decoded (JPEG at 1/8 scale
    via draft mode, cheap) so truncated / corrupt files raise DataError."""
    img = _pil_open(data, where)
    fmt = (img.format or "").lower() or (sniff_format(data) or "unknown")
    w, h = img.size
    info = {"format": "jpeg" if fmt == "mpo" else fmt, "height": int(h), "width": int(w), "mode": img.mode}
    if check:
        try:
            if fmt in ("jpeg", "mpo"):
                img.draft("RGB", (max(1, w // 8), max(1, h // 8)))
            img.load()
        except Exception as exc:
            raise DataError(f"corrupt or truncated image ({exc})", where=where) from exc
    return info


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image -> RGB (alpha composited on black as TF decoders drop it, palette expanded)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def decode_image_pil(data: bytes, where: str | None = None, exif: bool = True) -> Image.Image:
    """Decode with Pillow to an RGB image (first frame of animations), EXIF orientation applied."""
    img = _pil_open(data, where)
    try:
        img.load()
        if exif:
            img = ImageOps.exif_transpose(img) or img
        return pil_to_rgb(img)
    except Exception as exc:
        raise DataError(f"cannot decode image ({type(exc).__name__}: {exc})", where=where) from exc


def decode_image(data: bytes, where: str | None = None) -> torch.Tensor:
    """Encoded bytes -> uint8 tensor [3, H, W], RGB, EXIF orientation honoured."""
    import numpy as np
    import torch
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as tv_decode

    fmt = sniff_format(data)
    if fmt in ("jpeg", "png"):
        _pil_open(data, where)  # header only: the decoded-pixels limit before torchvision allocates
        try:
            buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                out = tv_decode(buf, mode=ImageReadMode.RGB, apply_exif_orientation=True)
            if out.ndim == 3 and out.shape[0] == 3:
                return out
        except Exception:  # CMYK, odd PNGs, truncated: let Pillow try (and report)
            pass
    img = decode_image_pil(data, where)
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    """RGB JPEG bytes of a Pillow image."""
    buf = io.BytesIO()
    pil_to_rgb(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_mask_png(data: bytes, where: str | None = None) -> np.ndarray:
    """An instance-mask PNG -> uint8 [H, W] 0/1 (nonzero pixels are the object, TF decode_image channels=1
    then > 0; colour / palette PNGs: any nonzero channel)."""
    import numpy as np

    img = _pil_open(data, where)
    check_image_pixels(img.width, img.height, where)
    try:
        if img.mode in ("1", "L", "I", "I;16", "F"):
            arr = np.asarray(img)
        else:
            arr = np.asarray(img.convert("RGB")).max(axis=-1)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot decode mask PNG ({exc})", where=where) from exc
    return (arr > 0).astype(np.uint8)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """uint8 / bool [H, W] -> 0/1 grayscale PNG bytes (TF create_coco_tf_record.py's encoding)."""
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()
