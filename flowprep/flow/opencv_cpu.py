"""Flow on the CPU through OpenCV: tvl1 (cv2.optflow DualTVL1), farneback, dis."""
from __future__ import annotations

from typing import Any, Dict

import cv2
import numpy as np

from .base import FlowBackend

FARNEBACK_DEFAULTS: Dict[str, Any] = {
    "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3,
    "poly_n": 5, "poly_sigma": 1.2, "flags": 0,
}

DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
# Preset first; the rest override the preset's values when given (None = preset's).
DIS_DEFAULTS: Dict[str, Any] = {
    "preset": "medium", "finest_scale": None, "patch_size": None, "patch_stride": None,
    "gradient_descent_iterations": None, "variational_refinement_iterations": None,
    "variational_refinement_alpha": None, "variational_refinement_delta": None,
    "variational_refinement_gamma": None, "use_mean_normalization": None,
    "use_spatial_propagation": None,
}
_DIS_SETTERS = {
    "finest_scale": "FinestScale", "patch_size": "PatchSize", "patch_stride": "PatchStride",
    "gradient_descent_iterations": "GradientDescentIterations",
    "variational_refinement_iterations": "VariationalRefinementIterations",
    "variational_refinement_alpha": "VariationalRefinementAlpha",
    "variational_refinement_delta": "VariationalRefinementDelta",
    "variational_refinement_gamma": "VariationalRefinementGamma",
    "use_mean_normalization": "UseMeanNormalization",
    "use_spatial_propagation": "UseSpatialPropagation",
}

_TVL1_SETTERS = {
    "tau": "Tau", "lambda": "Lambda", "theta": "Theta", "nscales": "ScalesNumber",
    "warps": "WarpingsNumber", "epsilon": "Epsilon", "inner_iterations": "InnerIterations",
    "outer_iterations": "OuterIterations", "scale_step": "ScaleStep", "gamma": "Gamma",
    "median_filtering": "MedianFiltering",
}


class OpenCVTVL1(FlowBackend):
    """cv2.optflow.DualTVL1OpticalFlow with OpenCV's defaults (TSN's and denseflow's)."""

    algo, implementation = "tvl1", "opencv-cpu"

    def __init__(self, params: Dict[str, Any], device: str = "cpu") -> None:
        from .tvl1_params import tvl1_params
        params = tvl1_params(params)  # a run's params come checked (flow.merge_params)
        super().__init__(params, device)
        self._of = cv2.optflow.DualTVL1OpticalFlow_create()
        for key, name in _TVL1_SETTERS.items():
            getattr(self._of, "set" + name)(params[key])

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        # calc() lowers the object's scale count for good when a frame is too small for it;
        # without this reset a small video would change the flow of every later video.
        self._of.setScalesNumber(self.params["nscales"])
        return self._of.calc(prev, nxt, None)


class OpenCVFarneback(FlowBackend):
    """cv2.calcOpticalFlowFarneback."""

    algo, implementation = "farneback", "opencv-cpu"

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        p = self.params
        return cv2.calcOpticalFlowFarneback(
            prev, nxt, None, p["pyr_scale"], p["levels"], p["winsize"], p["iterations"],
            p["poly_n"], p["poly_sigma"], p["flags"])


class OpenCVDIS(FlowBackend):
    """cv2.DISOpticalFlow from a preset (ultrafast, fast, medium), values recorded as used."""

    algo, implementation = "dis", "opencv-cpu"

    def __init__(self, params: Dict[str, Any], device: str = "cpu") -> None:
        self._of = cv2.DISOpticalFlow_create(DIS_PRESETS[params["preset"]])
        for key, name in _DIS_SETTERS.items():
            if params.get(key) is not None:
                getattr(self._of, "set" + name)(params[key])
        used = {"preset": params["preset"]}
        for key, name in _DIS_SETTERS.items():
            used[key] = getattr(self._of, "get" + name)()
        super().__init__(used, device)

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._of.calc(prev, nxt, None)
