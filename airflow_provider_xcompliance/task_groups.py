"""The task group factories: create, upload, wait and download as one reusable group; and the
whole cycle over an archive (export, check, apply, report)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from airflow.sdk import Asset, BaseOperator, TaskGroup, task

from airflow_provider_xcompliance.archives import FileArchive, SqlArchive
from airflow_provider_xcompliance.client.jobs import JOB_TYPES
from airflow_provider_xcompliance.connection import DEFAULT_CONN_ID
from airflow_provider_xcompliance.operators.apply import XComplianceApplyOperator
from airflow_provider_xcompliance.operators.compliance import (
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
    results_asset,
)
from airflow_provider_xcompliance.operators.export import XComplianceExportIdsOperator
from airflow_provider_xcompliance.reports import (
    ApplyReport,
    CycleJobReport,
    CycleReport,
    DownloadSummary,
    ExportReport,
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


def compliance_cycle_task_group(
    archive: SqlArchive | FileArchive,
    workspace: str,
    *,
    job_types: Sequence[str] = ("tweets", "users"),
    group_id: str = "compliance_cycle",
    x_conn_id: str = DEFAULT_CONN_ID,
    dry_run: Any = False,
    poll_interval: float = 60.0,
    deferrable: bool | None = None,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=1),
    **apply_kwargs: Any,
) -> TaskGroup:
    """The whole duty over one archive, as one task group: export each job type's IDs into
    ``workspace`` (a folder URL on any object store), check them with X one job after the other
    (X allows one active job), apply the users' results, then the tweets', and report.

    Files land under ``<workspace>/<run id>/``. A cleared or rerun cycle makes no second job (each
    submit finds its run's own) and changes nothing twice (a second apply of the same results
    finds nothing left to change). ``apply_kwargs`` go to each
    :class:`~airflow_provider_xcompliance.operators.apply.XComplianceApplyOperator` (``overrides``,
    ``audit_ids``, ``max_delete_fraction``, ...). The report is the XCom of ``<group_id>.report``.
    """
    folder = f"{workspace.rstrip('/')}/{{{{ run_id | replace(':', '_') | replace('+', '_') }}}}"
    with TaskGroup(group_id=group_id) as group:
        _retry_defaults(group, retries, retry_delay)
        checked: list[TaskGroup] = []
        exports: dict[str, Any] = {}
        downloads: dict[str, Any] = {}
        for job_type in job_types:
            ids_path = f"{folder}/{job_type}_ids.txt"
            export = XComplianceExportIdsOperator(
                task_id=f"export_{job_type}", archive=archive, job_type=job_type, ids_path=ids_path
            )
            check = compliance_task_group(
                job_type,
                ids_path,
                f"{folder}/results/",
                group_id=f"{job_type}_check",
                x_conn_id=x_conn_id,
                poll_interval=poll_interval,
                deferrable=deferrable,
                retries=retries,
                retry_delay=retry_delay,
            )
            export >> check
            if checked:
                checked[-1] >> check  # one job at a time: the next is created once the last is done
            checked.append(check)
            exports[job_type] = export.output
            downloads[job_type] = check.children[f"{check.group_id}.download"]
        applies: dict[str, Any] = {}
        for job_type in sorted(job_types, key=lambda t: t != "users"):  # users, then tweets
            apply = XComplianceApplyOperator(
                task_id=f"apply_{job_type}",
                archive=archive,
                job_type=job_type,
                results=downloads[job_type].output,
                dry_run=dry_run,
                **apply_kwargs,
            )
            checked[-1] >> apply
            if applies:
                list(applies.values())[-1] >> apply
            applies[job_type] = apply
        report = task(task_id="report")(cycle_report)(
            archive=archive.name,
            exports=exports,
            downloads={t: d.output for t, d in downloads.items()},
            applies={t: a.output for t, a in applies.items()},
        )
        list(applies.values())[-1] >> report
    return group


def cycle_report(
    archive: str,
    exports: Mapping[str, ExportReport],
    downloads: Mapping[str, DownloadSummary],
    applies: Mapping[str, ApplyReport],
) -> CycleReport:
    """One typed report of a cycle, from the reports its tasks returned."""
    jobs: dict[str, CycleJobReport] = {}
    seconds: dict[str, float] = {}
    for job_type, applied in applies.items():
        exported, downloaded = exports[job_type], downloads[job_type]
        jobs[job_type] = CycleJobReport(
            job_id=downloaded["job_id"],
            ids=exported["ids"],
            result_lines=downloaded["lines"],
            by_reason=downloaded["by_reason"],
            deleted=applied["deleted"],
            updated=applied["updated"],
            targets=applied["targets"],
            dry_run=applied["dry_run"],
        )
        seconds |= {
            f"export_{job_type}": exported["seconds"],
            f"download_{job_type}": downloaded["seconds"],
            f"apply_{job_type}": applied["seconds"],
        }
    return CycleReport(
        archive=archive,
        job_types=list(jobs),
        jobs=jobs,
        seconds=seconds,
        reported_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
