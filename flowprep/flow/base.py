"""The interface every flow backend implements.

A backend computes dense optical flow between greyscale frames of the same
size. Flow convention (the whole project's): for a pair (prev, next) the
result d has shape (H, W, 2), dtype float32, units pixels of the given frames,
d[..., 0] = dx (to the right), d[..., 1] = dy (down), and
next(x + d(x)) ≈ prev(x).
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np


class FlowBackend:
    """Base class: subclasses set ``algo``/``implementation`` and implement ``compute``.

    Attributes:
        algo: algorithm name ("tvl1", "farneback", "dis", "brox").
        implementation: who computes it ("opencv-cpu", "opencv-cuda", "torch").
        device: "cpu" or "cuda:N".
        params: the algorithm's parameters as used (recorded in the store).
        batch_size: how many pairs ``compute_batch`` prefers at once.
    """

    algo: str = ""
    implementation: str = ""
    batch_size: int = 1

    def __init__(self, params: Dict[str, Any], device: str = "cpu") -> None:
        self.params = dict(params)
        self.device = device

    def compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow from ``prev`` to ``nxt``.

        Args:
            prev, nxt: uint8 (H, W) greyscale frames.
        Returns:
            float32 (H, W, 2) flow in pixels, [..., 0] = dx, [..., 1] = dy.
        """
        raise NotImplementedError

    def compute_batch(self, pairs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Flow for several pairs of the same size.

        Args:
            pairs: B pairs (prev, nxt) of uint8 (H, W) frames.
        Returns:
            float32 (B, H, W, 2) flows in pixels.
        """
        if len(pairs) == 1:
            return self.compute(*pairs[0])[None]  # a view: no copy on the per-frame path
        return np.stack([self.compute(a, b) for a, b in pairs])

    def describe(self) -> Dict[str, Any]:
        """What the store records about the flow computation."""
        return {
            "algo": self.algo,
            "implementation": self.implementation,
            "device": self.device,
            "params": dict(self.params),
        }
