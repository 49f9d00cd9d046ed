"""Waits for a compliance job to complete: deferred to the triggerer, or poking from a worker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_xcompliance.client.jobs import COMPLETE
from airflow_provider_xcompliance.client.retry import TRANSIENT_ERRORS
from airflow_provider_xcompliance.connection import DEFAULT_CONN_ID
from airflow_provider_xcompliance.exceptions import XComplianceError
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
from airflow_provider_xcompliance.reports import JobMetadata
from airflow_provider_xcompliance.triggers.compliance import XComplianceJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class XComplianceJobSensor(BaseSensorOperator):
    """Succeeds when the job is ``complete`` (returning its metadata); fails the task, without
    retries, when it ends ``failed`` or ``expired``, with the job's status and error.

    :param job_id: the job to wait for (templated; usually the submit task's XCom).
    :param poll_interval: seconds between checks; the deferred wait also follows the job's
        ``estimated_completion`` (only the pre-release API sends one) and the rate-limit headers.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``);
        set False to poke from a worker (``mode="reschedule"`` frees the slot between pokes).
    :param x_conn_id: the ``x_compliance`` connection.
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        job_id: str,
        x_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.job_id = job_id
        self.x_conn_id = x_conn_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> XComplianceHook:
        return XComplianceHook(x_conn_id=self.x_conn_id)

    def execute(self, context: Context) -> JobMetadata:
        if not self.deferrable:
            return super().execute(context)
        job = self.hook.get_job(self.job_id)  # a job that is already done never defers
        if job.has_ended:
            return self._finish(job.metadata())
        self.log.info("Compliance job %s is %s; deferring until it ends", job.id, job.status)
        self.defer(
            trigger=XComplianceJobTrigger(
                job_id=job.id, x_conn_id=self.x_conn_id, poll_interval=self.poll_interval
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout is not None else None,
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            job = self.hook.get_job(self.job_id)
        except TRANSIENT_ERRORS as error:
            self.log.warning("Could not check job %s (%s); trying again at the next poke", self.job_id, error)
            return False
        if job.has_ended:
            return PokeReturnValue(is_done=True, xcom_value=self._finish(job.metadata()))
        self.log.info("Compliance job %s is %s", job.id, job.status)
        return False

    def execute_complete(self, context: Context, event: dict[str, Any]) -> JobMetadata:
        if event.get("status") == "error":
            raise XComplianceError(event.get("message") or f"Waiting for compliance job {self.job_id} failed")
        return self._finish(event["job"])

    def _finish(self, job: JobMetadata) -> JobMetadata:
        if job.get("status") != COMPLETE:
            message = f"Compliance job {job.get('id')} ended {job.get('status')}"
            if job.get("error"):
                message += f": {job['error']}"
            raise AirflowFailException(message)
        self.log.info("Compliance job %s is complete", job.get("id"))
        return job
