"""Fault injection: make chosen requests fail the way a real network and a real API do.

A client is only as good as its handling of 429s, 5xx answers, dropped connections, partial
chunk acknowledgements and lost answers, and none of those can be provoked against X on demand.
Faults are queued per endpoint (``XComplianceEmulator.inject_fault`` or the CLI ``--fault``) and
consumed by the next matching requests; a *fault profile* (``fault_profile="all"``, CLI
``--faults all``) adds a recurring, deterministic schedule of them on top.

Endpoints: ``create_job``, ``list_jobs``, ``get_job`` (the API), ``upload`` (the simple PUT, the
resumable start POST and -- for the front kinds below -- the session PUTs too),
``upload_session`` (only the session PUTs) and ``download``.

Front kinds, applied before authentication, rate limiting or signature checks (they stand for
failures in front of the service):

``status``
    Answer that HTTP status: a problem JSON body on the API endpoints (for 429 the real body
    and rate-limit headers whose reset is ``reset_seconds`` from now), a GCS XML ``<Error>`` with
    ``<Details>`` on the signed-URL endpoints (408 ``RequestTimeout``, 429 ``TooManyRequests``,
    500 ``InternalError``, 502 ``BadGateway``, 503 ``ServiceUnavailable``, 504
    ``GatewayTimeout``...). Any request body is read and discarded first; nothing is stored.
``drop``
    Close the connection without an answer. On uploads, first read ``after_bytes`` bytes of the
    body (default 0) and discard them; on downloads, ``after_bytes`` (when given) sends the
    headers and that many bytes of the body before closing, i.e. a truncated download.
``delay``
    Sleep ``seconds`` (real seconds), then answer normally.

Any fault may first let ``skip`` matching requests through (CLI ``@SKIP``): for instance
``upload_session:delay:30@1`` holds the second chunk of an upload, once the first is stored.
``usage_cap`` (API endpoints only)
    Answer 429 with X's usage-capped problem (``USAGE_CAPPED_BODY``) and the endpoint's
    rate-limit headers, like ``usage_capped=True`` does for every API request.

Handler kinds, applied where they make sense (a request they do not fit leaves them queued):

``partial_chunk`` (``upload_session``)
    The next non-final chunk is written, then cut back to whole 256 KiB units with at least
    one unit fewer than its end: the session keeps ``max(stored before, floor(end / 256 KiB) *
    256 KiB - 256 KiB if end is a multiple of 256 KiB else floor(end / 256 KiB) * 256 KiB)``
    bytes and answers 308 with that ``Range`` (none when nothing is stored). The client must
    resend from there.
``lose_final_answer`` (``upload_session``)
    The next request that completes a session (the last chunk, or a ``bytes */TOTAL`` query
    that completes it) is fully stored -- the object is complete and the job proceeds -- then
    the connection closes without an answer. A later ``bytes */TOTAL`` query answers 200.
``no_such_key`` (``download``)
    The next download request for a *complete* job (with a valid signature) answers 404
    ``NoSuchKey`` with ``Details: No such object: BUCKET/OBJECT``, as right after completion
    while the results object is not yet visible. Use ``times`` for N requests.

Fault profile ``"all"`` (deterministic; usage caps are never part of it). Every request is
counted per endpoint name as the router sees it (``n`` = 1, 2, 3... since the start, counting
requests that end up failing too; injected faults take precedence over the profile but the
count still advances):

* ``upload`` (simple PUT and resumable start POST), ``upload_session`` (session PUTs) and
  ``download``, each with its own counter: request ``n`` with ``n % 3 == 1`` fails in front
  with, in turn, 408, 429, 503 (GCS XML bodies) and a dropped connection (no answer, nothing
  stored): request 1 -> 408, 4 -> 429, 7 -> 503, 10 -> drop, 13 -> 408, ... Requests 2, 3,
  5, 6, 8, 9, ... go through.
* ``get_job`` and ``list_jobs``, each with its own counter: request ``n`` with ``n % 4 == 0``
  (4, 8, 12, ...) answers 503 (``about:blank`` problem JSON, rate-limit headers, not counted
  against the rate limit).
* ``create_job``: no faults.
* Each resumable session: the first non-final chunk that gets through is a ``partial_chunk``
  (a 308 with one 256 KiB unit fewer than sent, or more when the chunk was not aligned), and
  the first request that completes the session has its answer lost (``lose_final_answer``).
* Each job: the first ``ALL_PROFILE_NO_SUCH_KEY`` (2) download requests that get through after
  the job is complete answer 404 ``NoSuchKey``.

A correct client -- retrying 408/429/5xx and dropped connections with backoff, resuming a
session from its ``Range``, asking the session (``bytes */TOTAL``) after a lost answer, and
retrying ``NoSuchKey`` at least three times -- completes byte-exact under this profile.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

__all__ = [
    "ENDPOINTS",
    "KINDS",
    "FRONT_KINDS",
    "PROFILES",
    "ALL_PROFILE_NO_SUCH_KEY",
    "USAGE_CAPPED_BODY",
    "Fault",
    "FaultInjector",
    "make_fault",
    "parse_fault_spec",
]

ENDPOINTS = ("create_job", "list_jobs", "get_job", "upload", "upload_session", "download")
API_FAULT_ENDPOINTS = ("create_job", "list_jobs", "get_job")
KINDS = ("status", "drop", "delay", "usage_cap", "partial_chunk", "lose_final_answer", "no_such_key")
FRONT_KINDS = ("status", "drop", "delay", "usage_cap")
# Kinds that only fit some endpoints.
KIND_ENDPOINTS = {
    "usage_cap": API_FAULT_ENDPOINTS,
    "partial_chunk": ("upload_session",),
    "lose_final_answer": ("upload_session",),
    "no_such_key": ("download",),
}
PROFILES = ("none", "all")
ALL_PROFILE_NO_SUCH_KEY = 2
ALL_PROFILE_STORAGE_CYCLE = (408, 429, 503, "drop")
ALL_PROFILE_STORAGE_EVERY = 3  # n % 3 == 1 fails
ALL_PROFILE_LOOKUP_EVERY = 4  # n % 4 == 0 fails
USAGE_CAPPED_BODY = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.x.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
    "status": 429,
}


@dataclass
class Fault:
    """One queued fault: which endpoint, what kind, how many more times."""

    endpoint: str
    kind: str
    status: int | None = None
    seconds: float | None = None
    after_bytes: int | None = None
    times: int = 1
    reset_seconds: float = 1.0
    skip: int = 0

    def matches(self, endpoint: str) -> bool:
        if self.endpoint == endpoint:
            return True
        return self.endpoint == "upload" and endpoint == "upload_session" and self.kind in FRONT_KINDS


def make_fault(
    endpoint: str,
    kind: str,
    *,
    status: int | None = None,
    seconds: float | None = None,
    times: int = 1,
    after_bytes: int | None = None,
    reset_seconds: float = 1.0,
    skip: int = 0,
) -> Fault:
    """Validate the arguments of a fault; raises ``ValueError``."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"fault endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
    if kind not in KINDS:
        raise ValueError(f"fault kind must be one of {KINDS}, not {kind!r}")
    if kind in KIND_ENDPOINTS and endpoint not in KIND_ENDPOINTS[kind]:
        raise ValueError(f"a {kind} fault applies to {', '.join(KIND_ENDPOINTS[kind])} only")
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        raise ValueError("times must be a positive integer")
    if kind == "status" and (not isinstance(status, int) or not 400 <= status <= 599):
        raise ValueError("a status fault needs status=<HTTP error status 400-599>")
    if kind == "delay" and (seconds is None or seconds < 0):
        raise ValueError("a delay fault needs seconds=<non-negative number>")
    if after_bytes is not None and after_bytes < 0:
        raise ValueError("after_bytes must not be negative")
    if reset_seconds < 0:
        raise ValueError("reset_seconds must not be negative")
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise ValueError("skip must be a non-negative integer")
    return Fault(
        endpoint,
        kind,
        status,
        None if seconds is None else float(seconds),
        after_bytes,
        times,
        float(reset_seconds),
        skip,
    )


class FaultInjector:
    """The queue of pending faults and the fault profile (thread-safe)."""

    def __init__(self, profile: str = "none") -> None:
        if profile not in PROFILES:
            raise ValueError(f"fault_profile must be one of {PROFILES}, not {profile!r}")
        self.profile = profile
        self._faults: list[Fault] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def all_profile(self) -> bool:
        return self.profile == "all"

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

    def take(self, endpoint: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
        """Consume one use of the first queued fault matching ``endpoint`` (and ``kinds``)."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(endpoint) and (kinds is None or fault.kind in kinds):
                    if fault.skip:  # this request goes through; a later one gets the fault
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                    return Fault(**{**vars(fault), "times": 1, "skip": 0})
        return None

    def front(self, endpoint: str) -> Fault | None:
        """The front fault for this request: a queued one, else the profile's (if any). Counts
        the request for the profile either way."""
        with self._lock:
            n = self._counts[endpoint] = self._counts.get(endpoint, 0) + 1
        fault = self.take(endpoint, FRONT_KINDS)
        if fault is not None or not self.all_profile:
            return fault
        return _all_profile_front(endpoint, n)

    def count(self, endpoint: str) -> int:
        """How many requests ``endpoint`` has seen (as counted for the profile)."""
        with self._lock:
            return self._counts.get(endpoint, 0)


def _all_profile_front(endpoint: str, n: int) -> Fault | None:
    if endpoint in ("upload", "upload_session", "download"):
        if n % ALL_PROFILE_STORAGE_EVERY != 1:
            return None
        what = ALL_PROFILE_STORAGE_CYCLE[(n // ALL_PROFILE_STORAGE_EVERY) % len(ALL_PROFILE_STORAGE_CYCLE)]
        if isinstance(what, int):
            return Fault(endpoint, "status", status=what)
        return Fault(endpoint, "drop")
    if endpoint in ("get_job", "list_jobs") and n % ALL_PROFILE_LOOKUP_EVERY == 0:
        return Fault(endpoint, "status", status=503)
    return None


_SPEC = re.compile(
    r"^(?P<endpoint>[a-z_]+):(?P<kind>[a-z_]+?)(?::(?P<arg>[0-9]+(?:\.[0-9]*)?))?"
    r"(?:x(?P<times>[0-9]+))?(?:@(?P<skip>[0-9]+))?$"
)


def parse_fault_spec(spec: str) -> dict:
    """Parse the CLI form ``ENDPOINT:KIND[:ARG][xTIMES][@SKIP]`` into keyword arguments of
    ``make_fault``: ARG is the status for ``status``, seconds for ``delay``, after_bytes for
    ``drop``; the other kinds take none; SKIP requests go through first. Examples:
    ``get_job:status:503x2``, ``upload_session:delay:30@1``,
    ``upload:drop:300000``, ``create_job:delay:2``, ``download:no_such_keyx3``,
    ``upload_session:partial_chunk``, ``get_job:usage_cap``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"bad fault {spec!r}: expected ENDPOINT:KIND[:ARG][xTIMES][@SKIP]")
    kind, arg = m["kind"], m["arg"]
    kwargs: dict = {"endpoint": m["endpoint"], "kind": kind}
    if m["times"] is not None:
        kwargs["times"] = int(m["times"])
    if m["skip"] is not None:
        kwargs["skip"] = int(m["skip"])
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
    elif arg is not None:
        raise ValueError(f"bad fault {spec!r}: a {kind} fault takes no argument")
    make_fault(**kwargs)  # validate now
    return kwargs
