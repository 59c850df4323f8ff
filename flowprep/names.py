"""What a video id may hold: no whitespace and no control characters.

A store's annotation lists are "<video dir> <count> <label>" lines, which mmaction2
(``line.split()``) and TSN-pytorch (``line.strip().split(' ')``) split on whitespace, so
flowprep.inputs replaces each such character of an input's name by '_' and keeps the
name's own spelling in the video's meta as ``original_id``. A store looks a name up by
either spelling (``Store.resolve_id``).
"""
from __future__ import annotations


def unsafe_char(c: str) -> bool:
    """Control characters and whitespace (str.isspace: space, tab, U+3000...)."""
    return ord(c) < 32 or ord(c) == 127 or c.isspace()


def has_unsafe(name: str) -> bool:
    return any(unsafe_char(c) for c in name)


def replace_unsafe(name: str) -> str:
    """``name`` with each whitespace or control character replaced by '_'."""
    return "".join("_" if unsafe_char(c) else c for c in name)
