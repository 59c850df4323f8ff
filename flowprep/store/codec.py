"""JPEG encode/decode of stored frames, shared by every store so bytes are identical.

Crop decoding (the loader's fast path): ``decode_grey_crop`` / ``decode_rgb_crop``
decode only a rectangle of a stored image with libjpeg-turbo's partial decompression, through
the optional C extension ``flowprep._jpegcrop`` (built at install time when
libjpeg-turbo's headers are present, e.g. Debian's libjpeg62-turbo-dev).
Without it, or with FLOWPREP_JPEG_CROP=0 in the environment, it decodes the
whole image with cv2.imdecode and copies the rectangle: the same pixels, as
the tests check on real stored frames and planes.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from ..errors import StoreError

DEFAULT_JPEG_QUALITY = 95


def encode_rgb(rgb: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """uint8 (H, W, 3) RGB -> JPEG bytes (colour)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise StoreError("JPEG encoding of an RGB frame failed")
    return buf.tobytes()


def encode_grey(plane: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """uint8 (H, W) -> greyscale JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise StoreError("JPEG encoding of a flow plane failed")
    return buf.tobytes()


_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10: decoded as RGB


def decode_rgb(data: bytes, where: object = "") -> np.ndarray:
    """JPEG bytes -> uint8 (H, W, 3) RGB. Raises StoreError naming ``where`` if corrupt."""
    buf = np.frombuffer(data, np.uint8)
    if _IMREAD_RGB is not None:  # libjpeg writes RGB directly: no second pass
        img = cv2.imdecode(buf, _IMREAD_RGB)
    else:  # pragma: no cover - OpenCV < 4.10
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        img = None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img is None:
        raise StoreError(f"{where}: not a decodable JPEG")
    return img


def decode_grey(data: bytes, where: object = "") -> np.ndarray:
    """Greyscale JPEG bytes -> uint8 (H, W). Raises StoreError naming ``where`` if corrupt."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise StoreError(f"{where}: not a decodable JPEG")
    return img


def _load_crop_decoder() -> Optional[Callable[..., None]]:
    if os.environ.get("FLOWPREP_JPEG_CROP", "1").strip() == "0":
        return None
    try:
        # the compiled extension (a leaf: importlib, so no import of the package __init__)
        _jpegcrop = importlib.import_module("flowprep._jpegcrop")
    except ImportError:
        return None
    return _jpegcrop.decode_crop


# decode_crop(data, x, y, w, h, out, channels) of flowprep._jpegcrop, or None (whole
# decode + copy). A module attribute so that tests and benchmarks can swap it.
CROP_DECODER = _load_crop_decoder()


def decode_grey_crop(data: bytes, box: Sequence[int], out: np.ndarray, where: object = "") -> None:
    """Decode the rectangle box = (x0, y0, w, h) of a greyscale JPEG into ``out``.

    Args:
        data: the JPEG bytes of a grey plane.
        box: (x0, y0, w, h) in pixels of the stored plane; must lie inside it.
        out: uint8 (h, w), C-contiguous, written in place.
    Raises:
        StoreError naming ``where``: undecodable or truncated data (libjpeg
        warnings count as errors on the fast path), or a box outside the plane.
    """
    _decode_crop(data, box, out, where, 1)


def decode_rgb_crop(data: bytes, box: Sequence[int], out: np.ndarray, where: object = "") -> None:
    """Decode the rectangle box = (x0, y0, w, h) of a colour JPEG into ``out``, RGB order.

    Args:
        data: the JPEG bytes of an RGB frame.
        box: (x0, y0, w, h) in pixels of the stored frame; must lie inside it.
        out: uint8 (h, w, 3), C-contiguous, written in place.
    Raises:
        StoreError naming ``where``, as decode_grey_crop.
    """
    _decode_crop(data, box, out, where, 3)


def _decode_crop(data: bytes, box: Sequence[int], out: np.ndarray, where: object,
                 channels: int) -> None:
    x0, y0, w, h = (int(v) for v in box)
    dec = CROP_DECODER
    if dec is not None:
        try:
            dec(data, x0, y0, w, h, out, channels)
        except ValueError as e:
            raise StoreError(f"{where}: {e}") from None
        return
    img = decode_grey(data, where) if channels == 1 else decode_rgb(data, where)
    if x0 < 0 or y0 < 0 or x0 + w > img.shape[1] or y0 + h > img.shape[0]:
        raise StoreError(f"{where}: crop ({x0}, {y0}, {w}, {h}) does not fit the "
                         f"{img.shape[1]}x{img.shape[0]} image")
    out[...] = img[y0:y0 + h, x0:x0 + w]
