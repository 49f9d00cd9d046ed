"""Operators for the steps of a compliance job: create, upload, submit (both), download."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import Asset, BaseOperator

from airflow_provider_xcompliance.client.codec import MAX_JOB_NAME
from airflow_provider_xcompliance.client.jobs import CREATED, JOB_TYPES, ComplianceJob
from airflow_provider_xcompliance.client.matching import own_job
from airflow_provider_xcompliance.client.retry import next_poll_delay
from airflow_provider_xcompliance.connection import DEFAULT_CONN_ID
from airflow_provider_xcompliance.exceptions import JobEndedError, XComplianceConflict, XComplianceError
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
from airflow_provider_xcompliance.reports import DownloadSummary, UploadReport
from airflow_provider_xcompliance.triggers.compliance import XComplianceJobTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from pydantic import JsonValue


def results_asset(job_type: str | None = None) -> Asset:
    """The Asset a download task updates by default: one per job type."""
    if job_type is None:
        return Asset(name="x_compliance_results", uri="x-compliance://results")
    return Asset(name=f"x_compliance_{job_type}_results", uri=f"x-compliance://{job_type}/results")


def default_job_name(context: Context) -> str:
    """A job name that is the same for every try of one task in one DAG run, and only for it
    (the DAG and task ids, then a digest of DAG, run, task and map index), at most 64 characters."""
    ti = context["ti"]
    key = f"{ti.dag_id}\n{ti.run_id}\n{ti.task_id}\n{getattr(ti, 'map_index', -1)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    prefix = f"{ti.dag_id}.{ti.task_id}"[: MAX_JOB_NAME - len(digest) - 1]
    return f"{prefix}-{digest}"


def _already_uploaded(job: ComplianceJob, ids_path: Any) -> UploadReport:
    """The upload report of a try that found its job past ``created``: an earlier try sent the IDs."""
    return UploadReport(
        job_id=job.id,
        source=str(ids_path),
        ids=None,
        bytes=None,
        resumable=job.resumable,
        already_uploaded=True,
        seconds=0.0,
    )


class _XComplianceOperator(BaseOperator):
    """What every operator here shares: the connection and its hook."""

    ui_color = "#e8f4fd"

    def __init__(self, *, x_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x_conn_id = x_conn_id

    @cached_property
    def hook(self) -> XComplianceHook:
        return XComplianceHook(x_conn_id=self.x_conn_id)

    def _job_datasets(self, job_type: str | None) -> list[Dataset]:
        """The X side of a transfer as OpenLineage sees it: the ``job_type`` jobs at this
        connection's API (none when the type or the connection is unknown)."""
        from airflow_provider_xcompliance.utils.openlineage import job_dataset

        if not job_type:
            return []
        try:
            base_url = self.hook.settings.base_url  # cached since execute
        except Exception:
            self.log.debug("No API URL for the lineage of %s", self.task_id, exc_info=True)
            return []
        return [job_dataset(base_url, job_type)]


class _JobCreating(_XComplianceOperator):
    """Creating a job idempotently: a retried task finds the job its earlier try created."""

    def __init__(
        self, *, job_type: str, job_name: str | None = None, resumable: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.job_type = job_type
        self.job_name = job_name
        self.resumable = resumable

    def _job_name(self, context: Context) -> str:
        return self.job_name or default_job_name(context)

    def _existing_job(self, context: Context) -> ComplianceJob | None:
        """This run's job from an earlier try (or from before a Clear), if it can still serve.

        The default name is unique to the DAG, run, task and map index, so any job of that name
        is this run's. A name the user gives may repeat across runs: then only jobs created
        after the run was (its ``run_after``, which a Clear keeps) count.
        """
        created_after = None
        if self.job_name:
            dag_run = context.get("dag_run")
            created_after = getattr(dag_run, "run_after", None) or getattr(dag_run, "start_date", None)
        job = own_job(self.hook.list_jobs(self.job_type), self._job_name(context), created_after)
        if job is None:
            return None
        self.log.info("Found job %s (%s) from an earlier try; using it", job.id, job.status)
        return self.hook.get_job(job.id)  # fetched on its own: its signed URLs masked

    def _create(self, context: Context) -> ComplianceJob:
        name = self._job_name(context)
        job = self.hook.create_job(self.job_type, name=name, resumable=self.resumable)
        self.log.info("Created %s compliance job %s named %r", job.type, job.id, name)
        return job

    def _publish(self, context: Context, job: ComplianceJob) -> None:
        context["ti"].xcom_push(key="job", value=job.metadata())


class XComplianceCreateJobOperator(_JobCreating):
    """Create a compliance job; returns its id and pushes its metadata (XCom key ``job``).

    The upload URL lives 15 minutes: prefer :class:`XComplianceSubmitJobOperator`, which
    creates and uploads in one task.

    :param job_type: ``tweets`` or ``users`` (templated).
    :param job_name: the job's name, at most 64 characters (templated); by default one derived
        from the DAG, run and task, which makes retries find the job they already created.
    :param resumable: ask for an upload URL that takes the resumable protocol (the default;
        ``False`` gives a simple upload: one ``PUT`` with a ``Content-Length``).
    :param x_conn_id: the ``x_compliance`` connection.
    """

    template_fields: Sequence[str] = ("job_type", "job_name")

    def execute(self, context: Context) -> str:
        job = self._existing_job(context) or self._create(context)
        self._publish(context, job)
        return job.id

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """No data set: creating a job reads and writes no data."""
        from airflow_provider_xcompliance.utils.openlineage import operator_lineage

        return operator_lineage()


class XComplianceUploadIdsOperator(_XComplianceOperator):
    """Stream the IDs at ``ids_path`` to a job's upload URL; returns the upload report.

    :param job_id: the job (templated; usually the create task's XCom).
    :param ids_path: an ``ObjectStoragePath`` or URL of the ID file, e.g.
        ``s3://aws_default@bucket/ids/{{ ds }}.txt`` or ``file:///data/ids.txt`` (templated).
    :param x_conn_id: the ``x_compliance`` connection.
    """

    template_fields: Sequence[str] = ("job_id", "ids_path")

    def __init__(self, *, job_id: str, ids_path: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.ids_path = ids_path
        self.job_type: str | None = None  # learnt in execute, for the lineage

    def execute(self, context: Context) -> UploadReport:
        job = self.hook.get_job(self.job_id)
        self.job_type = job.type
        if job.has_ended_badly:
            raise JobEndedError(job.id, job.status, job.error or "it never received its IDs")
        if job.status != CREATED:
            self.log.info("Job %s is %s: its IDs were uploaded by an earlier try", job.id, job.status)
            return _already_uploaded(job, self.ids_path)
        return self.hook.upload_ids(job, self.ids_path, keep_session=True)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Input: the ID file. Output: the jobs of its type at X (``x-compliance://<API host>``,
        ``jobs/<job type>``)."""
        from airflow_provider_xcompliance.utils.openlineage import operator_lineage, to_dataset

        return operator_lineage([to_dataset(self.ids_path)], self._job_datasets(self.job_type))


class XComplianceSubmitJobOperator(_JobCreating):
    """Create a job and upload its IDs in one task (the upload URL dies 15 minutes after
    creation); returns the job id and pushes XComs ``job`` (metadata) and ``upload`` (report).

    X allows one active job at a time: when another one is active this task waits for it to
    end, deferred to the triggerer (or polling, with ``deferrable=False``), then creates its own.

    :param job_type: ``tweets`` or ``users`` (templated).
    :param ids_path: an ``ObjectStoragePath`` or URL of the ID file (templated).
    :param job_name: see :class:`XComplianceCreateJobOperator` (templated).
    :param resumable: upload through a resumable session (the default: survives dropped
        connections and resumes where the session stands); ``False`` sends one ``PUT``.
    :param poll_interval: seconds between checks of the job that blocks ours.
    :param wait_timeout: how long to wait for a blocking job, at most.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param x_conn_id: the ``x_compliance`` connection.
    """

    template_fields: Sequence[str] = ("job_type", "ids_path", "job_name")

    def __init__(
        self,
        *,
        ids_path: Any,
        poll_interval: float = 60.0,
        wait_timeout: timedelta = timedelta(hours=24),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ids_path = ids_path
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.deferrable = deferrable

    def execute(self, context: Context) -> str:
        self.hook.check_id_source(self.ids_path)  # a wrong path must not leave a job behind
        job = self._existing_job(context)
        while job is None:
            try:
                job = self._create(context)
            except XComplianceConflict:
                blocker = self._blocking_job()
                if blocker is None:
                    raise
                self._wait_for(blocker)
        if job.status == CREATED:
            report = self.hook.upload_ids(job, self.ids_path, keep_session=True)
        else:
            self.log.info("Job %s is %s: its IDs were uploaded by an earlier try", job.id, job.status)
            report = _already_uploaded(job, self.ids_path)
        self._publish(context, job)
        context["ti"].xcom_push(key="upload", value=report)
        return job.id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """The blocking job has ended (or the wait broke): try to create ours again."""
        if event.get("status") == "error":
            raise XComplianceError(event.get("message") or "Waiting for the active compliance job failed")
        self.log.info("%s; creating our job now", event.get("message"))
        return self.execute(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Input: the ID file. Output: the jobs of its type at X (``x-compliance://<API host>``,
        ``jobs/<job type>``)."""
        from airflow_provider_xcompliance.utils.openlineage import operator_lineage, to_dataset

        return operator_lineage([to_dataset(self.ids_path)], self._job_datasets(self.job_type))

    def _blocking_job(self) -> ComplianceJob | None:
        """The active job that keeps ours from being created (of either type: the API's
        one-active-job rule is per type in some descriptions and global in others)."""
        for job_type in sorted(JOB_TYPES, key=lambda t: t != self.job_type):
            for job in self.hook.list_jobs(job_type):
                if job.is_active:
                    return job
        return None

    def _wait_for(self, blocker: ComplianceJob) -> None:
        self.log.info(
            "Compliance job %s (%s) is %s; waiting for it to end", blocker.id, blocker.type, blocker.status
        )
        if self.deferrable:  # raises TaskDeferred: the task resumes in execute_complete
            self.defer(
                trigger=XComplianceJobTrigger(
                    job_id=blocker.id, x_conn_id=self.x_conn_id, poll_interval=self.poll_interval
                ),
                method_name="execute_complete",
                timeout=self.wait_timeout,
            )
        deadline = time.monotonic() + self.wait_timeout.total_seconds()
        while (job := self.hook.get_job(blocker.id)).is_active:
            if time.monotonic() > deadline:
                raise XComplianceError(
                    f"Compliance job {blocker.id} was still active after {self.wait_timeout}"
                )
            # paced like the trigger: a created job is woken for when its upload window ends
            time.sleep(next_poll_delay(job, self.poll_interval, self.hook.last_rate_limit))


class XComplianceDownloadResultsOperator(_XComplianceOperator):
    """Land a complete job's results at ``results_path``, atomically, and return the summary
    (path, lines, bytes, counts by action and by reason). Updates an Asset whose event
    carries the summary, so downstream DAGs can be scheduled on fresh results.

    :param job_id: the job (templated).
    :param results_path: where the results go (templated): a folder ending in ``/`` gets
        ``<job type>-<job id>.jsonl``; anything else is the exact object.
    :param job_type: names the default Asset (``x-compliance://<job_type>/results``).
    :param asset: the Asset to update instead of the default.
    :param x_conn_id: the ``x_compliance`` connection.
    """

    template_fields: Sequence[str] = ("job_id", "results_path")

    def __init__(
        self,
        *,
        job_id: str,
        results_path: Any,
        job_type: str | None = None,
        asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        self.asset = asset or results_asset(job_type)
        outlets = kwargs.get("outlets") or []
        kwargs["outlets"] = [*(outlets if isinstance(outlets, (list, tuple)) else [outlets]), self.asset]
        super().__init__(**kwargs)
        self.job_id = job_id
        self.results_path = results_path
        self.job_type = job_type
        self.written_path: str | None = None  # the object execute wrote, for the lineage

    def execute(self, context: Context) -> DownloadSummary:
        summary = self.hook.download_results(self.job_id, self.results_path)
        self.written_path = summary["path"]
        self.job_type = summary["job_type"] or self.job_type
        self.log.info(
            "Results of job %s at %s: %s lines, by reason %s",
            summary["job_id"],
            summary["path"],
            summary["lines"],
            summary["by_reason"],
        )
        # A summary holds JSON values only, which mypy cannot read from its TypedDict.
        context["outlet_events"][self.asset].extra = cast("dict[str, JsonValue]", dict(summary))
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Input: the jobs of its type at X. Output: the results object written (a
        ``results_path`` folder's ``<job type>-<job id>.jsonl``)."""
        from airflow_provider_xcompliance.utils.openlineage import operator_lineage, to_dataset

        written = self.written_path
        if written is None and not str(self.results_path).endswith("/"):
            written = self.results_path  # the exact object, though this operator did not run here
        return operator_lineage(self._job_datasets(self.job_type), [to_dataset(written)] if written else [])
