"""Progress lines for long uploads and downloads: bytes, IDs or lines, and rate."""

from __future__ import annotations

import time

from airflow_provider_xcompliance.utils.logs import Log

MIB = 1024 * 1024


class Progress:
    """Logs at most every ``every`` seconds, and once at the end."""

    def __init__(self, log: Log, action: str, unit: str, every: float = 10.0) -> None:
        self.log = log
        self.action = action
        self.unit = unit
        self.every = every
        self.started = self._last = time.monotonic()

    def update(self, nbytes: int, count: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._report("%s: %s %s, %.1f MiB so far (%.0f %s/s, %.1f MiB/s)", nbytes, count, now)

    def done(self, nbytes: int, count: int) -> float:
        now = time.monotonic()
        self._report("%s done: %s %s, %.1f MiB in total (%.0f %s/s, %.1f MiB/s)", nbytes, count, now)
        return now - self.started

    def _report(self, template: str, nbytes: int, count: int, now: float) -> None:
        seconds = max(now - self.started, 1e-6)
        self.log.info(
            template,
            self.action,
            f"{count:,}",
            self.unit,
            nbytes / MIB,
            count / seconds,
            self.unit,
            nbytes / MIB / seconds,
        )
