"""Sample keys: a video id made safe for the webdataset convention, reversibly.

webdataset splits a member name into key and field at the first dot of its
base name (``a/b.flow_x_00001.jpg`` -> key ``a/b``, field ``flow_x_00001.jpg``),
so a key must hold no dot. The key of a video id is its UTF-8 bytes with every
byte outside ``A-Z a-z 0-9 _ -`` and ``/`` written as ``%XX`` (upper-case hex):
dots, spaces, ``%`` itself and non-ASCII letters are escaped, ``/`` (the class
folder) is kept unless the id has an empty path component (leading, trailing
or doubled ``/``), where it is escaped too, so no member name is absolute or
leaves the archive when a tar tool extracts it. Plain ids (``Biking/v_Biking_g01_c01``)
are their own key. ``decode_key`` reverses it; meta.json also holds the true id.

    "v.1 a"          -> "v%2E1%20a"
    "Café/é.x"       -> "Caf%C3%A9/%C3%A9%2Ex"
"""
from __future__ import annotations

from urllib.parse import unquote

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def encode_key(video_id: str) -> str:
    """The webdataset key of ``video_id`` (no dots; only [A-Za-z0-9_%/-])."""
    keep_slash = all(video_id.split("/"))
    out = []
    for b in video_id.encode("utf-8", "surrogatepass"):
        if b in _SAFE or (b == 0x2F and keep_slash):
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def decode_key(key: str) -> str:
    """The video id of a key made by :func:`encode_key`."""
    return unquote(key, encoding="utf-8", errors="surrogatepass")


def split_member(name: str):
    """(key, field) of a member name: the key up to the first dot of the base name."""
    head, sep, tail = name.rpartition("/")
    base_key, dot, field = tail.partition(".")
    if not dot:
        return None, name
    return (head + sep + base_key), field
