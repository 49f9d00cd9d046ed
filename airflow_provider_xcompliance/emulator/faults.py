"""Fault injection: make chosen requests fail the way a real network and a real API do.

A client is only as good as its handling of 429s, 5xx answers, dropped connections and slow
answers, and none of those can be provoked against X on demand. Faults are queued per endpoint
and consumed by the next matching requests, before authentication, rate limiting or signature
checks (they stand for failures in front of the service).

Kinds:

``status``
    Answer that HTTP status: a problem JSON body on the API endpoints (for 429 the real body
    and rate-limit headers whose reset is ``reset_seconds`` from now), an XML ``<Error>`` on the
    storage endpoints. Any request body is read and discarded first.
``drop``
    Close the connection without an answer. On uploads, first read ``after_bytes`` bytes of the
    body (default 0) and discard them; on downloads, ``after_bytes`` (when given) sends the
    headers and that many bytes of the file before closing, i.e. a truncated download.
``delay``
    Sleep ``seconds`` (real seconds), then answer normally.

Endpoints: ``create_job``, ``list_jobs``, ``get_job``, ``upload`` (the simple PUT, the resumable
start POST and the session PUTs), ``upload_session`` (only the session PUTs) and ``download``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

__all__ = ["ENDPOINTS", "KINDS", "Fault", "FaultInjector", "parse_fault_spec"]

ENDPOINTS = ("create_job", "list_jobs", "get_job", "upload", "upload_session", "download")
KINDS = ("status", "drop", "delay")


@dataclass
class Fault:
    endpoint: str
    kind: str
    status: int | None = None
    seconds: float | None = None
    after_bytes: int | None = None
    times: int = 1
    reset_seconds: float = 1.0

    def matches(self, endpoint: str) -> bool:
        if self.endpoint == endpoint:
            return True
        return self.endpoint == "upload" and endpoint == "upload_session"


def make_fault(endpoint: str, kind: str, *, status: int | None = None, seconds: float | None = None,
               times: int = 1, after_bytes: int | None = None, reset_seconds: float = 1.0) -> Fault:
    """Validate the arguments of a fault; raises ``ValueError``."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"fault endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
    if kind not in KINDS:
        raise ValueError(f"fault kind must be one of {KINDS}, not {kind!r}")
    if not isinstance(times, int) or times < 1:
        raise ValueError("times must be a positive integer")
    if kind == "status":
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("a status fault needs status=<HTTP error status 400-599>")
    if kind == "delay":
        if seconds is None or seconds < 0:
            raise ValueError("a delay fault needs seconds=<non-negative number>")
    if after_bytes is not None and after_bytes < 0:
        raise ValueError("after_bytes must not be negative")
    if reset_seconds < 0:
        raise ValueError("reset_seconds must not be negative")
    return Fault(endpoint, kind, status, None if seconds is None else float(seconds), after_bytes,
                 times, float(reset_seconds))


class FaultInjector:
    """The queue of pending faults (thread-safe); the first matching fault applies."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, endpoint: str, kind: str, **kwargs) -> Fault:
        fault = make_fault(endpoint, kind, **kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**vars(f)) for f in self._faults]

    def take(self, endpoint: str) -> Fault | None:
        """Consume one use of the first fault matching ``endpoint``."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(endpoint):
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                    return Fault(**{**vars(fault), "times": 1})
        return None


_SPEC = re.compile(
    r"^(?P<endpoint>[a-z_]+):(?P<kind>[a-z]+)(?::(?P<arg>[0-9]+(?:\.[0-9]*)?))?(?:x(?P<times>[0-9]+))?$"
)


def parse_fault_spec(spec: str) -> dict:
    """Parse the CLI form ``ENDPOINT:KIND[:ARG][xTIMES]`` into keyword arguments of
    ``make_fault``: ARG is the status for ``status``, seconds for ``delay``, after_bytes for
    ``drop``. Examples: ``get_job:status:503x2``, ``upload:drop:300000``, ``create_job:delay:2``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"bad fault {spec!r}: expected ENDPOINT:KIND[:ARG][xTIMES]")
    kind, arg = m["kind"], m["arg"]
    kwargs: dict = {"endpoint": m["endpoint"], "kind": kind}
    if m["times"] is not None:
        kwargs["times"] = int(m["times"])
    if kind == "status":
        if arg is None or "." in arg:
            raise ValueError(f"bad fault {spec!r}: a status fault needs an integer status")
        kwargs["status"] = int(arg)
    elif kind == "delay":
        if arg is None:
            raise ValueError(f"bad fault {spec!r}: a delay fault needs seconds")
        kwargs["seconds"] = float(arg)
    elif kind == "drop":
        if arg is not None:
            if "." in arg:
                raise ValueError(f"bad fault {spec!r}: after_bytes must be an integer")
            kwargs["after_bytes"] = int(arg)
    make_fault(**kwargs)  # validate now
    return kwargs
