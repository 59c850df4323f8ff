"""The JPEG-directory store, readable unchanged by TSN-pytorch and mmaction2.

    OUT/<video_id>/img_00001.jpg ...       RGB frames, 1-based
    OUT/<video_id>/flow_x_00001.jpg ...    grey JPEG of dx for flow 0 (frames 1 -> 1+step)
    OUT/<video_id>/flow_y_00001.jpg ...
    OUT/<video_id>/bflow_x_00001.jpg ...   with --backward: flow from frame 1+step back to 1
    OUT/<video_id>/wflow_x_00001.jpg ...   with --warped: TSN's warped flow (camera removed)
    OUT/<video_id>/bwflow_x_00001.jpg ...  with --warped --backward: the backward warped flow
    OUT/<video_id>/meta.json               written last

A video is written into OUT/.flowprep/tmp/<run>/<n>/ and renamed into place
whole; a directory without meta.json is never a published video.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Any, Dict, List, Optional


from ...errors import StoreError
from ...fsutil import (atomic_write_json, exchange, fsync_dir, open_dir, read_json, safe_join,
                      sync_filesystem, write_bytes)
from .. import codec
from ..base import (FLOW_STREAMS, Store, StoreWriter, Video, VideoWriter, clear_failure,
                   flow_stream, stored_rgb_frames, stored_streams)

META_FILE = "meta.json"


def frame_name(kind: str, i: int) -> str:
    """File name of 0-based item i: kind 'img', or a flow stream and axis: 'flow_x',
    'flow_y', 'bflow_x', 'bflow_y', 'wflow_x', 'wflow_y', 'bwflow_x', 'bwflow_y'."""
    return f"{kind}_{i + 1:05d}.jpg"


def expected_files(meta: Dict[str, Any]) -> int:
    """Number of files a complete video directory holds (meta.json included)."""
    n = stored_rgb_frames(meta) + 2 * int(meta["num_flows"]) * len(stored_streams(meta))
    return n + 1


def list_video_dirs(root: str) -> List[str]:
    """Video ids under ``root``: directories holding meta.json (not descended into)."""
    out: List[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        d = os.path.join(root, rel) if rel else root
        if rel and os.path.isfile(os.path.join(d, META_FILE)):
            out.append(rel)
            continue
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                continue
            stack.append(f"{rel}/{e.name}" if rel else e.name)
    return sorted(out)


class JpegVideo(Video):
    def __init__(self, video_id: str, meta: Dict[str, Any], directory: str) -> None:
        super().__init__(video_id, meta)
        self.directory = directory

    def _read(self, name: str) -> bytes:
        # os.open/os.read rather than open(): no buffered file object, no fstat/isatty/lseek
        # (about half the time per file, which matters at 20 files a flow stack). A stored
        # frame is one read of up to 64 KiB; larger files and short reads (network or FUSE
        # file systems) are read on until end of file, so the bytes are always the whole file.
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.read(fd, 65536)
                if data:
                    more = os.read(fd, 65536)
                    if more:
                        parts = [data, more]
                        while more:
                            more = os.read(fd, 1 << 20)
                            parts.append(more)
                        data = b"".join(parts)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"{path}: cannot read ({exc.strerror})") from None
        return data

    def _rgb_bytes(self, i: int) -> bytes:
        return self._read(frame_name("img", i))

    def _flow_payload(self, i: int, backward: bool, warped: bool):
        p = flow_stream(backward, warped)
        return self._read(frame_name(p + "_x", i)), self._read(frame_name(p + "_y", i))


class JpegStore(Store):
    """Reader of a JPEG-directory store."""

    format = "jpeg"

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._ids: Optional[List[str]] = None

    def refresh(self) -> None:
        self._ids = None

    @property
    def video_ids(self) -> List[str]:
        if self._ids is None:
            self._ids = list_video_dirs(self.root)
        return self._ids

    def meta(self, video_id: str) -> Dict[str, Any]:
        path = os.path.join(safe_join(self.root, video_id), META_FILE)
        try:
            return read_json(path)
        except FileNotFoundError:
            raise KeyError(video_id) from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable metadata ({exc})") from None

    def __getitem__(self, video_id: str) -> JpegVideo:
        return JpegVideo(video_id, self.meta(video_id), safe_join(self.root, video_id))


class JpegVideoWriter(VideoWriter):
    def __init__(self, root: str, video_id: str, tmpdir: str, quality: int,
                 published: List[str]) -> None:
        self.root, self.video_id, self.tmpdir, self.quality = root, video_id, tmpdir, quality
        self._published = published
        self.dest = safe_join(root, video_id)
        os.makedirs(tmpdir)
        # opened before any frame is written: syncfs on it at commit reports the
        # write-back errors of every frame (see fsutil.sync_filesystem)
        self._dir_fd: Optional[int] = open_dir(tmpdir)
        self.counts = dict.fromkeys(("img",) + tuple(FLOW_STREAMS.values()), 0)

    # add_rgb / add_flow (VideoWriter) encode and call these
    def add_rgb_bytes(self, data: bytes) -> None:
        write_bytes(os.path.join(self.tmpdir, frame_name("img", self.counts["img"])), data)
        self.counts["img"] += 1

    def add_flow_bytes(self, x: bytes, y: bytes, backward: bool = False,
                       warped: bool = False) -> None:
        p = flow_stream(backward, warped)
        i = self.counts[p]
        write_bytes(os.path.join(self.tmpdir, frame_name(f"{p}_x", i)), x)
        write_bytes(os.path.join(self.tmpdir, frame_name(f"{p}_y", i)), y)
        self.counts[p] += 1

    def __del__(self) -> None:  # a writer dropped after a storage error is never aborted
        try:
            self._close_dir()
        except Exception:
            pass

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def commit(self, meta: Dict[str, Any]) -> None:
        atomic_write_json(os.path.join(self.tmpdir, META_FILE), meta)
        # Durable before visible: every frame file and the folder's entries reach the
        # disk before the rename publishes the folder, so a power loss leaves either no
        # video or a whole one (a process kill never needed this: see docs/reliability.md).
        try:
            sync_filesystem(self._dir_fd, self.tmpdir)
        finally:
            self._close_dir()
        os.makedirs(os.path.dirname(self.dest), exist_ok=True)
        trash = None
        if os.path.lexists(self.dest):
            if os.path.islink(self.dest) or not os.path.isdir(self.dest):
                raise StoreError(f"{self.dest}: exists and is not a video directory; "
                                 f"not replaced")
            if exchange(self.tmpdir, self.dest):
                # one atomic step: a reader always finds a whole video here, old or new
                trash = self.tmpdir
            else:
                trash = os.path.join(os.path.dirname(self.tmpdir), "old-" + uuid.uuid4().hex[:12])
                os.rename(self.dest, trash)
                os.rename(self.tmpdir, self.dest)
        else:
            os.rename(self.tmpdir, self.dest)
        fsync_dir(os.path.dirname(self.dest))  # the rename itself
        clear_failure(self.root, self.video_id)
        self._published.append(self.video_id)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def abort(self) -> None:
        self._close_dir()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class JpegStoreWriter(StoreWriter):
    """A worker's writer: videos are staged in ``tmp_root`` (inside OUT/.flowprep/tmp)."""

    def __init__(self, root: str, tmp_root: str, jpeg_quality: int = codec.DEFAULT_JPEG_QUALITY) -> None:
        self.root = root
        self.tmp_root = tmp_root
        self.quality = jpeg_quality
        self._published = []
        os.makedirs(tmp_root, exist_ok=True)

    def begin(self, video_id: str) -> JpegVideoWriter:
        tmpdir = os.path.join(self.tmp_root, uuid.uuid4().hex[:16])
        return JpegVideoWriter(self.root, video_id, tmpdir, self.quality, self._published)


def is_published(root: str, video_id: str, key: str) -> bool:
    """True when OUT/<video_id> is complete and was made with config ``key``."""
    try:
        d = safe_join(root, video_id)
        meta = read_json(os.path.join(d, META_FILE))
        return meta.get("config_key") == key and len(os.listdir(d)) == expected_files(meta)
    except (OSError, ValueError, KeyError, StoreError):
        return False
