"""POSIX tar as the wds store writes and streams it (uncompressed, 512-byte blocks).

Writing: each member is a header (:func:`member_header`: POSIX.1-2001 pax, which
falls back to a plain ustar header for short ASCII names) then the data, padded
to a 512-byte boundary; the archive ends with two zero blocks (:data:`END`).
The data of a member therefore starts right after its header, and the offset
the index records is where its bytes lie in the shard file.

Reading a whole shard in order (the streaming loader): :func:`iter_members`
yields (name, data), parsing the headers itself from 1 MiB reads (Python's
tarfile costs ~130 us a member, 6x the whole sample's stacking, at 750 members
a video), and raises a StoreError naming the shard and the member for a
truncated or corrupt archive. (``flowprep verify`` reads the shards with
tarfile, a second, independent reader.)
"""
from __future__ import annotations

import tarfile
from typing import BinaryIO, Iterator, Tuple

from ...errors import StoreError

BLOCK = 512
END = b"\0" * (2 * BLOCK)


def member_header(name: str, size: int, mtime: int) -> bytes:
    """The tar header block(s) of a regular file ``name`` of ``size`` bytes (mode 0644,
    owner 0:0, no user names)."""
    info = tarfile.TarInfo(name)
    info.size = int(size)
    info.mtime = int(mtime)
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    """Zero bytes that pad a member of ``size`` bytes to the next block."""
    return b"\0" * (-int(size) % BLOCK)


class _Reader:
    """Sequential reads of a file in large chunks; ``take`` returns zero-copy views."""

    def __init__(self, fh: BinaryIO, chunk: int = 1 << 20) -> None:
        self.fh, self.chunk = fh, chunk
        self.buf = memoryview(b"")
        self.pos = 0      # cursor inside buf
        self.offset = 0   # file offset of buf[0]

    def take(self, n: int) -> memoryview:
        """A read-only view of the next n bytes (fewer at the end of the file)."""
        if self.pos + n > len(self.buf):
            parts = [self.buf[self.pos:]]
            have = len(parts[0])
            while have < n:
                more = self.fh.read(max(self.chunk, n - have))
                if not more:
                    break
                parts.append(more)
                have += len(more)
            self.offset += self.pos
            self.buf, self.pos = memoryview(b"".join(parts)), 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def skip(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:
            self.take(n)

    @property
    def tell(self) -> int:
        return self.offset + self.pos


def _octal(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256
        n = int.from_bytes(field[1:], "big")
        return n if field[:1] == b"\x80" else n - (1 << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax(data: bytes) -> dict:
    out, i = {}, 0
    while i < len(data):
        sp = data.index(b" ", i)
        length = int(data[i:sp])
        key, _, value = data[sp + 1:i + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        i += length
    return out


def iter_members(fh: BinaryIO, where: str) -> Iterator[Tuple[str, memoryview]]:
    """(name, data) of every regular member of the tar stream ``fh``, in order; data is
    a read-only view (bytes-like) into the chunk it was read with, not copied.

    A sequential reader of POSIX tar (ustar headers, pax extended headers, GNU long
    names), reading the file in 1 MiB chunks; every header's checksum is checked.
    Raises StoreError naming ``where`` (the shard) and the member for a truncated or
    corrupt archive; non-file members (directories, links) are yielded with data
    None so the caller can report them as foreign.
    """
    r = _Reader(fh)
    last = "the first member"
    pending: dict = {}
    while True:
        at = r.tell
        header = bytes(r.take(BLOCK))
        if len(header) < BLOCK:
            if not header:
                return  # no end-of-archive blocks: tolerated, as tar does
            raise StoreError(f"{where}: {last}: truncated tar header at byte {at}; "
                             f"run flowprep verify")
        if header == b"\0" * BLOCK:
            return
        try:
            chk = _octal(header[148:156])
            if chk != sum(header) - sum(header[148:156]) + 256:  # the field counts as spaces
                raise ValueError("header checksum mismatch")
            size = _octal(header[124:136])
            kind = header[156:157]
            name = header[:100].split(b"\0", 1)[0]
            if header[257:262] == b"ustar" and header[345:346] != b"\0":
                name = header[345:500].split(b"\0", 1)[0] + b"/" + name
            name_s = name.decode("utf-8", "surrogateescape")
        except (ValueError, UnicodeError) as exc:
            raise StoreError(f"{where}: {last}: unreadable tar header at byte {at} ({exc}); "
                             f"run flowprep verify") from None
        if "path" in pending:
            name_s = pending["path"]
        if "size" in pending:
            size = int(pending["size"])
        data = r.take(size)
        if len(data) != size:
            raise StoreError(f"{where}: member {name_s}: truncated ({len(data)} of {size} "
                             f"bytes); run flowprep verify")
        r.skip(-size % BLOCK)
        if kind in (b"x", b"g", b"L"):  # metadata of the next member
            if kind == b"x":
                try:
                    pending = _pax(bytes(data))
                except ValueError as exc:
                    raise StoreError(f"{where}: {last}: unreadable pax header at byte {at} "
                                     f"({exc})") from None
            elif kind == b"L":
                pending = {"path": bytes(data).split(b"\0", 1)[0].decode("utf-8",
                                                                          "surrogateescape")}
            continue
        pending = {}
        yield name_s, (data if kind in (b"0", b"\0", b"7") else None)  # type: ignore[misc]
        last = f"the member after {name_s}"
