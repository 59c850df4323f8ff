"""TV-L1's parameters, defaults and validation: one module for every TV-L1 backend.

The native backend (native_tvl1.py, flowprep._tvl1), OpenCV's (opencv_cpu.OpenCVTVL1,
cv2.optflow.DualTVL1OpticalFlow) and the torch backend (torch_tvl1.py) take the same
parameters, OpenCV's names and defaults. A run checks them once, in
``flowprep.flow.merge_params`` (in the parent process): the result is a
:class:`TVL1Params`, which the backends and ``torch_tvl1.tvl1_batch`` accept without
checking again (:func:`tvl1_params`); a plain dict given to them directly is checked.

Imports nothing heavy (numpy only): no torch, no OpenCV.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..errors import ConfigError

__all__ = ["TVL1_DEFAULTS", "TVL1Params", "tvl1_params", "validate_tvl1_params"]

#: TV-L1 parameters and their defaults (OpenCV's). Keys map one-to-one onto
#: cv2.optflow.DualTVL1OpticalFlow setters: tau -> setTau, lambda -> setLambda,
#: theta -> setTheta, nscales -> setScalesNumber, warps -> setWarpingsNumber,
#: epsilon -> setEpsilon, inner_iterations -> setInnerIterations,
#: outer_iterations -> setOuterIterations, scale_step -> setScaleStep,
#: gamma -> setGamma, median_filtering -> setMedianFiltering.
TVL1_DEFAULTS: Dict[str, Any] = {
    "tau": 0.25,
    "lambda": 0.15,
    "theta": 0.3,
    "nscales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "inner_iterations": 30,
    "outer_iterations": 10,
    "scale_step": 0.8,
    "gamma": 0.0,
    "median_filtering": 5,
}


class TVL1Params(dict):
    """Checked TV-L1 parameters: every key of ``TVL1_DEFAULTS``, ints as int, reals as
    float. Made by :func:`validate_tvl1_params` only; a plain dict otherwise (JSON, ==)."""


def tvl1_params(params: Optional[Mapping[str, Any]]) -> TVL1Params:
    """``params`` as checked TVL1Params: as they are when checked already, else checked."""
    if isinstance(params, TVL1Params):
        return params
    return validate_tvl1_params(params)


def validate_tvl1_params(params: Optional[Mapping[str, Any]]) -> "TVL1Params":
    """Merge ``params`` over ``TVL1_DEFAULTS`` and check every value.

    Args:
        params: some of the keys of ``TVL1_DEFAULTS`` (None or {} for defaults).
    Returns:
        A new TVL1Params (a dict) with every key of ``TVL1_DEFAULTS``, ints as int, reals
        as float.
    Raises:
        ConfigError: an unknown key (the message lists the valid ones) or a bad value.
    """
    params = dict(params or {})
    valid = ", ".join(TVL1_DEFAULTS)
    for key in params:
        if key not in TVL1_DEFAULTS:
            raise ConfigError(
                f"unknown TV-L1 parameter {key!r}; valid parameters are: {valid}"
            )
    merged = dict(TVL1_DEFAULTS)
    merged.update(params)

    def real(key: str, low: float, low_ok: bool, high: float = math.inf, high_ok: bool = True) -> None:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"TV-L1 parameter {key!r} must be a number, got {value!r}")
        value = float(value)
        ok_low = value >= low if low_ok else value > low
        ok_high = value <= high if high_ok else value < high
        if not (ok_low and ok_high and math.isfinite(value)):
            lo = "[" if low_ok else "("
            hi = "]" if high_ok else ")"
            raise ConfigError(
                f"TV-L1 parameter {key!r} must be in {lo}{low}, {high}{hi}, got {value!r}"
            )
        merged[key] = value

    def integer(key: str, low: int) -> None:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, (float, np.floating)) and float(value).is_integer():
                value = int(value)
            else:
                raise ConfigError(f"TV-L1 parameter {key!r} must be an integer, got {value!r}")
        value = int(value)
        if value < low:
            raise ConfigError(f"TV-L1 parameter {key!r} must be >= {low}, got {value!r}")
        merged[key] = value

    real("tau", 0.0, False)
    real("lambda", 0.0, False)
    real("theta", 0.0, False)
    real("epsilon", 0.0, True)
    real("scale_step", 0.0, False, 1.0, False)
    real("gamma", 0.0, True)
    integer("nscales", 1)
    integer("warps", 1)
    integer("inner_iterations", 1)
    integer("outer_iterations", 1)
    integer("median_filtering", 0)
    if merged["median_filtering"] not in (0, 1, 3, 5):
        raise ConfigError(
            "TV-L1 parameter 'median_filtering' must be 3 or 5 (the median filter size, "
            f"as cv2.medianBlur allows for float flow) or 0/1 for none, got {merged['median_filtering']!r}"
        )
    return TVL1Params(merged)
