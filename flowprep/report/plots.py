"""The report's figures: matplotlib (Agg canvas, no pyplot, no display), returned as PNG bytes.

Each function takes plain numbers (from the rows of report/stats.py) and returns
the bytes of one small PNG (``SIZE`` inches at ``DPI``). The PNG carries no date or
version metadata, so the same numbers give the same bytes.
"""
from __future__ import annotations

import io
from typing import Dict, List, Sequence, Tuple

import numpy as np

SIZE = (4.2, 2.9)   #: inches
DPI = 80            #: pixels per inch: a figure is 336 x 232 px
COLOR = "#3b6ea8"
ACCENT = "#c0392b"


def _figure(size: Tuple[float, float] = SIZE):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.tick_params(labelsize=8)
    return fig, ax


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _bins(values: np.ndarray, marks: Sequence[float] = (), n: int = 30) -> np.ndarray:
    """``n`` equal bins over the values and the marker lines (so no bar is a sliver)."""
    both = np.concatenate([values, np.asarray(marks, dtype=np.float64)])
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n + 1)


def _empty(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def histogram(values: Sequence[float], xlabel: str, lines: Sequence[Tuple[float, str]] = (),
              log_y: bool = False) -> bytes:
    """Histogram of per-video values (videos on the y axis), with labelled vertical lines.

    Args:
        values: finite floats, one per video.
        xlabel: the x axis label (with units).
        lines: (x, label) vertical marker lines (thresholds, the bound).
    """
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    fig, ax = _figure()
    if v.size == 0:
        _empty(ax)
        return _png(fig)
    ax.hist(v, bins=_bins(v, [x for x, _ in lines]), color=COLOR)
    if not log_y:
        from matplotlib.ticker import MaxNLocator
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for x, label in lines:
        ax.axvline(x, color=ACCENT, linestyle="--", linewidth=1)
        ax.text(x, ax.get_ylim()[1] * 0.95, " " + label, color=ACCENT, fontsize=7, va="top")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("videos", fontsize=9)
    return _png(fig)


def scatter(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str) -> bytes:
    """Scatter of per-video (x, y) points, y growing downwards (image rows), axes through 0."""
    pts = np.asarray([(a, b) for a, b in zip(x, y) if a is not None and b is not None
                      and np.isfinite(a) and np.isfinite(b)], dtype=np.float64).reshape(-1, 2)
    fig, ax = _figure((3.6, 2.9))
    if len(pts) == 0:
        _empty(ax)
        return _png(fig)
    ax.scatter(pts[:, 0], pts[:, 1], s=14, alpha=0.6, color=COLOR, edgecolors="none")
    r = float(np.abs(pts).max()) * 1.1 or 1.0
    ax.set_xlim(-r, r)
    ax.set_ylim(r, -r)
    ax.axhline(0, color="#999", linewidth=0.6)
    ax.axvline(0, color="#999", linewidth=0.6)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    return _png(fig)


def boxplot(groups: Dict[str, List[float]], ylabel: str, limit: int = 30) -> bytes:
    """Box plot of per-video values by group (class), sorted by median; at most ``limit``
    groups (the largest ones) are drawn."""
    clean = {k: [x for x in v if x is not None and np.isfinite(x)] for k, v in groups.items()}
    clean = {k: v for k, v in clean.items() if v}
    fig, ax = _figure((max(SIZE[0], 0.28 * min(len(clean), limit) + 1.2), SIZE[1] + 0.6))
    if not clean:
        _empty(ax)
        return _png(fig)
    keep = sorted(clean, key=lambda k: (-len(clean[k]), k))[:limit]
    keep.sort(key=lambda k: (float(np.median(clean[k])), k))
    ax.boxplot([clean[k] for k in keep], showfliers=True, widths=0.6,
               flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(keep) + 1))
    ax.set_xticklabels([k if len(k) <= 18 else k[:17] + "…" for k in keep], rotation=60,
                       ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=9)
    return _png(fig)


def motion_over_time(t: Sequence[float], motion: Sequence[float], p95: Sequence[float],
                     clipped: Sequence[float], xlabel: str = "time (s)") -> bytes:
    """One video: mean |d| and its 95th percentile per flow (px, left axis), clipped
    fraction per flow (%, right axis), against time."""
    fig, ax = _figure((4.6, 2.4))
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        _empty(ax)
        return _png(fig)
    ax.plot(t, motion, color=COLOR, linewidth=1.2, label="mean |d|")
    ax.plot(t, p95, color=COLOR, linewidth=0.8, linestyle="--", label="95th pct |d|")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("px", fontsize=9)
    if len(clipped) == len(t):
        ax2 = ax.twinx()
        ax2.plot(t, 100 * np.asarray(clipped, dtype=np.float64), color=ACCENT, linewidth=0.8,
                 label="clipped %")
        ax2.set_ylim(bottom=0, top=max(1.0, 100 * float(np.max(clipped)) * 1.1) if len(clipped) else 1)
        ax2.tick_params(labelsize=8, colors=ACCENT)
        ax2.set_ylabel("clipped %", fontsize=9, color=ACCENT)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)
