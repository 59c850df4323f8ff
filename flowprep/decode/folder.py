"""Frame folders as videos: a folder that directly holds image files and no videos.

Frames are the folder's images (``IMAGE_EXTENSIONS``, case-insensitive) in natural
name order (``img_2`` before ``img_10``: runs of digits compare as numbers). Image
i (0-based, in that order) is shown at ``i / input_fps`` seconds (``--input-fps``,
default ``DEFAULT_FPS`` = 25 frames/s, recorded in meta ``fps``).

The first readable image sets the size. An image that does not decode (damaged,
empty, not an image) or has another size is skipped with a warning naming it, as
a corrupt packet is in a video; its time slot stays empty (the times of the other
frames do not move). A folder in which no image decodes fails with a reason.
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

from ..errors import ConfigError, DecodeError
from ..filetypes import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .base import DEFAULT_FPS, Decoder, Resize, Time


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> Tuple:
    """Sort key: digit runs compare as integers ("img_2" < "img_10"), the rest casefolded."""
    parts = _DIGITS.split(name)
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in parts if p != "")
    return key + ((2, 0, name),)  # ties (img_01 / img_1, IMG / img) broken by the exact name


def list_images(folder: str) -> List[str]:
    """Image file names directly in ``folder``, in natural order (hidden files left out)."""
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise DecodeError(f"{folder}: cannot list the frame folder ({exc.strerror or exc})") from None
    return sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
                   and os.path.isfile(os.path.join(folder, n))), key=natural_key)


def is_frame_folder(path: str) -> bool:
    """True when ``path`` is a folder that directly holds image files and no video files."""
    if not os.path.isdir(path):
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    has_image = False
    for n in names:
        low = n.lower()
        if low.endswith(VIDEO_EXTENSIONS):
            return False
        if low.endswith(IMAGE_EXTENSIONS) and not n.startswith("."):
            has_image = True
    return has_image


def check_input_fps(fps: float) -> float:
    """``fps`` as a float, or ConfigError when it is not a positive number."""
    try:
        f = float(fps)
    except (TypeError, ValueError):
        raise ConfigError(f"--input-fps must be a number of frames per second, got {fps!r}") from None
    if not (f > 0 and np.isfinite(f)):
        raise ConfigError(f"--input-fps must be positive (frames per second), got {fps}")
    return f


class FolderReader(Decoder):
    """Streams a frame folder (see the module docstring).

    Args:
        path: the folder.
        resize: the output size rule.
        input_fps: frames per second of the images (their time base), > 0.
    """

    name = "folder"

    def __init__(self, path: str, resize: Resize = Resize(), input_fps: Optional[float] = None,
                 remote=None) -> None:
        super().__init__(path, resize)
        self.fps = check_input_fps(DEFAULT_FPS if input_fps is None else input_fps)
        self._fps_q = Fraction(self.fps).limit_denominator(1_000_000)
        #: a flowprep.remote.Remote: the folder is a prefix on object storage
        self._remote = remote
        self.names = list_images(self.path) if remote is None else self._remote_images()
        if not self.names:
            raise DecodeError(f"{self.path}: a folder without images ({', '.join(IMAGE_EXTENSIONS)}) "
                              f"or videos")
        self.container_frames = len(self.names)
        self._skipped: List[str] = []
        self._size: Optional[Tuple[int, int]] = None
        self._start()

    def _remote_images(self) -> List[str]:
        try:
            names = self._remote.listdir("")
        except Exception as exc:  # noqa: BLE001 - network errors
            raise DecodeError(self._remote.error(f"{self.path}: cannot list the frame folder",
                                                 exc)) from None
        return sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)
                       and not n.startswith(".")), key=natural_key)

    def _read(self, name: str) -> Optional[np.ndarray]:
        """The image file's bytes as uint8 (n,), None when empty."""
        if self._remote is not None:
            try:
                data = self._remote.read_bytes(name)
            except Exception as exc:  # noqa: BLE001 - network errors
                raise DecodeError(self._remote.error(f"{self.path}/{name}: cannot be read",
                                                     exc)) from None
            return np.frombuffer(data, dtype=np.uint8) if data else None
        full = os.path.join(self.path, name)
        return np.fromfile(full, dtype=np.uint8) if os.path.getsize(full) else None

    def _no_frames_reason(self) -> str:
        return (f"{self.path}: none of its {len(self.names)} images decodes "
                f"({'; '.join(self._skipped[:3])})")

    def _raw(self) -> Iterator[Tuple[np.ndarray, Optional[Time]]]:
        for i, name in enumerate(self.names):
            data = self._read(name)
            img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
            if img is None:
                self._skip(f"{name} does not decode as an image (damaged or empty)")
                continue
            h, w = img.shape[:2]
            if self._size is None:
                self._size = (w, h)
            elif (w, h) != self._size:
                self._skip(f"{name} is {w}x{h}, the folder's first image is "
                           f"{self._size[0]}x{self._size[1]}")
                continue
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB), Fraction(i) / self._fps_q
        self._last_duration = 1 / self._fps_q

    def _skip(self, why: str) -> None:
        self.decode_errors += 1
        self._skipped.append(why)

    @property
    def period(self) -> Time:
        return 1 / self._fps_q

    def warnings(self) -> List[str]:
        if not self._skipped:
            return []
        more = f" (and {len(self._skipped) - 5} more)" if len(self._skipped) > 5 else ""
        return [f"skipped images: {len(self._skipped)} of {len(self.names)} not used: "
                f"{'; '.join(self._skipped[:5])}{more}"]

    def describe(self) -> dict:
        return {"name": self.name, "opencv": cv2.__version__}
