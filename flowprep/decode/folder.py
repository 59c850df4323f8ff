"""Frame folders as videos: a folder that directly holds image files and no videos.

Frames are the folder's images (``IMAGE_EXTENSIONS``, case-insensitive) in natural
name order (``img_2`` before ``img_10``: runs of digits compare as numbers). Image
i (0-based, in that order) is shown at ``i / input_fps`` seconds (``--input-fps``,
default ``DEFAULT_FPS`` = 25 frames/s, recorded in meta ``fps``).

The folder's size is the size most of its images share, read from their headers
before anything is decoded (``image_header.image_size``; ties go to the size of
the earlier image). Images are skipped, each with a warning naming it, as a
corrupt packet is in a video, and their time slots stay empty (the times of the
other frames do not move):

- "too large": its header declares more than ``MAX_PIXELS`` (it is never decoded);
- "other size": its header, or once decoded its pixels, give another size than
  the folder's (an image whose header is not read is decoded, then compared);
- "unreadable": it does not decode (damaged, empty, not an image).

A folder in which no image is used fails with a reason counting them by cause; so
does a folder of two or more images in which no two share a size (the reason lists
the sizes).

Seeking (``seek=S``: --start, the time chunks of a long folder) is exact: decoding
starts at image floor(S x fps), the last one shown at or before S (past the end: the
last image); the images before it are not read (their headers are: the folder's size
is the same whatever the seek). When no image from there on is used, the folder is
decoded from its first image (the frames and the failure reason are then a decode
from the start's).
"""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from fractions import Fraction
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from ..errors import ConfigError, DecodeError
from ..filetypes import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .base import DEFAULT_FPS, MAX_PIXELS, Decoder, Resize, Time, megapixels, too_large
from .image_header import image_size, read_size
from .select import as_fraction


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


#: the causes an image is skipped for, in the order failure reasons list them
SKIP_CAUSES = ("too large", "other size", "unreadable")


def folder_size(sizes: List[Optional[Tuple[int, int]]]) -> Optional[Tuple[int, int]]:
    """The size most of ``sizes`` share (ties: the earliest); None when there is none.

    Args:
        sizes: (width, height) in pixels of each image, in frame order; None for an image
            whose size is unknown (it does not vote).
    """
    counts = Counter(s for s in sizes if s is not None)
    if not counts:
        return None
    first = {}
    for k, s in enumerate(sizes):
        if s is not None:
            first.setdefault(s, k)
    return max(counts, key=lambda s: (counts[s], -first[s]))


class FolderReader(Decoder):
    """Streams a frame folder (see the module docstring).

    Args:
        path: the folder.
        resize: the output size rule.
        input_fps: frames per second of the images (their time base), > 0.
        seek: start at the image shown at S seconds (seconds, float or Fraction; see the
            module docstring); None or 0: at the first image.
        remote: a flowprep.remote.Remote when the folder is a prefix on object storage.
    """

    name = "folder"
    seekable = True

    def __init__(self, path: str, resize: Resize = Resize(), input_fps: Optional[float] = None,
                 remote=None, seek: Optional[Time] = None) -> None:
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
        self.duration = float(len(self.names) / self._fps_q)
        first = 0
        if seek is not None and seek > 0:
            # floor: the image shown at or before the seek time; past the end, the last
            # image (a selection after it is empty: said as for a decode from the start)
            first = min(math.floor(as_fraction(seek) * self._fps_q), len(self.names) - 1)
            self.seeked_to = Fraction(first) / self._fps_q
        self._first_index = self.frames_skipped = first
        self._skipped: List[str] = []  # one message per skipped image, for the warning
        self._skipped_by: Dict[str, List[str]] = {c: [] for c in SKIP_CAUSES}  # names (+ size)
        # sizes from the headers: the folder's size is the one most images share
        self._headers = [self._header(n) for n in self.names]
        usable = [s if s is not None and not too_large(*s) else None for s in self._headers]
        self._vote = folder_size(usable)
        known = [s for s in usable if s is not None]
        if len(known) >= 2 and len(set(known)) == len(known):
            listed = ", ".join(f"{n} {s[0]}x{s[1]}" for n, s in zip(self.names, usable)
                               if s is not None)
            raise DecodeError(f"{self.path}: no two of its {len(known)} images share a size "
                              f"({_clip(listed)}); a frame folder's frames have one size")
        self._size: Optional[Tuple[int, int]] = None  # the decoded size of the used images
        self._start()

    def _remote_images(self) -> List[str]:
        try:
            names = self._remote.listdir("")
        except Exception as exc:  # noqa: BLE001 - network errors
            raise DecodeError(self._remote.error(f"{self.path}: cannot list the frame folder",
                                                 exc)) from None
        return sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)
                       and not n.startswith(".")), key=natural_key)

    def _header(self, name: str) -> Optional[Tuple[int, int]]:
        """(width, height) from the image file's header, None when unknown."""
        if self._remote is None:
            return image_size(os.path.join(self.path, name))
        try:
            with self._remote.open_read(name, block=1 << 16, blocks=1) as fh:
                return read_size(fh)
        except Exception:  # noqa: BLE001 - unknown here; decoding says what is wrong
            return None

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
        n = len(self.names)
        images = f"{n} image{'s' if n != 1 else ''}"
        if len(self._skipped_by["unreadable"]) == len(self._skipped):
            return f"{self.path}: none of its {images} decodes ({'; '.join(self._skipped[:3])})"
        return f"{self.path}: none of its {images} is used: {self.skipped_summary()}"

    def _raw(self) -> Iterator[Tuple[np.ndarray, Optional[Time]]]:
        used = False
        for item in self._images(self._first_index):
            used = True
            yield item
        if not used and self._first_index:
            # no image from the seek point on is used: decode from the first image, so that
            # the outcome (frames, the failure reason) is a decode from the start's
            self._first_index = self.frames_skipped = 0
            self.seeked_to = None
            self.decode_errors = 0
            self._skipped = []
            self._skipped_by = {c: [] for c in SKIP_CAUSES}
            yield from self._images(0)
        self._last_duration = 1 / self._fps_q

    def _images(self, first: int) -> Iterator[Tuple[np.ndarray, Optional[Time]]]:
        """(rgb, time) of the images used from image ``first`` on (skips counted)."""
        for i in range(first, len(self.names)):
            name = self.names[i]
            header = self._headers[i]
            if header is not None and too_large(*header):
                w, h = header
                self._skip("too large", f"{name} {w}x{h}",
                           f"{name} is {w}x{h} ({megapixels(w, h)}), over the limit of "
                           f"{megapixels(MAX_PIXELS, 1)}; not decoded")
                continue
            want = self._size or self._vote
            if header is not None and self._vote is not None and header != self._vote:
                self._skip("other size", f"{name} {header[0]}x{header[1]}",
                           f"{name} is {header[0]}x{header[1]}, most of the folder's images "
                           f"are {want[0]}x{want[1]}")
                continue
            data = self._read(name)
            img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
            if img is None:
                self._skip("unreadable", name, f"{name} does not decode as an image (damaged or empty)")
                continue
            h, w = img.shape[:2]
            if self._size is None and (self._vote is None or header is not None
                                       or (w, h) == self._vote):
                self._size = (w, h)  # the first decoded image of the folder's size sets it
            if (w, h) != self._size:
                want = self._size or self._vote
                self._skip("other size", f"{name} {w}x{h}",
                           f"{name} is {w}x{h}, most of the folder's images are "
                           f"{want[0]}x{want[1]}")
                continue
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB), Fraction(i) / self._fps_q

    def _skip(self, cause: str, item: str, why: str) -> None:
        self.decode_errors += 1
        self._skipped.append(why)
        self._skipped_by[cause].append(item)

    def skipped_summary(self) -> str:
        """"4 skipped (other size: f_0002.png 20000x20000, ...; unreadable: x.jpg)"; "" if none."""
        if not self._skipped:
            return ""
        parts = []
        for cause in SKIP_CAUSES:
            items = self._skipped_by[cause]
            if items:
                more = f" and {len(items) - 3} more" if len(items) > 3 else ""
                parts.append(f"{cause}: {', '.join(items[:3])}{more}")
        return f"{len(self._skipped)} skipped ({'; '.join(parts)})"

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


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."
