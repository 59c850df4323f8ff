"""Flow on NVIDIA GPUs through OpenCV's CUDA module (cv2.cuda).

Selected only when ``cv2.cuda.getCudaEnabledDeviceCount() > 0``; PyPI's OpenCV
wheels are built without CUDA, so this needs an OpenCV built with WITH_CUDA and
opencv_contrib's cudaoptflow. Parameter mapping from the project's names
(see ``cuda_create_args``) is a pure function, tested without a GPU.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import cv2
import numpy as np

from ..errors import BackendUnavailable
from .base import FlowBackend

BROX_DEFAULTS: Dict[str, Any] = {
    "alpha": 0.197, "gamma": 50.0, "scale_factor": 0.8, "inner_iterations": 5,
    "outer_iterations": 150, "solver_iterations": 10,
}

CUDA_ALGOS = ("tvl1", "farneback", "brox")


def cuda_device_count() -> int:
    """Number of CUDA devices OpenCV can use (0 for OpenCV builds without CUDA)."""
    try:
        return int(cv2.cuda.getCudaEnabledDeviceCount())
    except (AttributeError, cv2.error):
        return 0


def cuda_create_args(algo: str, params: Dict[str, Any]) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """Map project parameters onto the cv2.cuda factory for ``algo``.

    Returns:
        (factory name in cv2.cuda, arguments of its ``create`` in their C++
        order as an ordered dict, notes): ``create`` is called positionally
        (the Python bindings' keyword names vary: ``lambda`` is a keyword);
        notes records parameters that the CUDA implementation does not have.
    """
    if algo == "tvl1":
        kwargs = {
            "tau": float(params["tau"]), "lambda": float(params["lambda"]),
            "theta": float(params["theta"]), "nscales": int(params["nscales"]),
            "warps": int(params["warps"]), "epsilon": float(params["epsilon"]),
            # CUDA TV-L1 has one iteration cap per warp; OpenCV CPU's is inner x outer.
            "iterations": int(params["inner_iterations"]) * int(params["outer_iterations"]),
            "scaleStep": float(params["scale_step"]), "gamma": float(params["gamma"]),
            "useInitialFlow": False,
        }
        notes = {"median_filtering": "not applied: cv2.cuda TV-L1 has no median filtering step"}
        return "OpticalFlowDual_TVL1", kwargs, notes
    if algo == "farneback":
        kwargs = {
            "numLevels": int(params["levels"]), "pyrScale": float(params["pyr_scale"]),
            "fastPyramids": False, "winSize": int(params["winsize"]),
            "numIters": int(params["iterations"]), "polyN": int(params["poly_n"]),
            "polySigma": float(params["poly_sigma"]), "flags": int(params["flags"]),
        }
        return "FarnebackOpticalFlow", kwargs, {}
    if algo == "brox":
        kwargs = {
            "alpha": float(params["alpha"]), "gamma": float(params["gamma"]),
            "scale_factor": float(params["scale_factor"]),
            "inner_iterations": int(params["inner_iterations"]),
            "outer_iterations": int(params["outer_iterations"]),
            "solver_iterations": int(params["solver_iterations"]),
        }
        return "BroxOpticalFlow", kwargs, {}
    raise BackendUnavailable(
        f"OpenCV's CUDA module has no {algo!r} flow; use --device cpu for {algo}, "
        f"or one of {', '.join(CUDA_ALGOS)} on CUDA")


class OpenCVCuda(FlowBackend):
    """One cv2.cuda dense optical flow object, bound to one GPU."""

    implementation = "opencv-cuda"

    def __init__(self, algo: str, params: Dict[str, Any], device: str = "cuda:0") -> None:
        super().__init__(params, device)
        self.algo = algo
        count = cuda_device_count()
        index = int(device.split(":")[1]) if ":" in device else 0
        if count == 0:
            raise BackendUnavailable(
                "this OpenCV has no CUDA (PyPI's opencv wheels are CPU-only); build OpenCV with "
                "WITH_CUDA=ON and opencv_contrib's cudaoptflow, or use --backend torch with a CUDA "
                "build of PyTorch (tvl1 only), or --device cpu")
        if index >= count:
            raise BackendUnavailable(f"{device}: OpenCV sees {count} CUDA device(s) (0..{count - 1})")
        factory, kwargs, notes = cuda_create_args(algo, params)
        cv2.cuda.setDevice(index)
        self._of = getattr(cv2.cuda, factory).create(*kwargs.values())
        self.cuda_notes = notes
        self._g0 = cv2.cuda_GpuMat()
        self._g1 = cv2.cuda_GpuMat()

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self.algo == "brox":  # Brox wants CV_32FC1 in [0, 1]
            prev = prev.astype(np.float32) / 255.0
            nxt = nxt.astype(np.float32) / 255.0
        elif self.algo == "tvl1":  # as on the CPU: never let a small frame lower nscales for good
            self._of.setNumScales(int(self.params["nscales"]))
        self._g0.upload(prev)
        self._g1.upload(nxt)
        flow = self._of.calc(self._g0, self._g1, None)
        return flow.download()

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        if self.cuda_notes:
            d["notes"] = dict(self.cuda_notes)
        return d
