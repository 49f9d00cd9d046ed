"""Reusable building blocks: a task group to drop into any DAG, and a standalone DAG factory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Asset, BaseOperator, Param, TaskGroup

from airflow_provider_xcompliance import DEFAULT_CONN_ID
from airflow_provider_xcompliance.models import JOB_TYPES
from airflow_provider_xcompliance.operators.compliance import (
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
    results_asset,
)
from airflow_provider_xcompliance.sensors.compliance import XComplianceJobSensor

try:
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # Airflow 3.1 keeps it in core only
    from airflow.timetables.trigger import CronTriggerTimetable


# Exponential backoff: Airflow 3.1 takes a flag, 3.2+ a multiplier (where True would mean 1x).
_DOUBLING: bool | float = True if isinstance(BaseOperator.retry_exponential_backoff, bool) else 2.0


def _retry_defaults(group: TaskGroup, retries: int, retry_delay: timedelta) -> None:
    """Give the group's tasks ``retries`` with doubling delays, unless the DAG's ``default_args``
    say otherwise (a task group's defaults would override the DAG's). Retrying is safe: a retried
    submit finds its run's own job, a retried download replaces its own leftovers, and errors that
    another try cannot mend fail at once (they are ``AirflowFailException``s)."""
    dag_defaults = group.dag.default_args if group.dag else {}
    if "retries" in dag_defaults:
        return
    group.default_args = {
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": _DOUBLING,
        "max_retry_delay": timedelta(minutes=30),
        **group.default_args,
    }


def weekly_schedule() -> CronTriggerTimetable:
    """Sundays at 00:00 UTC, the first run being the next Sunday's: give the DAG no ``start_date``.

    So unpausing the DAG (as the Trigger form's "Unpause on trigger", ticked by default, does)
    starts no run of the past week on the default paths, and a triggered run does not queue
    behind one (``max_active_runs=1``). With a ``start_date`` and ``catchup=False``, Airflow runs
    the latest past tick at once. ``run_immediately=False`` would not do: 3.3.2 still runs the past
    tick when it is less than a tenth of the interval (16.8 hours) ago; ``timedelta(0)`` never.
    """
    return CronTriggerTimetable("@weekly", timezone="UTC", run_immediately=timedelta(0))


def compliance_task_group(
    job_type: str,
    ids_path: Any,
    results_path: Any,
    *,
    group_id: str | None = None,
    x_conn_id: str = DEFAULT_CONN_ID,
    job_name: str | None = None,
    resumable: bool = True,
    poll_interval: float = 60.0,
    deferrable: bool | None = None,
    wait_timeout: timedelta = timedelta(hours=24),
    asset: Asset | None = None,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=1),
) -> TaskGroup:
    """``submit`` (create + upload) → ``wait`` (deferred) → ``download``, as one task group.

    Put it between your own tasks: ``export_ids >> compliance_task_group(...) >> apply``.
    The summary is the XCom of ``<group_id>.download``; the job id that of ``<group_id>.submit``.
    ``job_type``, ``ids_path``, ``results_path`` and ``job_name`` may be Jinja templates.

    :param results_path: a folder ending in ``/`` (gets ``<type>-<job id>.jsonl``) or an object.
    :param resumable: upload through a resumable session (default); ``False`` for one ``PUT``.
    :param deferrable: whether submit and wait defer to the triggerer; ``None`` (default) follows
        ``[operators] default_deferrable``, as every operator does.
    :param asset: the Asset the download updates (default ``x-compliance://<job_type>/results``).
    :param retries: how often each task is retried, with the delay doubling from ``retry_delay``;
        the DAG's ``default_args`` win when they set ``retries``.
    """
    static_type = job_type if job_type in JOB_TYPES else None
    # None leaves the operators' own default, read from [operators] default_deferrable.
    defer = {} if deferrable is None else {"deferrable": deferrable}
    with TaskGroup(group_id=group_id or f"{static_type or 'x'}_compliance") as group:
        _retry_defaults(group, retries, retry_delay)
        submit = XComplianceSubmitJobOperator(
            task_id="submit",
            job_type=job_type,
            ids_path=ids_path,
            job_name=job_name,
            resumable=resumable,
            poll_interval=poll_interval,
            wait_timeout=wait_timeout,
            x_conn_id=x_conn_id,
            **defer,
        )
        wait = XComplianceJobSensor(
            task_id="wait",
            job_id=submit.output,
            poll_interval=poll_interval,
            timeout=wait_timeout.total_seconds(),
            mode="reschedule",  # used only when not deferrable: frees the worker between checks
            x_conn_id=x_conn_id,
            **defer,
        )
        download = XComplianceDownloadResultsOperator(
            task_id="download",
            job_id=submit.output,
            results_path=results_path,
            asset=asset or results_asset(static_type),
            x_conn_id=x_conn_id,
        )
        submit >> wait >> download
    return group


def compliance_dag(
    dag_id: str,
    job_type: str,
    ids_path: str,
    results_path: str,
    *,
    schedule: Any = None,
    x_conn_id: str = DEFAULT_CONN_ID,
    poll_interval: float = 60.0,
    deferrable: bool | None = None,
    resumable: bool = True,
    **dag_kwargs: Any,
) -> DAG:
    """A standalone compliance DAG whose job type, IDs path and results path are ``Param``s,
    so "Trigger DAG w/ config" in the UI shows a form and a run can use other paths."""
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("tags", ["x-compliance"])
    dag_kwargs.setdefault("max_active_runs", 1)  # X runs one job at a time anyway
    # Titles label the "Trigger" form's fields. ``type="string"`` makes the job type required there
    # (the 3.3 UI marks a field required when its type does not allow null): clearing the
    # drop-down shows "This field is required" and blocks the trigger, instead of a JSON-schema
    # error ("None is not one of ...") after it.
    params = {
        "job_type": Param(
            job_type,
            type="string",
            enum=list(JOB_TYPES),
            title="Job type",
            description="What the IDs are: tweet IDs (tweets) or user IDs (users).",
        ),
        "ids_path": Param(
            ids_path,
            type="string",
            minLength=1,
            title="IDs file",
            description="Where the ID file is, one ID a line: a URL such as "
            "s3://conn@bucket/ids.txt or file:///data/ids.txt",
        ),
        "results_path": Param(
            results_path,
            type="string",
            minLength=1,
            title="Results folder",
            description="Where the results go: a folder ending in / (they land in it as "
            "<type>-<job id>.jsonl) or an exact object URL.",
        ),
    }
    with DAG(dag_id, schedule=schedule, params=params, **dag_kwargs) as dag:
        compliance_task_group(
            job_type="{{ params.job_type }}",
            ids_path="{{ params.ids_path }}",
            results_path="{{ params.results_path }}",
            group_id="compliance",
            x_conn_id=x_conn_id,
            poll_interval=poll_interval,
            deferrable=deferrable,
            resumable=resumable,
            asset=results_asset(job_type),
        )
    return dag
