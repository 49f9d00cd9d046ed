"""Which existing job an attempt may reuse instead of creating another."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from airflow_provider_xcompliance.client.jobs import CREATED, ComplianceJob

CLOCK_SKEW = timedelta(minutes=1)  # how far X's clock may be from ours when comparing timestamps


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
