"""flowprep: precompute dense optical flow for two-stream video models and serve it.

    import flowprep
    report = flowprep.extract(["videos/"], "out/", algo="tvl1")
    store = flowprep.open_store("out/")
    video = store[store.video_ids[0]]
    video.flow(0)   # float32 (H, W, 2) pixels, [..., 0] = dx, [..., 1] = dy

The package's modules never import from this file (the version lives in
flowprep/_version.py), so nothing imports in a circle; docs/code_map.md maps the code.
"""
from ._version import __version__
from .errors import FlowprepError

# extract and open_store import what they need when called: `import flowprep` (and the
# CLI, which starts its workers' fork server first) stays light


def extract(inputs, out, **options):
    """Extract frames and flow of ``inputs`` into store ``out``.

    ``inputs``: a path or a list of paths (video files, folders, .txt lists), local
    or fsspec URLs; options: the extract options (names, defaults and checks:
    flowprep.run.options.OPTIONS; preset="tsn"|"i3d"|"denseflow" starts from a
    published setup), plus ``storage_options`` (a dict for fsspec) and ``staging`` (a
    local folder for shards on their way to an ``out`` URL). Returns a Report.
    """
    if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__"):
        inputs = [inputs]
    from .run.extract import extract as _extract
    return _extract([str(i) for i in inputs], str(out), **options)


def open_store(path, storage_options=None):
    """Open a store for reading (its format, jpeg, hdf5 or wds, read from the store itself).

    ``path`` may be an fsspec URL (s3://bucket/store, gs://...); ``storage_options``
    (a dict) go to fsspec: endpoint, credentials, ... (never written anywhere).
    """
    from .store import open_store as _open_store
    return _open_store(str(path), storage_options)


def __getattr__(name):
    """``flowprep.store``, ``flowprep.loader``, ... imported on first use (PEP 562), so code
    that reaches a subpackage through the package after a bare ``import flowprep`` works
    as when this file imported them all."""
    import importlib
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["extract", "open_store", "FlowprepError", "__version__"]
