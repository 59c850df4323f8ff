"""A corpus of bad, odd and awkward video inputs, made with ffmpeg, with what must happen to each.

Used by tests/test_bad_inputs.py and benchmarks/reliability_summary.py. Every
case ends either published (with the frame count an independent decoder,
the ffmpeg command line, finds) or failed with a reason a person
understands (``reason`` is a regular expression it must match).

All videos are tiny (at most 96x64, or 32x24 for the 1100-frame one) so the
corpus builds in a few seconds and extracts in seconds with farneback or dis.
"""
from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from synth import ffmpeg_exe, translated_frames, write_video

W, H = 96, 64  # the corpus's usual frame size (width x height)


@dataclass
class Case:
    """One input of the corpus.

    Attributes:
        rel: path relative to the corpus root (class folder / file name).
        expect: "published" or "failed".
        reason: for failed cases, a regex the failure reason must match.
        size: for published cases, the expected stored (width, height) with --short-side 0.
        warning: for published cases, a regex one of meta["warnings"] must match
            (None: the video must have no warnings).
        content: compare stored RGB frames with the ffmpeg command line's decode.
        note: what the case is, for the summary table.
    """

    rel: str
    expect: str
    note: str
    reason: str = ""
    size: Optional[Tuple[int, int]] = (W, H)
    warning: Optional[str] = None
    content: bool = True


def _run(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def _boxes(data: bytes) -> Dict[bytes, Tuple[int, int]]:
    out, off = {}, 0
    while off + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[off:off + 8])
        if n < 8:
            break
        out[kind] = (off, n)
        off += n
    return out


def _h264(path: str, frames, faststart: bool = False, extra: Tuple[str, ...] = ()) -> str:
    # keyframe every 5 frames and a high bitrate: a cut or a flipped bit loses a few frames,
    # not the whole video
    args = ["-g", "5", "-crf", "10", *extra]
    if faststart:
        args += ["-movflags", "+faststart"]
    return write_video(path, frames, codec="libx264", pix_fmt="yuv420p", extra=args)


def build(root: str) -> List[Case]:
    """Write the corpus under ``root`` (created); returns its cases in a stable order."""
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix="flowprep-corpus-")
    cases: List[Case] = []
    frames30 = translated_frames(30, H, W, 1.0, 0.5, seed=1)

    def put(rel: str, make: Callable[[str], None], case: Case) -> None:
        # ffmpeg is given a plain temporary name (a leading dash would read as an option)
        dst = os.path.join(root, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = os.path.join(work, f"{len(cases)}{os.path.splitext(rel)[1]}")
        make(tmp)
        shutil.move(tmp, dst)
        cases.append(case)

    def data(rel: str, blob: bytes, case: Case) -> None:
        put(rel, lambda p: open(p, "wb").write(blob), case)

    # --- not videos at all --------------------------------------------------------
    data("broken/empty.mp4", b"", Case("broken/empty.mp4", "failed", "0-byte file",
                                       reason=r"empty file \(0 bytes\)"))
    data("broken/random_bytes.mp4", random.Random(5).randbytes(20000),
         Case("broken/random_bytes.mp4", "failed", "random bytes named .mp4",
              reason=r"not a readable video \(not a video file"))
    data("broken/notes.avi", b"this is not a video\n" * 50,
         Case("broken/notes.avi", "failed", "text named .avi", reason=r"text file, not a video"))

    # --- cut MP4s -----------------------------------------------------------------
    base = _h264(os.path.join(work, "base.mp4"), frames30)
    fast = _h264(os.path.join(work, "fast.mp4"), frames30, faststart=True)
    b = open(base, "rb").read()
    bb = _boxes(b)
    assert list(bb)[-1] == b"moov", "expected the moov atom at the end of a plain mp4"
    moov_off, moov_len = bb[b"moov"]
    data("broken/cut_before_moov.mp4", b[:moov_off],
         Case("broken/cut_before_moov.mp4", "failed", "mp4 cut before the moov atom",
              reason=r"without its index \(moov atom\).*cut short"))
    data("broken/cut_inside_moov.mp4", b[:moov_off + moov_len // 2],
         Case("broken/cut_inside_moov.mp4", "failed", "mp4 cut inside the moov atom",
              reason=r"index \(moov atom\) is cut short"))
    f = open(fast, "rb").read()
    fb = _boxes(f)
    assert list(fb)[1] == b"moov", "expected the moov atom first in a faststart mp4"
    m_off, m_len = fb[b"moov"]
    data("broken/cut_after_moov.mp4", f[:m_off + m_len + 8],
         Case("broken/cut_after_moov.mp4", "failed", "faststart mp4 cut right after the moov atom",
              reason=r"no video frames decode \(.*media data \(mdat\) is missing or cut short"))
    data("damaged/faststart_half.mp4", f[:len(f) // 2],
         Case("damaged/faststart_half.mp4", "published", "faststart mp4 cut in half",
              warning=r"^truncated: \d+ frames decoded, the container claims 30", content=False))
    # payload bit flips (past the header, inside mdat)
    flipped = bytearray(b)
    rng = random.Random(0)
    mdat_off, mdat_len = bb[b"mdat"]
    for _ in range(200):
        pos = rng.randrange(mdat_off + 200, mdat_off + mdat_len - 64)
        flipped[pos] ^= 1 << rng.randrange(8)
    data("damaged/bitflips.mp4", bytes(flipped),
         Case("damaged/bitflips.mp4", "published", "200 bit flips in the payload",
              warning=r"^(truncated|decode errors)", content=False))

    # --- no video / too few frames ----------------------------------------------
    put("broken/audio_only.mp4",
        lambda p: _run("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", p),
        Case("broken/audio_only.mp4", "failed", "audio only", reason=r"audio but no video stream"))
    put("broken/one_frame.mp4", lambda p: _h264(p, frames30[:1]),
        Case("broken/one_frame.mp4", "failed", "1 frame",
             reason=r"1 frame decoded; flow with step 1 needs at least 2"))
    put("odd/two_frames.mp4", lambda p: _h264(p, frames30[:2]),
        Case("odd/two_frames.mp4", "published", "2 frames"))

    # --- formats ------------------------------------------------------------------
    odd = translated_frames(4, 241, 321, 1.0, 0.5, seed=2)
    put("odd/odd_size_321x241.mp4",
        lambda p: write_video(p, odd, codec="libx264", pix_fmt="yuv444p"),
        Case("odd/odd_size_321x241.mp4", "published", "odd size 321x241 (H.264 4:4:4)",
             size=(321, 241)))
    put("odd/odd_size_321x241.mkv", lambda p: write_video(p, odd),
        Case("odd/odd_size_321x241.mkv", "published", "odd size 321x241 (FFV1)", size=(321, 241)))
    put("odd/yuv444p.mp4", lambda p: write_video(p, frames30[:8], codec="libx264", pix_fmt="yuv444p"),
        Case("odd/yuv444p.mp4", "published", "H.264 yuv444p"))
    put("odd/ten_bit.mp4",
        lambda p: write_video(p, frames30[:8], codec="libx264", pix_fmt="yuv420p10le"),
        Case("odd/ten_bit.mp4", "published", "H.264 10-bit (yuv420p10le)"))
    put("odd/vp9.webm",
        lambda p: write_video(p, frames30[:8], codec="libvpx-vp9", pix_fmt="yuv420p",
                              extra=["-b:v", "400k"]),
        Case("odd/vp9.webm", "published", "VP9 in WebM"))
    put("odd/mjpeg.avi", lambda p: write_video(p, frames30[:8], codec="mjpeg", pix_fmt="yuvj420p"),
        Case("odd/mjpeg.avi", "published", "MJPEG in AVI"))
    put("odd/vfr.mp4",
        lambda p: _run("-i", base, "-vf", "setpts='if(lt(N,10),N,N*3)/30/TB'", "-fps_mode", "vfr",
                       "-c:v", "libx264", p),
        Case("odd/vfr.mp4", "published", "variable frame rate"))
    put("odd/rotated_90.mp4",
        lambda p: _run("-display_rotation", "90", "-i", base, "-c", "copy", p),
        Case("odd/rotated_90.mp4", "published", "90 degree display rotation", size=(H, W)))
    long_frames = translated_frames(1100, 24, 32, 0.5, 0.25, seed=3)
    put("odd/long_1100_frames.mkv", lambda p: write_video(p, long_frames),
        Case("odd/long_1100_frames.mkv", "published", "1100 frames (> 1024)", size=(32, 24)))

    # --- awkward names -----------------------------------------------------------
    small = frames30[:3]
    for rel, note in [("names/with space.mkv", "space in the name"),
                      ("names/it's \"quoted\".mkv", "quotes in the name"),
                      ("names/-leading-dash.mkv", "leading dash"),
                      ("names/Ünïcødé 日本語.mkv", "Unicode name"),
                      ("ClassA/same.mkv", "same name in two class folders (1)"),
                      ("ClassB/same.mkv", "same name in two class folders (2)"),
                      ("names/x.avi", "x.avi and x.mkv in one folder (1)"),
                      ("names/x.mkv", "x.avi and x.mkv in one folder (2)")]:
        if rel.endswith(".avi"):
            put(rel, lambda p: write_video(p, small, codec="mjpeg", pix_fmt="yuvj420p"),
                Case(rel, "published", note))
        else:
            put(rel, lambda p: write_video(p, small), Case(rel, "published", note))
    shutil.rmtree(work, ignore_errors=True)
    return cases


def expected_ids() -> Dict[str, str]:
    """rel path -> video id for the corpus's published cases whose id is not the plain stem."""
    return {"names/x.avi": "names/x", "names/x.mkv": "names/x_mkv",
            "odd/odd_size_321x241.mkv": "odd/odd_size_321x241",
            "odd/odd_size_321x241.mp4": "odd/odd_size_321x241_mp4",
            # ids hold no whitespace (issue 17: the annotation lists split on it); the
            # name's own spelling is in the meta's original_id (docs/inputs.md)
            "names/with space.mkv": "names/with_space",
            "names/it's \"quoted\".mkv": "names/it's_\"quoted\"",
            "names/Ünïcødé 日本語.mkv": "names/Ünïcødé_日本語"}


def video_id(rel: str) -> str:
    return expected_ids().get(rel, os.path.splitext(rel)[0])


def ffmpeg_decode(path: str, rgb: bool = False) -> Tuple[int, Optional[np.ndarray]]:
    """An independent decode with the ffmpeg command line (display rotation applied).

    Returns (frame count, uint8 (N, H, W, 3) RGB frames when ``rgb``, else None).
    Frames are passed through as decoded (no frame-rate conversion).
    """
    cmd = [ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough"]
    p = subprocess.run(cmd + ["-f", "framecrc", "-"], capture_output=True, check=True)
    lines = [ln for ln in p.stdout.decode().splitlines() if ln and not ln.startswith("#")]
    if not rgb:
        return len(lines), None
    dims = [ln for ln in p.stdout.decode().splitlines() if ln.startswith("#dimensions")]
    w, h = (int(v) for v in dims[0].split(":")[1].strip().split("x"))
    raw = subprocess.run(cmd + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True,
                         check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    return len(lines), frames
