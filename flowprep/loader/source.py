"""The one place a flow sample reads a video's flow: payloads, mean vectors, adaptive ranges.

Every flow-plane read of the loader (plain, trajectory, clip) goes through
:class:`FlowSource`, which passes ``backward=`` for each flow, and ``warped=`` for the
whole source: ``FlowSource(video, cache, warped=True)`` (modality "warped-flow") reads
the warped planes (``Video.flow_payloads`` with ``(i, backward, True)`` items), their
mean vectors (``Video.mean_flow_warped[_backward]``) and adaptive ranges instead of the
plain flow's.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..store.base import Video, stat_suffix
from .stacking import FlowPair, PlaneName


class FlowSource:
    """A video's stored flow as the stacking functions read it.

    Args:
        video: the open Video.
        cache: a per-video dict kept by the dataset (parsed mean vectors live there).
        warped: read TSN's warped flow (stores made with --warped) instead of the plain flow.
    """

    __slots__ = ("video", "cache", "warped")

    def __init__(self, video: Video, cache: Dict[str, Any], warped: bool = False) -> None:
        self.video, self.cache, self.warped = video, cache, bool(warped)

    def payloads(self, items: Sequence[Tuple[int, bool]]) -> List[FlowPair]:
        """[(flow index, backward)] -> [(x, y)] stored payloads (JPEG bytes-likes or uint8
        (H, W) arrays), in order, in as few reads as the store manages."""
        if self.warped:
            return self.video.flow_payloads([(i, b, True) for i, b in items])
        return self.video.flow_payloads(items)

    def means(self, backward: bool) -> np.ndarray:
        """float32 (num_flows, 2) stored per-flow mean vectors (stored pixels), parsed once
        per cached video."""
        key = "mean" + stat_suffix(backward, self.warped)
        m = self.cache.get(key)
        if m is None:
            m = self.cache[key] = self.video.mean_flows(backward, self.warped)
        return m

    def ranges(self, i: int, backward: bool) -> Optional[np.ndarray]:
        """float32 (2, 2) [[lo_x, hi_x], [lo_y, hi_y]] of flow i (adaptive), else None."""
        return self.video.flow_ranges(i, backward, self.warped)

    def plane_name(self, i: int, backward: bool, c: int) -> PlaneName:
        """What an error names for component c (0 = x, 1 = y) of flow i."""
        return PlaneName(self.video, i, backward, c, self.warped)
