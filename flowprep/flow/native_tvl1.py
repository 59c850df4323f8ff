"""flowprep's compiled TV-L1 (the C extension flowprep._tvl1): the CPU default for tvl1.

It runs the algorithm and parameters of ``cv2.optflow.DualTVL1OpticalFlow``
(names and defaults: ``TVL1_DEFAULTS``), one pair per call on one core, with
the GIL released, ten or more times faster than OpenCV's (docs/native_tvl1.md
has the algorithm, the exact differences from OpenCV and the figures).

Frames: uint8 or float32 (H, W) arrays, grey values in [0, 255] either way
(OpenCV's ``calc`` multiplies float32 frames by 255; this does not, like the
torch backend). Any size from 1x1 up: levels whose side would be under 16
pixels are not built (level 0 always is), worked out per call, so a small
video never changes the flow of a later one.

Flow: float32 (H, W, 2) in pixels, [..., 0] = dx, [..., 1] = dy, with
next(x + d(x)) ~ prev(x).

Availability: where the extension did not build (no C compiler at install
time) or ``FLOWPREP_NO_NATIVE=1`` is set, ``native_available()`` is False,
``--backend auto`` falls back to OpenCV (``fallback_message`` says so and how
to get the fast path) and ``--backend native`` raises BackendUnavailable.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, ConfigError
from .base import FlowBackend
from .tvl1_params import TVL1_DEFAULTS, tvl1_params, validate_tvl1_params

try:  # the optional C extension
    # the compiled extension (a leaf: importlib, so no import of the package __init__)
    _ext = importlib.import_module("flowprep._tvl1")
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _ext = None

#: Set to "1" to act as if the extension were missing (tests, comparisons).
NO_NATIVE_ENV = "FLOWPREP_NO_NATIVE"

_HOW_TO_GET_IT = ("install a C compiler (Debian/Ubuntu: apt-get install build-essential) "
                  "and reinstall flowprep (pip install --force-reinstall --no-deps "
                  "--no-build-isolation -e . in a clone, or make venv)")

__all__ = ["NO_NATIVE_ENV", "NativeTVL1", "fallback_message", "native_available",
           "native_isa", "tvl1_flow", "TVL1_DEFAULTS"]


def native_available() -> bool:
    """True when flowprep._tvl1 is importable and FLOWPREP_NO_NATIVE is not "1"."""
    return _ext is not None and os.environ.get(NO_NATIVE_ENV, "") != "1"


def native_isa() -> Optional[str]:
    """The instruction set the hot loops dispatch to here ("avx2", "avx",
    "sse2", or "generic" without runtime dispatch); None without the extension."""
    return _ext.isa() if _ext is not None else None


def fallback_message() -> str:
    """The one line shown when auto falls back to OpenCV for tvl1."""
    if _ext is None:
        why = "flowprep's compiled TV-L1 (flowprep._tvl1) is not built"
    elif os.environ.get(NO_NATIVE_ENV, "") == "1":
        why = f"{NO_NATIVE_ENV}=1 is set"
    else:
        why = "flowprep's compiled TV-L1 is not in use"
    return (f"note: {why}; TV-L1 runs on OpenCV's DualTVL1, about 25x slower. "
            f"For the fast path, {_HOW_TO_GET_IT}.")


def _require() -> Any:
    if not native_available():
        if _ext is None:
            raise BackendUnavailable(
                "--backend native asked for, but flowprep's compiled TV-L1 (flowprep._tvl1) is "
                f"not built; {_HOW_TO_GET_IT}, or choose --backend opencv")
        raise BackendUnavailable(
            f"--backend native asked for, but {NO_NATIVE_ENV}=1 is set; unset it or choose --backend opencv")
    return _ext


def _frame(a: Any, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ConfigError(f"{name} frame must be a numpy array, got {type(a).__name__}")
    if a.ndim != 2 or a.dtype not in (np.uint8, np.float32):
        raise ConfigError(
            f"{name} frame must be a uint8 or float32 (H, W) greyscale array, got {a.dtype} {a.shape}")
    if a.dtype == np.float32 and not np.isfinite(a).all():
        raise ConfigError(f"{name} frame has non-finite values (NaN or inf)")
    return np.ascontiguousarray(a)


def tvl1_flow(prev: np.ndarray, nxt: np.ndarray, params: Optional[Mapping[str, Any]] = None,
              *, stats: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, List[Dict[str, Any]]]]:
    """TV-L1 flow from ``prev`` to ``nxt`` with the compiled implementation.

    Args:
        prev, nxt: uint8 or float32 (H, W) grey frames (values in [0, 255]),
            same shape and dtype, any size from 1x1.
        params: TV-L1 parameters merged over ``TVL1_DEFAULTS`` (validated as
            for the torch backend).
        stats: also return the time per pyramid level and stage.
    Returns:
        float32 (H, W, 2) flow in pixels ([..., 0] = dx, [..., 1] = dy); with
        ``stats``, (flow, levels): one dict per level, finest first, with
        height, width, warps, medians (median-filter passes), iterations
        (inner iterations run), and thread CPU seconds warp_s (bicubic warp and
        data term), median_s, iterate_s (inner iterations), resize_s (level 0:
        building the pyramid; others: upsampling the flow from this level).
    Raises:
        ConfigError: bad frames or parameters. BackendUnavailable: no extension.
    """
    return _compute(_require(), prev, nxt, validate_tvl1_params(params), stats)


def _compute(ext: Any, prev: np.ndarray, nxt: np.ndarray, p: Dict[str, Any], stats: bool = False):
    """tvl1_flow with validated parameters ``p`` (the backend validates them once)."""
    a, b = _frame(prev, "prev"), _frame(nxt, "next")
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ConfigError(f"prev and next differ: {a.dtype} {a.shape} vs {b.dtype} {b.shape}")
    if min(a.shape) < 1 or max(a.shape) > 65535:
        raise ConfigError(f"frames must be 1 to 65535 pixels a side, got {a.shape}")
    out = np.empty(a.shape + (2,), np.float32)
    levels = ext.compute(a, b, out, p["tau"], p["lambda"], p["theta"], p["nscales"], p["warps"],
                         p["epsilon"], p["inner_iterations"], p["outer_iterations"], p["scale_step"],
                         p["gamma"], p["median_filtering"], stats=stats)
    return (out, levels) if stats else out


class NativeTVL1(FlowBackend):
    """TV-L1 by flowprep._tvl1 on the CPU (see the module docstring).

    Args:
        params: TV-L1 parameters (keys of ``TVL1_DEFAULTS``) merged over the defaults.
        device: must be "cpu".
    Raises:
        ConfigError: unknown parameter (the valid ones are listed) or bad value.
        BackendUnavailable: the extension is missing or disabled.
    """

    algo = "tvl1"
    implementation = "native"

    def __init__(self, params: Optional[Dict[str, Any]] = None, device: str = "cpu") -> None:
        if device != "cpu":
            raise BackendUnavailable(f"the native TV-L1 runs on the CPU only, got device {device!r}")
        checked = tvl1_params(params)  # a run's params come checked (flow.merge_params)
        super().__init__(checked, "cpu")
        self.params = checked
        self._ext = _require()

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from ``prev`` to ``nxt``: uint8 (H, W) in, float32 (H, W, 2) pixels out."""
        return _compute(self._ext, prev, nxt, self.params)

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["isa"] = native_isa()
        return info
