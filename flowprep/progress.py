"""A progress line on stderr: videos done, failures, frames per second, ETA."""
from __future__ import annotations

import sys
import time


class Progress:
    """Redraws at most every 0.5 s on a terminal, or prints a line every 30 s otherwise."""

    def __init__(self, total: int, enabled: bool = True, stream=None) -> None:
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.done = self.failed = self.nframes = 0
        self.t0 = self.last = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def frames(self, n: int) -> None:
        self.nframes += n

    def video_done(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.tick(force=self.done == self.total)

    def line(self) -> str:
        el = max(1e-6, time.monotonic() - self.t0)
        fps = self.nframes / el
        eta = (self.total - self.done) * el / self.done if self.done else float("nan")
        width = 24
        fill = int(width * self.done / max(1, self.total))
        bar = "#" * fill + "-" * (width - fill)
        eta_s = f"{eta:5.0f} s" if eta == eta else "    ? s"
        return (f"[{bar}] {self.done}/{self.total} videos, {self.failed} failed, "
                f"{fps:6.1f} frames/s, ETA {eta_s}")

    def tick(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty and (force or now - self.last >= 0.5):
            self.stream.write("\r" + self.line())
            self.stream.flush()
            self.last = now
        elif not self.tty and (force or now - self.last >= 30):
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
