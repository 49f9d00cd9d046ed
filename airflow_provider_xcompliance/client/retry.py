"""When to try again and how fast to ask: retries with backoff, rate-limit waits, poll pacing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from airflow_provider_xcompliance.client.jobs import CREATED, ComplianceJob, RateLimit
from airflow_provider_xcompliance.exceptions import (
    XComplianceRateLimited,
    XComplianceServerError,
    XComplianceStorageUnavailable,
    XComplianceTransportError,
)
from airflow_provider_xcompliance.utils.logs import Log

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
        self, error: Exception, log: Log, what: str | None = None, give_up: Exception | None = None
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
