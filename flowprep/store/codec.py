"""JPEG encode/decode of stored frames, shared by every store so bytes are identical."""
from __future__ import annotations

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


def decode_rgb(data: bytes, where: str = "") -> np.ndarray:
    """JPEG bytes -> uint8 (H, W, 3) RGB. Raises StoreError naming ``where`` if corrupt."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise StoreError(f"{where}: not a decodable JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_grey(data: bytes, where: str = "") -> np.ndarray:
    """Greyscale JPEG bytes -> uint8 (H, W). Raises StoreError naming ``where`` if corrupt."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise StoreError(f"{where}: not a decodable JPEG")
    return img
