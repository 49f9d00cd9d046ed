"""The operators one by one, as you would write them without the task group or the DAG factory.

- ``x_compliance_operators``: the tweets check in four tasks: submit (create and upload in one
  task) → wait (deferred to the triggerer) → download → apply the results to a JSON Lines
  archive of the tweets, partitioned by day, with an audit trail;
- ``x_compliance_operators_two_step``: the users check with create and upload as two tasks, a
  sensor that pokes from a worker, and the results landed as one exact object;
- ``x_compliance_hook``: steps 1 to 4 in one task of your own, with ``XComplianceHook``.

The paths live under ``X_COMPLIANCE_DATA_URL`` (any object-storage URL, default
``file:///tmp/x-compliance``): ``ids/tweets.txt`` and ``ids/users.txt`` are read; the results
land under ``results/``; the archive is ``archive/tweets/date=YYYY-MM-DD/*.jsonl``, one tweet a
line (``id``, ``geo`` and any other fields), and its audit goes to ``audit/tweets/``. The audit
names each record by an HMAC keyed by the Airflow Variable ``x_compliance_audit_key``:
``airflow variables set x_compliance_audit_key "$(openssl rand -hex 32)"``.

The three are triggered by hand (``schedule=None``); give them ``schedule=weekly_schedule()`` to
run weekly, as the other examples do.
"""

import os
import time

from airflow.sdk import DAG, task

# [START howto_hook_import]
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook

# [END howto_hook_import]
# [START howto_operator_imports]
from airflow_provider_xcompliance.operators.apply import XComplianceApplyToFilesOperator
from airflow_provider_xcompliance.operators.compliance import (
    XComplianceCreateJobOperator,
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
    XComplianceUploadIdsOperator,
)
from airflow_provider_xcompliance.sensors.compliance import XComplianceJobSensor

# [END howto_operator_imports]

DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")
# Seconds between checks of a running job: a minute suits real jobs (hours long); the demo,
# whose emulated jobs take seconds, sets a few seconds.
POLL_INTERVAL = float(os.environ.get("X_COMPLIANCE_POLL_INTERVAL", "60"))

with DAG(
    "x_compliance_operators",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # X runs one job of a type at a time anyway
    tags=["x-compliance", "example"],
    description="Submit, wait, download and apply to a JSON Lines archive, one operator a task",
):
    # [START howto_operator_submit_job]
    submit = XComplianceSubmitJobOperator(
        task_id="submit",
        job_type="tweets",
        ids_path=f"{DATA_URL}/ids/tweets.txt",  # templated: "…/ids/{{ ds }}.txt" works too
        deferrable=True,  # waits in the triggerer when another job is active
        poll_interval=POLL_INTERVAL,
    )  # returns the job id; XComs "job" (metadata) and "upload" (report)
    # [END howto_operator_submit_job]

    # [START howto_sensor_job]
    wait = XComplianceJobSensor(
        task_id="wait",
        job_id=submit.output,  # the submit task's return value: the job id
        deferrable=True,  # waits in the triggerer, not in a worker slot
        poll_interval=POLL_INTERVAL,
        timeout=24 * 3600,
    )  # returns the job's metadata; fails, without retries, when the job ends failed or expired
    # [END howto_sensor_job]

    # [START howto_operator_download_results]
    download = XComplianceDownloadResultsOperator(
        task_id="download",
        job_id=submit.output,
        results_path=DATA_URL + "/results/operators/{{ ds }}/",  # a folder: tweets-<job id>.jsonl
        job_type="tweets",  # names the Asset it updates: x-compliance://tweets/results
    )  # returns the download summary: path, lines, bytes, by_reason, by_action, ...
    # [END howto_operator_download_results]

    # [START howto_operator_apply_to_files]
    apply_to_archive = XComplianceApplyToFilesOperator(
        task_id="apply_to_archive",
        results=download.output,  # the download summary: the results' path, job id and job type
        job_type="tweets",  # results of another job type are refused before anything changes
        data_path=f"{DATA_URL}/archive/tweets/",  # a folder or one object, any object store
        format="jsonl",  # or "parquet" (the parquet extra)
        geo_fields=("geo",),  # scrub_geo sets these to null and keeps the tweet
        partition_template="date={created_at:%Y-%m-%d}",  # read only the days of flagged tweets
        audit_path=f"{DATA_URL}/audit/tweets/",  # outside data_path
        max_delete_fraction=0.2,  # refuse, changing nothing, above 20 % of the flagged days' records
    )
    # [END howto_operator_apply_to_files]

    # [START howto_operator_chain]
    submit >> wait >> download >> apply_to_archive
    # [END howto_operator_chain]


with DAG(
    "x_compliance_operators_two_step",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["x-compliance", "example"],
    description="Create and upload as two tasks, a sensor that pokes, the results as one object",
):
    # [START howto_operator_create_and_upload]
    create = XComplianceCreateJobOperator(
        task_id="create",
        job_type="users",
        resumable=False,  # a simple upload: one PUT
    )  # returns the job id; XCom "job" (metadata)
    upload = XComplianceUploadIdsOperator(
        task_id="upload", job_id=create.output, ids_path=f"{DATA_URL}/ids/users.txt"
    )
    create >> upload
    # [END howto_operator_create_and_upload]

    # [START howto_sensor_job_poke]
    wait = XComplianceJobSensor(
        task_id="wait",
        job_id=create.output,
        deferrable=False,  # pokes from a worker every poll_interval seconds
        poll_interval=POLL_INTERVAL,
        timeout=24 * 3600,
    )
    # [END howto_sensor_job_poke]

    # [START howto_operator_download_results_object]
    download = XComplianceDownloadResultsOperator(
        task_id="download",
        job_id=create.output,
        results_path=DATA_URL + "/results/operators/{{ ds }}/users.jsonl",  # this exact object
        job_type="users",
    )
    # [END howto_operator_download_results_object]

    upload >> wait >> download


with DAG(
    "x_compliance_hook",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["x-compliance", "example"],
    description="Steps 1 to 4 in one task of your own, with XComplianceHook",
):
    # [START howto_hook]
    @task
    def check_with_the_hook(ids_path: str, results_path: str) -> dict:
        """Create, upload, wait and download with the hook. Unlike the sensor, this task holds
        its worker slot while the job runs, and a retry creates a new job."""
        hook = XComplianceHook(x_conn_id="x_compliance_default")
        job = hook.create_job("tweets", name="weekly-audit")  # resumable=True by default
        hook.upload_ids(job, ids_path)  # a path, a URL, an ObjectStoragePath or IDs in memory
        while not (job := hook.get_job(job.id)).has_ended:
            time.sleep(POLL_INTERVAL)
        return hook.download_results(job, results_path)  # raises JobEndedError if it failed

    check_with_the_hook(f"{DATA_URL}/ids/tweets.txt", DATA_URL + "/results/hook/{{ ds }}/")  # templated
    # [END howto_hook]
