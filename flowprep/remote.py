"""Object storage, format-independent: fsspec URLs (s3://, gs://, any fsspec protocol).

    is_url(text)                         "s3://bucket/key" -> True; a local path -> False
    filesystem(url, storage_options)     -> (fsspec filesystem, path inside it)
    Remote(url, storage_options)         a root URL: list, read, write whole objects,
                                         upload a local file (retried), open for range reads
    parse_storage_options(["k=v", ...])  the CLI's --storage-option values -> dict
    redact(url), scrub(text, options)    credentials out of anything shown or written

Credentials and endpoints are resolved as the ecosystem does: the protocol's
package (s3fs, gcsfs, ...) reads the standard environment variables and
profiles (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
AWS_ENDPOINT_URL for S3-compatible servers; GOOGLE_APPLICATION_CREDENTIALS);
``storage_options`` (``--storage-option KEY=VALUE``) pass anything else to the
filesystem's constructor (``endpoint_url``, ``key``, ``secret``, ``anon``, ...;
a dotted key such as ``client_kwargs.region_name`` sets a nested dict). They
live in memory only: flowprep never writes them into a store, a record or a
log line (:func:`scrub` removes their values from every message, and
:func:`redact` the ``user:password@`` part of a URL).

Reads. :meth:`Remote.open_read` opens an object for byte-range reads through a
bounded block cache (``READ_BLOCK`` bytes a block, at most ``READ_BLOCKS``
blocks an open object), so a reader never downloads a whole object first.

Writes. Whole objects only (:meth:`Remote.put_file`, :meth:`Remote.write_bytes`):
on object stores (S3, GCS, Azure) a PUT, multipart or not, is atomic: a reader
sees the complete object or none. Other protocols get a temporary name then a
move. A failed upload is retried (``UPLOAD_TRIES`` attempts, exponential
back-off) and then raises WriteError; nothing half-written is ever visible.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .errors import ConfigError, WriteError

#: protocols whose PUT is atomic (no reader ever sees a partial object)
ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}
#: the extra that brings the protocol packages
CLOUD_EXTRA = "pip install 'flowprep[cloud]'"
#: byte-range reads: block size and blocks kept per open object (the cache bound)
READ_BLOCK = 1 << 20
READ_BLOCKS = 16
#: video inputs: larger blocks (demuxing reads forward)
VIDEO_BLOCK = 4 << 20
VIDEO_BLOCKS = 4
#: uploads: attempts and the first back-off (doubled each time)
UPLOAD_TRIES = int(os.environ.get("FLOWPREP_UPLOAD_TRIES", "4"))
UPLOAD_BACKOFF = float(os.environ.get("FLOWPREP_UPLOAD_BACKOFF", "1.0"))

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
             "abfs": "adlfs", "abfss": "adlfs"}


def protocol(text: str) -> str:
    """The URL's protocol ("s3", "gs", ...), "" for a local path."""
    m = _URL.match(os.fspath(text)) if isinstance(text, (str, os.PathLike)) else None
    return m.group(1).lower() if m else ""


def is_url(text: Any) -> bool:
    """True for an fsspec URL other than file:// (a local path, handled as one)."""
    return isinstance(text, str) and protocol(text) not in ("", "file", "local")


def local_path(text: str) -> str:
    """A file:// URL as a plain path; anything else unchanged."""
    if protocol(text) in ("file", "local"):
        return text.split("://", 1)[1]
    return text


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part (what is shown and recorded)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/@]*@", r"\1", str(url))


def _secrets(options: Optional[Mapping[str, Any]]) -> List[str]:
    out: List[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, Mapping):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, str) and len(v) >= 4 and v.lower() not in ("true", "false", "none"):
            out.append(v)

    walk(options or {})
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                 "GOOGLE_APPLICATION_CREDENTIALS_JSON"):
        v = os.environ.get(name)
        if v and len(v) >= 4:
            out.append(v)
    return sorted(set(out), key=len, reverse=True)


def scrub(text: str, options: Optional[Mapping[str, Any]] = None) -> str:
    """``text`` with every storage-option value and credential variable's value replaced
    by ``***``, and URLs' ``user:password@`` parts removed."""
    text = re.sub(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*:[^/@\s]*@", r"\1", str(text))
    for s in _secrets(options):
        # endpoints are not secrets, and hiding them would make errors unreadable
        if s.startswith(("http://", "https://")):
            continue
        text = text.replace(s, "***")
    return text


def parse_storage_options(items: Iterable[str]) -> Dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> dict; values "true"/"false"/"none" and numbers are typed,
    a dotted key (``client_kwargs.region_name=x``) sets a nested dict.

    Raises ConfigError for an item without '='.
    """
    out: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--storage-option takes KEY=VALUE, got {item.split('=')[0]!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError("--storage-option takes KEY=VALUE with a non-empty KEY")
        v: Any = value
        low = value.lower()
        if low in ("true", "false"):
            v = low == "true"
        elif low == "none":
            v = None
        else:
            try:
                v = int(value)
            except ValueError:
                try:
                    v = float(value) if re.fullmatch(r"[0-9.eE+\-]+", value) else value
                except ValueError:
                    v = value
        d = out
        parts = key.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"--storage-option {key}: {p} is set both as a value and a dict")
        d[parts[-1]] = v
    return out


def filesystem(url: str, storage_options: Optional[Mapping[str, Any]] = None):
    """(fsspec filesystem, path inside it) for ``url``.

    Raises ConfigError naming the extra to install when the protocol's package is
    missing (``pip install 'flowprep[cloud]'``), or naming the protocol when fsspec
    knows no such protocol.
    """
    proto = protocol(url)
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        raise ConfigError(f"{redact(url)}: URLs need fsspec: {CLOUD_EXTRA}") from None
    # listings are never cached: other jobs publish into the same store while we run,
    # and a cached listing would hide their objects (or ours, from another instance)
    options = {"use_listings_cache": False, **dict(storage_options or {})}
    try:
        try:
            return fsspec.core.url_to_fs(url, **options)
        except TypeError:  # a filesystem that takes no such option
            return fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        pkg = _PACKAGES.get(proto, f"the fsspec package for {proto}://")
        raise ConfigError(f"{redact(url)}: {proto}:// URLs need {pkg}, which is not installed: "
                          f"{CLOUD_EXTRA} ({scrub(str(exc), storage_options)})") from None
    except ValueError as exc:
        raise ConfigError(f"{redact(url)}: unknown protocol {proto}:// "
                          f"({scrub(str(exc), storage_options)})") from None
    except TypeError as exc:
        raise ConfigError(f"{redact(url)}: a storage option {proto}:// does not take "
                          f"({scrub(str(exc), storage_options)})") from None


def join(url: str, *parts: str) -> str:
    """``url`` / parts, with exactly one '/' between."""
    out = url.rstrip("/")
    for p in parts:
        if p:
            out += "/" + p.strip("/")
    return out


class Remote:
    """A root URL on object storage and what flowprep does there (picklable: the
    filesystem is made again where it is used; ``storage_options`` stay in memory).

    Args:
        url: the root (``s3://bucket/prefix``).
        storage_options: passed to fsspec (credentials, endpoint, ...).

    Attributes:
        url: the root as given, without a trailing '/'.
        display: the root without credentials (what messages show).
        protocol: "s3", "gs", ...
    """

    def __init__(self, url: str, storage_options: Optional[Mapping[str, Any]] = None) -> None:
        self.url = str(url).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.display = redact(self.url)
        self.protocol = protocol(self.url)
        self._fs = None
        self._root = ""
        self._pid = 0

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None
        state["_pid"] = 0
        return state

    def __repr__(self) -> str:
        return f"Remote({self.display!r})"

    # --- the filesystem -------------------------------------------------
    @property
    def fs(self):
        """The fsspec filesystem (made once per process)."""
        if self._fs is None or self._pid != os.getpid():
            self._fs, self._root = filesystem(self.url, self.storage_options)
            self._root = self._root.rstrip("/")
            self._pid = os.getpid()
        return self._fs

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` under the root."""
        self.fs  # noqa: B018 - sets _root
        return join(self._root, rel) if rel else self._root

    def where(self, rel: str = "") -> str:
        """``rel`` under the root as shown to people (no credentials)."""
        return join(self.display, rel) if rel else self.display

    def error(self, what: str, exc: BaseException) -> str:
        return scrub(f"{what} ({type(exc).__name__}: {exc})", self.storage_options)

    # --- reading --------------------------------------------------------
    def info(self, rel: str = "") -> Optional[Dict[str, Any]]:
        """The object's info dict (``size``, ``type``), or None when there is none."""
        try:
            return self.fs.info(self.path(rel))
        except FileNotFoundError:
            return None

    def exists(self, rel: str = "") -> bool:
        return self.info(rel) is not None

    def listdir(self, rel: str = "") -> Dict[str, int]:
        """Names directly under ``rel`` (objects only) -> size in bytes; {} when none.
        Listed afresh every time (listings are not cached, see :func:`filesystem`)."""
        try:
            entries = self.fs.ls(self.path(rel), detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for e in entries:
            if e.get("type") == "directory":
                continue
            name = e["name"].rstrip("/").rsplit("/", 1)[-1]
            out[name] = int(e.get("size") or 0)
        return out

    def find(self, rel: str = "") -> Dict[str, int]:
        """Every object below ``rel``, recursively: path relative to ``rel`` -> size."""
        base = self.path(rel)
        try:
            self.fs.invalidate_cache(base)
        except Exception:  # noqa: BLE001 - not every filesystem caches listings
            pass
        found = self.fs.find(base, detail=True)
        out = {}
        for name, e in found.items():
            if e.get("type") == "directory":
                continue
            full = name.rstrip("/")
            stripped = base.split("://", 1)[-1].rstrip("/")
            rel_name = full[len(stripped):].lstrip("/") if full.startswith(stripped) else full
            out[rel_name] = int(e.get("size") or 0)
        return out

    def read_bytes(self, rel: str) -> bytes:
        """The whole (small) object; FileNotFoundError when missing."""
        return self.fs.cat_file(self.path(rel))

    def read_many(self, rels: Sequence[str]) -> Dict[str, Any]:
        """rel -> bytes (or the exception) for many small objects, fetched concurrently."""
        if not rels:
            return {}
        paths = [self.path(r) for r in rels]
        got = self.fs.cat(paths, on_error="return")
        if not isinstance(got, dict):  # one path: fsspec returns the bytes
            got = {paths[0]: got}
        by_path = {self.fs._strip_protocol(k): v for k, v in got.items()}
        out = {}
        for r, p in zip(rels, paths):
            out[r] = by_path.get(self.fs._strip_protocol(p), FileNotFoundError(p))
        return out

    def open_read(self, rel: str = "", block: int = READ_BLOCK, blocks: int = READ_BLOCKS):
        """A binary file object reading ``rel`` by byte ranges through a block cache of at
        most ``blocks`` x ``block`` bytes (the object is never downloaded whole first)."""
        return self.fs.open(self.path(rel), "rb", block_size=block, cache_type="blockcache",
                            cache_options={"maxblocks": blocks})

    # --- writing --------------------------------------------------------
    def _retry(self, what: str, fn, *args) -> None:
        delay = UPLOAD_BACKOFF
        last: Optional[BaseException] = None
        for attempt in range(max(1, UPLOAD_TRIES)):
            try:
                fn(*args)
                return
            except (FileNotFoundError, PermissionError) as exc:
                last = exc  # a missing bucket or no right to write: retrying will not help
                break
            except Exception as exc:  # noqa: BLE001 - network errors come in many types
                last = exc
                if attempt + 1 < UPLOAD_TRIES:
                    time.sleep(delay)
                    delay *= 2
                    self._fs = None  # a new connection pool after a network error
        raise WriteError(self.error(f"{what}: upload failed after "
                                    f"{max(1, UPLOAD_TRIES)} tries", last)) from None

    def put_file(self, local: str, rel: str) -> None:
        """Upload the local file ``local`` as the whole object ``rel`` (atomic, retried).

        Raises WriteError when every try failed (nothing visible under ``rel``, or what
        was there before).
        """
        def put() -> None:
            dest = self.path(rel)
            if self.protocol in ATOMIC_PUT:
                self.fs.put_file(local, dest)
            else:
                tmp = f"{dest}.tmp-{uuid.uuid4().hex[:8]}"
                self.fs.put_file(local, tmp)
                self.fs.mv(tmp, dest)
        self._retry(self.where(rel), put)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` as the whole object ``rel`` (atomic, retried); WriteError on failure."""
        def put() -> None:
            dest = self.path(rel)
            if self.protocol in ATOMIC_PUT:
                self.fs.pipe_file(dest, data)
            else:
                tmp = f"{dest}.tmp-{uuid.uuid4().hex[:8]}"
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, dest)
        self._retry(self.where(rel), put)

    def remove(self, rel: str) -> bool:
        """Delete the object ``rel``; True when it was there. Errors other than a missing
        object are raised as WriteError."""
        try:
            self.fs.rm_file(self.path(rel))
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise WriteError(self.error(f"{self.where(rel)}: cannot delete", exc)) from None

    def invalidate(self) -> None:
        try:
            self.fs.invalidate_cache()
        except Exception:  # noqa: BLE001
            pass


def split_url(url: str) -> Tuple[str, str]:
    """("s3://bucket/a/b", "c.mp4") for "s3://bucket/a/b/c.mp4"."""
    head, _, tail = url.rstrip("/").rpartition("/")
    return head, tail


__all__ = ["is_url", "protocol", "local_path", "redact", "scrub", "parse_storage_options",
           "filesystem", "join", "Remote", "split_url"]
