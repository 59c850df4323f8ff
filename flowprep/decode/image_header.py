"""Image sizes read from file headers, without decoding: PNG, JPEG, BMP, WebP.

``image_size(path)`` reads a few hundred bytes (JPEG: its segment headers up to
the frame header, seeking over their payloads) and returns the size the image
decodes to, (width, height) in pixels, the EXIF orientation applied as OpenCV's
``imdecode`` applies it (orientations 5-8 swap width and height; JPEG APP1
``Exif``, PNG ``eXIf``, WebP ``EXIF``). None when the file is not one of these
formats, or its header is damaged or cut short: the caller then decodes it to
learn its size (and OpenCV's own limit, ``OPENCV_IO_MAX_IMAGE_PIXELS``, guards
that decode).

The format is recognised by its signature, not by the file name (a PNG named
``.jpg`` decodes with OpenCV, so it is measured too).

    PNG   8-byte signature, then the IHDR chunk: width, height (big-endian uint32)
    JPEG  SOI, then marker segments up to a SOFn (C0-CF but C4, C8, CC):
          precision (1 byte), height, width (big-endian uint16)
    BMP   "BM", a DIB header: BITMAPCOREHEADER (12 bytes, uint16 sizes) or
          later ones (int32 sizes; a negative height is a top-down bitmap)
    WebP  RIFF "WEBP" with a "VP8 " (key frame: 14-bit sizes after the start
          code 9d 01 2a), "VP8L" (signature 0x2f, 14-bit width - 1, height - 1)
          or "VP8X" (24-bit canvas width - 1, height - 1) chunk
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Optional, Tuple

Size = Tuple[int, int]

#: segments / chunks looked at before giving up (a damaged file must not loop long)
_MAX_SEGMENTS = 4096
#: the most EXIF bytes read to find the orientation (it is in the first IFD)
_MAX_EXIF = 1 << 16


def image_size(path: str) -> Optional[Size]:
    """(width, height) in pixels that ``path`` decodes to, from its header; None when unknown.

    Never raises for a bad file (OSError included): unknown is None.
    """
    try:
        with open(path, "rb") as fh:
            return read_size(fh)
    except OSError:
        return None


def read_size(fh: BinaryIO) -> Optional[Size]:
    """``image_size`` of an open binary file positioned at its start (None when unknown)."""
    try:
        return _read_size(fh)
    except (struct.error, ValueError, IndexError):  # a header cut short or damaged
        return None


def _read_size(fh: BinaryIO) -> Optional[Size]:
    head = fh.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(fh, head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(fh)
    if head.startswith(b"BM") and len(head) >= 26:
        return _bmp(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(fh, head)
    return None


def oriented(size: Size, orientation: Optional[int]) -> Size:
    """The decoded size of an image whose header says ``size`` and EXIF ``orientation`` (1-8)."""
    w, h = size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def exif_orientation(tiff: bytes) -> Optional[int]:
    """The Orientation tag (0x0112) of IFD0 in EXIF data (a TIFF header first), or None."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    e = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return None
    (n,) = struct.unpack(e + "H", tiff[ifd:ifd + 2])
    for k in range(min(n, 512)):
        off = ifd + 2 + 12 * k
        if off + 12 > len(tiff):
            return None
        tag, typ, count = struct.unpack(e + "HHI", tiff[off:off + 8])
        if tag == 0x0112 and typ == 3 and count >= 1:
            (value,) = struct.unpack(e + "H", tiff[off + 8:off + 10])
            return value if 1 <= value <= 8 else None
    return None


def _positive(w: int, h: int) -> Optional[Size]:
    return (int(w), int(h)) if w > 0 and h > 0 else None


def _png(fh: BinaryIO, head: bytes) -> Optional[Size]:
    if head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    size = _positive(w, h)
    if size is None:
        return None
    # an eXIf chunk, if any, comes before the image data (IDAT)
    fh.seek(8 + 8 + 13 + 4)
    for _ in range(_MAX_SEGMENTS):
        hdr = fh.read(8)
        if len(hdr) < 8:
            break
        n, kind = struct.unpack(">I4s", hdr)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"eXIf":
            return oriented(size, exif_orientation(fh.read(min(n, _MAX_EXIF))))
        fh.seek(n + 4, 1)  # payload and CRC
    return size


#: JPEG frame headers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(fh: BinaryIO) -> Optional[Size]:
    fh.seek(2)
    orientation = None
    for _ in range(_MAX_SEGMENTS):
        b = fh.read(1)
        if not b:
            return None
        if b != b"\xff":
            return None  # not at a marker: a damaged file
        m = fh.read(1)
        while m == b"\xff":  # fill bytes
            m = fh.read(1)
        if not m:
            return None
        marker = m[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before a frame header
            return None
        ln = fh.read(2)
        if len(ln) < 2:
            return None
        (n,) = struct.unpack(">H", ln)
        if n < 2:
            return None
        if marker in _SOF:
            body = fh.read(5)
            if len(body) < 5:
                return None
            h, w = struct.unpack(">HH", body[1:5])
            size = _positive(w, h)  # height 0: defined later by a DNL segment (rare): unknown
            return None if size is None else oriented(size, orientation)
        if marker == 0xE1 and orientation is None:
            body = fh.read(min(n - 2, _MAX_EXIF))
            if body.startswith(b"Exif\x00\x00"):
                orientation = exif_orientation(body[6:])
            fh.seek(n - 2 - len(body), 1)
            continue
        fh.seek(n - 2, 1)
    return None


def _bmp(head: bytes) -> Optional[Size]:
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack("<HH", head[18:22])
    elif dib >= 40:
        w, h = struct.unpack("<ii", head[18:26])
        h = abs(h)
    else:
        return None
    return _positive(w, h)


def _webp(fh: BinaryIO, head: bytes) -> Optional[Size]:
    kind = head[12:16]
    if kind == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", head[26:30])
        return _positive(w & 0x3FFF, h & 0x3FFF)
    if kind == b"VP8L":
        if head[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", head[21:25])
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":
        flags = head[20]
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        size = _positive(w, h)
        if size is None or not flags & 0x08:  # no EXIF chunk
            return size
        off = 12
        for _ in range(_MAX_SEGMENTS):  # RIFF chunks: fourcc, little-endian size, padded to even
            fh.seek(off)
            hdr = fh.read(8)
            if len(hdr) < 8:
                break
            ck, n = struct.unpack("<4sI", hdr)
            if ck == b"EXIF":
                data = fh.read(min(n, _MAX_EXIF))
                if data.startswith(b"Exif\x00\x00"):
                    data = data[6:]
                return oriented(size, exif_orientation(data))
            off += 8 + n + (n & 1)
        return size
    return None
