"""X's per-endpoint rate limits: fixed 15-minute windows and the x-rate-limit-* headers.

Self-contained (no job or clock of its own: the caller passes ``now``); the state holds one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["RateLimiter"]


class RateLimiter:
    """Fixed-window request counters, one per endpoint, like X's 15-minute windows."""

    def __init__(self, limits: Mapping[str, int], window: float):
        self.limits = dict(limits)
        self.window = window
        self._windows: dict[str, list[float]] = {}  # endpoint -> [start, count]

    def _current(self, endpoint: str, now: float) -> list[float]:
        w = self._windows.get(endpoint)
        if w is None or now >= w[0] + self.window:
            w = self._windows[endpoint] = [now, 0]
        return w

    def _headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(max(0, remaining)),
            "x-rate-limit-reset": str(math.ceil(reset)),
        }

    def take(self, endpoint: str, now: float) -> tuple[bool, dict[str, str]]:
        """Count one request; (allowed, rate-limit headers)."""
        limit = self.limits[endpoint]
        w = self._current(endpoint, now)
        if w[1] >= limit:
            return False, self._headers(limit, 0, w[0] + self.window)
        w[1] += 1
        return True, self._headers(limit, limit - int(w[1]), w[0] + self.window)

    def peek(self, endpoint: str, now: float) -> dict[str, str]:
        """The headers describing the current window, without counting a request."""
        limit = self.limits[endpoint]
        w = self._windows.get(endpoint)
        if w is None or now >= w[0] + self.window:
            return self._headers(limit, limit, now + self.window)
        return self._headers(limit, limit - int(w[1]), w[0] + self.window)

    def exhausted(self, endpoint: str, reset: float) -> dict[str, str]:
        """The headers of an injected 429 (remaining 0, reset at ``reset``)."""
        return self._headers(self.limits[endpoint], 0, reset)
