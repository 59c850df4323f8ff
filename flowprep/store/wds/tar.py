"""POSIX tar as the wds store writes and streams it (uncompressed, 512-byte blocks).

Writing: each member is a header (:func:`member_header`: POSIX.1-2001 pax, which
falls back to a plain ustar header for short ASCII names) then the data, padded
to a 512-byte boundary; the archive ends with two zero blocks (:data:`END`).
The data of a member therefore starts right after its header, and the offset
the index records is where its bytes lie in the shard file.

Reading a whole shard in order (the streaming loader): :func:`iter_members`
yields (name, data) and turns every tarfile failure into a StoreError naming
the shard and the member.
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


def iter_members(fh: BinaryIO, where: str) -> Iterator[Tuple[str, bytes]]:
    """(name, data) of every regular member of the tar stream ``fh``, in order.

    Raises StoreError naming ``where`` (the shard) and the member for a truncated
    or corrupt archive; non-file members (directories, links) are yielded with
    data None so the caller can report them as foreign.
    """
    name = "the first member"
    try:
        with tarfile.open(fileobj=fh, mode="r|") as tf:
            for info in tf:
                name = f"member {info.name}"
                if not info.isreg():
                    yield info.name, None  # type: ignore[misc]
                    continue
                f = tf.extractfile(info)
                data = f.read() if f is not None else b""
                if len(data) != info.size:
                    raise StoreError(f"{where}: {name}: truncated ({len(data)} of "
                                     f"{info.size} bytes)")
                yield info.name, data
                name = f"the member after {info.name}"
    except StoreError:
        raise
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
        raise StoreError(f"{where}: {name}: unreadable tar data ({exc}); "
                         f"run flowprep verify") from None
