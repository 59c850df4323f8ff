"""The project's errors: one module, one base class.

Library code raises these at its public entry points; only the CLI turns them
into messages and exit codes.
"""


class FlowprepError(Exception):
    """Base class of every error flowprep raises on purpose."""


class ConfigError(FlowprepError, ValueError):
    """An option has a bad value; the message names it and the fix."""


class BackendUnavailable(FlowprepError):
    """The asked-for flow backend or device cannot run here (e.g. CUDA missing)."""


class DecodeError(FlowprepError):
    """A video cannot be decoded (unreadable, not a video, too few frames)."""


class StoreError(FlowprepError):
    """A store is missing, unreadable, or inconsistent."""


class WriteError(StoreError):
    """Writing to a store failed (disk full, I/O error, short write)."""


class DiskFullError(WriteError):
    """The store's filesystem is out of space; the run stops early."""


class LockedError(StoreError):
    """Another extract holds the store's lock for an overlapping part of the inputs."""
