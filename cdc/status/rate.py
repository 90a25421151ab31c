"""Rows per second over a sliding window, from samples of a growing counter. Pure, stdlib only."""

from __future__ import annotations

from collections import deque


class RateWindow:
    """The average rate of a monotonically growing counter over the last `window_s` seconds.

    Feed it `add(now, total)` with a monotonic clock reading and the counter's current total, as
    often as convenient. `rate(now)` averages from the newest sample at or before the window's
    start (or the oldest sample, with less history) up to `now`, so a counter that stopped moving
    decays to 0 even when no new samples arrive. A total lower than the previous one (the
    counter's owner restarted) or a clock going backwards starts the history afresh.
    """

    def __init__(self, window_s: float = 60.0, min_spacing_s: float = 0.5) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, not {window_s}")
        self.window_s = window_s
        self._min_spacing_s = min_spacing_s  # bounds memory however often add() is called
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> None:
        if self._samples:
            last_t, last_total = self._samples[-1]
            if total < last_total or now < last_t:
                self._samples.clear()
            elif len(self._samples) > 1 and now - self._samples[-2][0] < self._min_spacing_s:
                self._samples[-1] = (now, total)  # too close to the one before: keep the newer reading
                return
        self._samples.append((now, total))
        self._prune(now)

    def rate(self, now: float) -> float:
        """Counts per second over the window ending at `now`; 0.0 with fewer than two samples."""
        self._prune(now)
        if len(self._samples) < 2:
            return 0.0
        (base_t, base_total), (_, last_total) = self._samples[0], self._samples[-1]
        span = now - base_t
        return (last_total - base_total) / span if span > 0 else 0.0

    def _prune(self, now: float) -> None:
        start = now - self.window_s
        while len(self._samples) > 1 and self._samples[1][0] <= start:
            self._samples.popleft()
