"""Waits for a compliance job in the triggerer, so no worker slot is held for hours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_xcompliance.client.jobs import ComplianceJob
from airflow_provider_xcompliance.client.retry import TRANSIENT_ERRORS, poll_again_after
from airflow_provider_xcompliance.connection import DEFAULT_CONN_ID
from airflow_provider_xcompliance.exceptions import XComplianceError
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
from airflow_provider_xcompliance.reports import JobEvent
from airflow_provider_xcompliance.triggers.job_watch import JobWatch


class XComplianceJobTrigger(BaseTrigger):
    """Waits for one job to be ``complete``, ``failed`` or ``expired``, then fires once.

    It looks the job up once, then follows it through the :class:`~.job_watch.JobWatch` it
    shares with every trigger of its triggerer that waits on jobs of the same type and
    connection: one list request a round answers for all of them, so many waiting jobs stay
    within X's rate limits. A round comes at ``poll_interval``, at the job's
    ``estimated_completion`` when the API gives one, or when a created job's upload window ends,
    and never sooner than the list endpoint's rate-limit headers allow. Transient errors (5xx,
    timeouts, dropped connections, 429s) are waited out, not reported. The trigger only reads,
    so a fresh instance after a triggerer restart simply carries on.

    The event is a :class:`~airflow_provider_xcompliance.reports.JobEvent`: the job's final
    status (or ``"error"``), its metadata, and a message.
    """

    def __init__(self, job_id: str, x_conn_id: str = DEFAULT_CONN_ID, poll_interval: float = 60.0) -> None:
        super().__init__()
        self.job_id = str(job_id)
        self.x_conn_id = x_conn_id
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"job_id": self.job_id, "x_conn_id": self.x_conn_id, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            job = first = await self._look_up()
            if not first.has_ended:
                self.log.info("Compliance job %s is %s; waiting for it to end", first.id, first.status)
                async for job in JobWatch.updates(self.x_conn_id, first, self.poll_interval):
                    if not job.has_ended:
                        self.log.info("Compliance job %s is %s", job.id, job.status)
        except (XComplianceError, ValueError) as error:
            event = JobEvent(status="error", job=ComplianceJob(id=self.job_id).metadata(), message=str(error))
            yield TriggerEvent(dict(event))
            return
        message = f"Compliance job {job.id} is {job.status}" + (f": {job.error}" if job.error else "")
        yield TriggerEvent(dict(JobEvent(status=str(job.status), job=job.metadata(), message=message)))

    async def _look_up(self) -> ComplianceJob:
        """The job as it is now (its type says which watch to join); transient errors waited out."""
        hook = XComplianceHook(x_conn_id=self.x_conn_id)
        while True:
            try:
                return await hook.aget_job(self.job_id)
            except TRANSIENT_ERRORS as error:
                delay = poll_again_after(error, self.poll_interval)
                self.log.warning("Job %s: %s; asking again in %.0f s", self.job_id, error, delay)
                await asyncio.sleep(delay)
