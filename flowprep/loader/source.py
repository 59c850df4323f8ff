"""The one place a flow sample reads a video's flow: payloads, mean vectors, adaptive ranges.

Every flow-plane read of the loader (plain, trajectory, clip) goes through
:class:`FlowSource`, which passes ``backward=`` for each flow. Serving another kind of
stored flow plane (the warped flow of issue 13: ``Video.flow_payload(i, backward,
warped=True)``, ``Video.mean_flow_warped``) is a change here only: a ``warped`` argument
that these three methods pass on (and a modality that sets it).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..store.base import Video
from .stacking import FlowPair, PlaneName


class FlowSource:
    """A video's stored flow as the stacking functions read it.

    Args:
        video: the open Video.
        cache: a per-video dict kept by the dataset (parsed mean vectors live there).
    """

    __slots__ = ("video", "cache")

    def __init__(self, video: Video, cache: Dict[str, Any]) -> None:
        self.video, self.cache = video, cache

    def payloads(self, items: Sequence[Tuple[int, bool]]) -> List[FlowPair]:
        """[(flow index, backward)] -> [(x, y)] stored payloads (JPEG bytes-likes or uint8
        (H, W) arrays), in order, in as few reads as the store manages."""
        return self.video.flow_payloads(items)

    def means(self, backward: bool) -> np.ndarray:
        """float32 (num_flows, 2) stored per-flow mean vectors (stored pixels), parsed once
        per cached video."""
        key = "mean_b" if backward else "mean_f"
        m = self.cache.get(key)
        if m is None:
            v = self.video
            m = self.cache[key] = v.mean_flow_backward if backward else v.mean_flow
        return m

    def ranges(self, i: int, backward: bool) -> Optional[np.ndarray]:
        """float32 (2, 2) [[lo_x, hi_x], [lo_y, hi_y]] of flow i (adaptive), else None."""
        return self.video.flow_ranges(i, backward)

    def plane_name(self, i: int, backward: bool, c: int) -> PlaneName:
        """What an error names for component c (0 = x, 1 = y) of flow i."""
        return PlaneName(self.video, i, backward, c)
