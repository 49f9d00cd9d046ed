"""The DAG factories and their schedule. The task group factories live in :mod:`.task_groups`
and are importable from here too, beside the other factories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_xcompliance.archives import FileArchive, SqlArchive
from airflow_provider_xcompliance.client.jobs import JOB_TYPES
from airflow_provider_xcompliance.connection import DEFAULT_CONN_ID
from airflow_provider_xcompliance.operators.compliance import results_asset
from airflow_provider_xcompliance.task_groups import compliance_cycle_task_group, compliance_task_group

__all__ = [
    "compliance_cycle_dag",
    "compliance_cycle_task_group",
    "compliance_dag",
    "compliance_task_group",
    "weekly_schedule",
]

try:
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # Airflow 3.1 keeps it in core only
    from airflow.timetables.trigger import CronTriggerTimetable  # type: ignore[assignment]  # 3.1's core class, not the SDK's


_WEEKLY: Any = object()  # compliance_cycle_dag's default schedule: weekly_schedule(), made per DAG


def weekly_schedule() -> CronTriggerTimetable:
    """Sundays at 00:00 UTC, the first run being the next Sunday's: give the DAG no ``start_date``.

    So unpausing the DAG (as the Trigger form's "Unpause on trigger", ticked by default, does)
    starts no run of the past week on the default paths, and a triggered run does not queue
    behind one (``max_active_runs=1``). With a ``start_date`` and ``catchup=False``, Airflow runs
    the latest past tick at once. ``run_immediately=False`` would not do: 3.3.2 still runs the past
    tick when it is less than a tenth of the interval (16.8 hours) ago; ``timedelta(0)`` never.
    """
    return CronTriggerTimetable("@weekly", timezone="UTC", run_immediately=timedelta(0))


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
    """A standalone compliance DAG whose job type, IDs path and results path are Params,
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


def compliance_cycle_dag(
    dag_id: str,
    archive: SqlArchive | FileArchive,
    workspace: str,
    *,
    schedule: Any = _WEEKLY,
    job_types: Sequence[str] = ("tweets", "users"),
    x_conn_id: str = DEFAULT_CONN_ID,
    dry_run: bool = False,
    poll_interval: float = 60.0,
    deferrable: bool | None = None,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=1),
    apply_options: dict[str, Any] | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """The whole compliance duty over one archive as a DAG, weekly by default: export its IDs,
    check them with X, apply the results, report (:func:`compliance_cycle_task_group`).

    ``dry_run`` is a Param of the DAG, so a run triggered from the UI can report what it would
    change and change nothing. ``apply_options`` go to the apply tasks (``overrides``,
    ``max_delete_fraction``, ``audit_ids``, ...).
    """
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("tags", ["x-compliance"])
    dag_kwargs.setdefault("max_active_runs", 1)  # X runs one job at a time anyway
    params = {
        "dry_run": Param(
            dry_run,
            type="boolean",
            title="Dry run",
            description="Report what the results would change in the archive, and change nothing.",
        )
    }
    schedule = weekly_schedule() if schedule is _WEEKLY else schedule
    with DAG(dag_id, schedule=schedule, params=params, **dag_kwargs) as dag:
        compliance_cycle_task_group(
            archive,
            workspace,
            job_types=job_types,
            x_conn_id=x_conn_id,
            dry_run="{{ params.dry_run }}",
            poll_interval=poll_interval,
            deferrable=deferrable,
            retries=retries,
            retry_delay=retry_delay,
            **(apply_options or {}),
        )
    return dag
