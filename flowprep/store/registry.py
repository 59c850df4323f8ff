"""The store formats by name: each format is one subpackage of flowprep/store/.

    jpeg   flowprep/store/jpeg/   one folder of JPEG files per video (TSN, mmaction2)
    hdf5   flowprep/store/hdf5/   HDF5 shards, an index part per sealed shard
    wds    flowprep/store/wds/    webdataset tar shards, an index part per sealed shard

A format's package defines ``FORMAT``, a :class:`StoreFormat`: its reader, its
writer, its index (what resume counts as published), its own verify, its share
of ``flowprep inspect`` and, for sharded formats, how orphan shards are found.
Everything else dispatches through :func:`get`: ``open_store``, ``open_writer``,
resume, ``flowprep convert`` / ``verify`` / ``inspect`` / ``show`` / ``index`` and
the runners. Format packages are imported on first use, so reading a JPEG store
never imports h5py.

Byte-level copy. Every writer takes stored payloads as they are
(``VideoWriter.add_rgb_bytes`` / ``add_flow_bytes``, and ``add_flow_raw`` where the
format stores raw flow), and every reader hands them out (``Video.rgb_bytes`` /
``flow_payload``), so ``flowprep convert`` copies JPEG bytes between any pair of
formats without decoding them (:func:`flowprep.store.copy.copy_video`).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import ConfigError, StoreError

#: name -> the module defining FORMAT; in the order the CLI lists them (jpeg is the default)
_MODULES: Dict[str, str] = {
    "jpeg": "flowprep.store.jpeg",
    "hdf5": "flowprep.store.hdf5",
    "wds": "flowprep.store.wds",
}
_LOADED: Dict[str, "StoreFormat"] = {}

class StoreFormat:
    """What a store format provides (one instance per format, ``FORMAT`` in its package).

    Attributes:
        name: the name in flowprep.json and on the command line.
        sharded: True when videos live in shard files under OUT/shards, each with an
            index part under OUT/index (HDF5, wds); the shards' extension is shard_ext.
        payloads: the flow payloads its writer stores ("jpeg"; HDF5 also "raw").
    """

    name = ""
    sharded = False
    shard_ext = ""
    payloads: Tuple[str, ...] = ("jpeg",)

    # --- reading and writing -------------------------------------------------
    def open(self, root: str):
        """The Store reading ``root`` (a store of this format)."""
        raise NotImplementedError

    def writer(self, root: str, tmp_root: str, worker_tag: str, *, jpeg_quality: int,
               shard_size: int = 1 << 30, payload: str = "jpeg"):
        """A worker's StoreWriter into ``root``, staging in ``tmp_root``; ``worker_tag``
        names its shards (unique per writing process)."""
        raise NotImplementedError

    def published_keys(self, root: str) -> Dict[str, str]:
        """video_id -> config_key of every complete published video (for resume)."""
        raise NotImplementedError

    # --- sharded formats ------------------------------------------------------
    def read_index_parts(self, root: str) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
        """(parts oldest first, [(part file, reason)] unreadable); sharded formats only."""
        return [], []

    # --- the store tools ------------------------------------------------------
    def verify(self, store, col, decode: bool, progress: Optional[Callable[[str], None]]) -> None:
        """Add every problem of the published videos (and, sharded, of shards and index
        parts) to ``col`` (a flowprep.store.checks.Collector)."""
        raise NotImplementedError

    def describe(self, store) -> Dict[str, Any]:
        """Format-specific keys of ``flowprep inspect --json`` (shards, index parts, ...)."""
        return {}

    def describe_line(self, d: Dict[str, Any]) -> str:
        """The "format" line of ``flowprep inspect`` from describe_store's dict."""
        return self.name

    def video_bytes(self, store, video_id: str) -> Dict[str, int]:
        """Stored payload bytes of one video: {"rgb", "flow" (every stream, x + y), "meta"}."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<store format {self.name}>"

def names() -> Tuple[str, ...]:
    """Every format's name ("jpeg", "hdf5", "wds")."""
    return tuple(_MODULES)

def get(name: str) -> StoreFormat:
    """The registered format ``name``; ConfigError naming the choices when there is none."""
    fmt = _LOADED.get(name)
    if fmt is not None:
        return fmt
    module = _MODULES.get(name) if isinstance(name, str) else None
    if module is None:
        raise ConfigError(f"unknown store format {name!r}; choose one of {', '.join(_MODULES)}")
    fmt = importlib.import_module(module).FORMAT
    if fmt.name != name:  # pragma: no cover - a registration mistake
        raise StoreError(f"{module} registers format {fmt.name!r}, not {name!r}")
    _LOADED[name] = fmt
    return fmt

def register(name: str, module: str) -> None:
    """Add a format: ``module`` (imported on first use) defines FORMAT named ``name``."""
    _MODULES[name] = module
    _LOADED.pop(name, None)
