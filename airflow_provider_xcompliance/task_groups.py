"""The task group factory: create, upload, wait and download as one reusable group."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from airflow.sdk import Asset, BaseOperator, TaskGroup

from airflow_provider_xcompliance.client.jobs import JOB_TYPES
from airflow_provider_xcompliance.connection import DEFAULT_CONN_ID
from airflow_provider_xcompliance.operators.compliance import (
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
    results_asset,
)
from airflow_provider_xcompliance.sensors.compliance import XComplianceJobSensor

# Exponential backoff: Airflow 3.1 takes a flag, 3.2+ a multiplier (where True would mean 1x).
_DOUBLING: bool | float = True if isinstance(BaseOperator.retry_exponential_backoff, bool) else 2.0


def _retry_defaults(group: TaskGroup, retries: int, retry_delay: timedelta) -> None:
    """Give the group's tasks ``retries`` with doubling delays, unless the DAG's ``default_args``
    say otherwise (a task group's defaults would override the DAG's). Retrying is safe: a retried
    submit finds its run's own job, a retried download replaces its own leftovers, and errors that
    another try cannot mend fail at once (they are ``AirflowFailException`` errors)."""
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
        # submit's XCom, the job id at run time: cast to the str it resolves to, as Airflow's own
        # providers pass an XComArg to a str parameter.
        wait = XComplianceJobSensor(
            task_id="wait",
            job_id=cast(str, submit.output),
            poll_interval=poll_interval,
            timeout=wait_timeout.total_seconds(),
            mode="reschedule",  # used only when not deferrable: frees the worker between checks
            x_conn_id=x_conn_id,
            **defer,
        )
        download = XComplianceDownloadResultsOperator(
            task_id="download",
            job_id=cast(str, submit.output),
            results_path=results_path,
            asset=asset or results_asset(static_type),
            x_conn_id=x_conn_id,
        )
        submit >> wait >> download
    return group
