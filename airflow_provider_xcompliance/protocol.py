"""The one interpretation of the X API's answers, shared by the sync hook and the async trigger.

Nothing here does I/O: the hook (``requests``) and the trigger (``httpx``) send the requests
and hand the answers to these functions, so status mapping, problem parsing, rate-limit headers,
retry decisions and poll pacing exist exactly once.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

from airflow_provider_xcompliance.exceptions import (
    XComplianceAPIError,
    XComplianceAuthError,
    XComplianceConflict,
    XComplianceError,
    XComplianceInvalidRequest,
    XComplianceNotFound,
    XComplianceRateLimited,
    XComplianceServerError,
    XComplianceStorageError,
    XComplianceStorageUnavailable,
    XComplianceTransportError,
    XComplianceUsageCapped,
)
from airflow_provider_xcompliance.models import (
    CREATED,
    JOB_TYPES,
    LISTABLE_STATUSES,
    ComplianceJob,
    RateLimit,
)

DEFAULT_BASE_URL = "https://api.x.com"
CLOCK_SKEW = timedelta(minutes=1)  # how far X's clock may be from ours when comparing timestamps
JOBS_PATH = "/2/compliance/jobs"
MAX_JOB_NAME = 64
JOB_ID = re.compile(r"[0-9]{1,19}")
USER_AGENT = "airflow-provider-xcompliance"

_STATUS_ERRORS: dict[int, type[XComplianceAPIError]] = {
    400: XComplianceInvalidRequest,
    401: XComplianceAuthError,
    403: XComplianceAuthError,
    404: XComplianceNotFound,
    409: XComplianceConflict,
    429: XComplianceRateLimited,
}


# --- connection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSettings:
    """What an ``x_compliance`` connection holds, read the same way by hook and trigger."""

    base_url: str
    token: str = field(repr=False)
    timeout: float = 30.0
    max_retries: int = 5
    max_rate_limit_wait: float = 900.0

    @classmethod
    def from_connection(cls, conn: Any) -> ConnectionSettings:
        token = (conn.password or "").strip()
        if not token:
            raise XComplianceError(
                f"Connection {conn.conn_id!r} has no bearer token: put it in the password field"
            )
        extra = conn.extra_dejson or {}

        def setting(name: str, kind: type, default: Any) -> Any:
            value = extra.get(name)  # an empty field of the UI form is stored as null
            return default if value in (None, "") else kind(value)

        return cls(
            base_url=base_url_of(conn),
            token=token,
            timeout=setting("timeout", float, cls.timeout),
            max_retries=setting("max_retries", int, cls.max_retries),
            max_rate_limit_wait=setting("max_rate_limit_wait", float, cls.max_rate_limit_wait),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, max_rate_limit_wait=self.max_rate_limit_wait)


def base_url_of(conn: Any) -> str:
    """The API base URL of a connection: host (with or without scheme) and port, or X's default."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    if conn.port and not re.search(r":\d+$", host):
        host = f"{host}:{conn.port}"
    return host


# --- requests ------------------------------------------------------------------------------


def create_job_body(job_type: str, name: str | None = None, resumable: bool = False) -> dict[str, Any]:
    """The JSON body of ``POST /2/compliance/jobs``, checked before it is sent."""
    check_job_type(job_type)
    body: dict[str, Any] = {"type": job_type}
    if name:
        if len(name) > MAX_JOB_NAME:
            raise ValueError(f"Job name {name!r} is longer than the API's {MAX_JOB_NAME} characters")
        body["name"] = name
    if resumable:
        body["resumable"] = True
    return body


def list_jobs_params(job_type: str, status: str | None = None) -> dict[str, str]:
    check_job_type(job_type)
    params = {"type": job_type}
    if status:
        if status not in LISTABLE_STATUSES:
            raise ValueError(
                f"Cannot list jobs by status {status!r}: "
                f"the API filters only by {', '.join(LISTABLE_STATUSES)}"
            )
        params["status"] = status
    return params


def job_path(job_id: str) -> str:
    job_id = str(job_id).strip()
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"{job_id!r} is not a compliance job id (1 to 19 digits)")
    return f"{JOBS_PATH}/{job_id}"


def check_job_type(job_type: str) -> None:
    if job_type not in JOB_TYPES:
        raise ValueError(f"Job type must be one of {', '.join(JOB_TYPES)}, not {job_type!r}")


# --- answers -------------------------------------------------------------------------------


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit:
    def number(name: str) -> int | None:
        try:
            return int(headers.get(name, ""))
        except ValueError:
            return None

    try:
        reset_at = datetime.fromtimestamp(number("x-rate-limit-reset"), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):  # absent or absurd
        reset_at = None
    return RateLimit(
        limit=number("x-rate-limit-limit"), remaining=number("x-rate-limit-remaining"), reset_at=reset_at
    )


def read_api_answer(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Return the JSON document of a successful answer, or raise the typed error it describes."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = None

    if 200 <= status < 300 and document is not None:
        if "data" not in document and document.get("errors") and "meta" not in document:
            raise _error_from_partial(status, document["errors"])
        return document

    problem = document or {}
    title = str(problem.get("title") or _reason(status))
    detail = str(problem.get("detail") or "")
    if document is None and body and not detail:
        detail = body[:200].decode("utf-8", "replace").strip()
    kwargs = dict(
        status=status,
        title=title,
        detail=detail,
        type=str(problem.get("type") or "about:blank"),
        errors=[e for e in problem.get("errors") or [] if isinstance(e, dict)]
        if isinstance(problem.get("errors"), list)
        else None,
    )
    if status == 429 and str(kwargs["type"]).endswith("/usage-capped"):
        raise XComplianceUsageCapped(**kwargs)
    if status == 429:
        raise XComplianceRateLimited(**kwargs, reset_at=parse_rate_limit(headers).reset_at)
    if status >= 500 or 200 <= status < 300:  # a 2xx without JSON is a broken answer: retry it
        raise XComplianceServerError(**kwargs)
    error_class = _STATUS_ERRORS.get(status, XComplianceAPIError)
    if str(kwargs["type"]).endswith("/conflict"):
        error_class = XComplianceConflict
    raise error_class(**kwargs)


def _error_from_partial(status: int, errors: list[dict[str, Any]]) -> XComplianceAPIError:
    """A 200 carrying only ``errors`` (how some v2 lookups say "not found")."""
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    kind = str(first.get("type", ""))
    error_class = XComplianceNotFound if kind.endswith("resource-not-found") else XComplianceAPIError
    return error_class(
        status=404 if error_class is XComplianceNotFound else status,
        title=str(first.get("title") or "Error"),
        detail=str(first.get("detail") or first.get("message") or ""),
        type=kind or "about:blank",
    )


def job_from_answer(document: dict[str, Any]) -> ComplianceJob:
    data = document.get("data")
    if not isinstance(data, dict) or not data.get("id"):
        raise XComplianceServerError(
            status=200, title="Malformed answer", detail="no job with an id in 'data'"
        )
    return ComplianceJob.from_api(data)


def jobs_from_answer(document: dict[str, Any]) -> list[ComplianceJob]:
    """``data`` is absent when there are no jobs, and ``meta`` was absent in 2021: accept both."""
    return [ComplianceJob.from_api(item) for item in document.get("data") or [] if isinstance(item, dict)]


STORAGE_RETRY_STATUSES = (408, 429)
"""Besides 5xx: the signed-URL answers GCS asks clients to retry with exponential backoff."""


def storage_error(status: int, body: bytes, what: str = "") -> XComplianceStorageError:
    """A refused signed-URL request as a typed error, from GCS's XML ``<Error>``: ``Code``,
    ``Message`` and ``Details``. 408, 429 and 5xx become :class:`XComplianceStorageUnavailable`
    (worth retrying); anything else is final."""
    code = details = ""
    message = body[:200].decode("utf-8", "replace").strip()
    try:
        root = ElementTree.fromstring(body)
        code = (root.findtext("Code") or "").strip()
        message = (root.findtext("Message") or "").strip()
        details = (root.findtext("Details") or "").strip()
    except ElementTree.ParseError:
        pass
    error_class = (
        XComplianceStorageUnavailable
        if status >= 500 or status in STORAGE_RETRY_STATUSES
        else XComplianceStorageError
    )
    return error_class(status, code, message or code or _reason(status), details, what)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --- retries and pacing --------------------------------------------------------------------

TRANSIENT_ERRORS = (
    XComplianceServerError,
    XComplianceTransportError,
    XComplianceRateLimited,
    XComplianceStorageUnavailable,
)
"""Errors that say "not now" rather than "never": worth waiting out. A usage-capped 429 is not
among them: waiting does not bring the usage back."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a call again, and after how long; the same for sync and async callers.

    5xx answers, storage 408/429s and transport failures back off exponentially (with
    jitter); an API 429 waits until ``x-rate-limit-reset`` unless that is further away than
    ``max_rate_limit_wait``. Either way at most ``max_retries`` times in a row.
    """

    max_retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_rate_limit_wait: float = 900.0

    def delay(self, attempt: int, error: Exception, now: datetime | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``."""
        if attempt > self.max_retries:
            return None
        if isinstance(error, XComplianceRateLimited):
            wait = rate_limit_wait(error.reset_at, now)
            return wait if wait <= self.max_rate_limit_wait else None
        if isinstance(error, TRANSIENT_ERRORS):
            return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        return None

    def budget(self) -> RetryBudget:
        return RetryBudget(self)


class RetryBudget:
    """The retries of one call or one transfer, counted in one place.

    A transfer is one budget, however many requests it makes: ``max_retries`` failures in a row
    make it give up, and each step of progress (bytes the server confirmed) starts the count
    and the backoff again. So retries never nest and the worst case never multiplies.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def delay(self, error: Exception) -> float | None:
        """Seconds to wait after ``error``, or None when the budget is spent (raise it)."""
        self.failures += 1
        return self.policy.delay(self.failures, error)

    def progressed(self) -> None:
        self.failures = 0

    def next_wait(
        self, error: Exception, log: Any, what: str | None = None, give_up: Exception | None = None
    ) -> float:
        """Seconds to wait after ``error`` (logged, after ``what`` failed), or raise ``give_up``
        (else ``error``) when the budget is spent. Every retry loop goes through it: the API
        calls, sync and async, and the signed-URL transfers."""
        delay = self.delay(error)
        if delay is None:
            raise (give_up or error) from None
        if what:
            log.warning("%s failed (%s); trying again in %.1f s", what, error, delay)
        else:
            log.warning("%s; trying again in %.1f s", error, delay)
        return delay


def rate_limit_wait(reset_at: datetime | None, now: datetime | None = None) -> float:
    """Seconds until a rate-limit window resets (plus a second of slack); 60 s when unknown."""
    if reset_at is None:
        return 60.0
    now = now or datetime.now(UTC)
    return max(1.0, (reset_at - now).total_seconds() + 1.0)


def poll_again_after(error: Exception, poll_interval: float) -> float:
    """How long a poller waits before asking again once a call's own retries gave up on a
    transient ``error``: until the rate-limit window resets for a 429, else its poll interval."""
    if isinstance(error, XComplianceRateLimited):
        return rate_limit_wait(error.reset_at)
    return poll_interval


def next_poll_delay(
    job: ComplianceJob,
    poll_interval: float,
    rate_limit: RateLimit | None = None,
    now: datetime | None = None,
) -> float:
    """How long to wait before asking about ``job`` again.

    Until the job's ``estimated_completion`` when the API gives one in the future (asking
    earlier is pointless, asking later wastes time), ``poll_interval`` otherwise (but no later
    than the end of a created job's upload window, when it expires); and never
    faster than the endpoint's remaining budget spread over the rest of its rate-limit window,
    so that polling never runs into a 429.
    """
    now = now or datetime.now(UTC)
    delay = poll_interval
    if job.estimated_completion is not None and job.estimated_completion > now:
        delay = (job.estimated_completion - now).total_seconds() + 1.0
    elif job.status == CREATED and job.upload_expires_at is not None and job.upload_expires_at > now:
        # A job waiting for its upload changes state by the end of its window at the latest.
        delay = min(delay, (job.upload_expires_at - now).total_seconds() + 1.0)
    return max(delay, rate_limit_spacing(rate_limit, now))


def rate_limit_spacing(rate_limit: RateLimit | None, now: datetime | None = None) -> float:
    """The least wait before the next request to an endpoint: its remaining budget spread evenly
    over the rest of its rate-limit window (until the reset when none is left), so that requests
    paced by it never run into a 429. 0 when the answer carried no rate-limit headers."""
    if not rate_limit or rate_limit.reset_at is None or rate_limit.remaining is None:
        return 0.0
    window_left = max(0.0, (rate_limit.reset_at - (now or datetime.now(UTC))).total_seconds())
    if rate_limit.remaining <= 0:
        return window_left + 1.0
    return window_left / rate_limit.remaining


def own_job(
    jobs: Iterable[ComplianceJob],
    name: str,
    created_after: datetime | None = None,
    now: datetime | None = None,
) -> ComplianceJob | None:
    """The job named ``name`` that an earlier attempt made and that can still serve, or None.

    The one rule for reusing a job, wherever an attempt may have created one (a retried POST
    whose answer was lost, a retried or cleared task, a later rerun): the newest job of that
    name that has not failed or expired, created after ``created_after`` when a name may be
    reused across runs, and, while still ``created``, with its upload window open.
    """
    for job in jobs:
        if job.name != name or job.has_ended_badly:
            continue
        if created_after and job.created_at and job.created_at < created_after - CLOCK_SKEW:
            continue  # a job of the same name from an earlier run
        window_left = upload_window_left(job, now)
        if job.status == CREATED and window_left is not None and window_left <= timedelta(0):
            continue  # its upload URL is dead: a new job is needed
        return job
    return None


def upload_window_left(job: ComplianceJob, now: datetime | None = None) -> timedelta | None:
    if job.upload_expires_at is None:
        return None
    return job.upload_expires_at - (now or datetime.now(UTC))
