"""DAGs for the operator tests: each operator on its own, with switches read from the
environment at parse time (``airflow dags test`` parses in the process it runs in)."""

import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_xcompliance.operators.compliance import (
    XComplianceCreateJobOperator,
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
    XComplianceUploadIdsOperator,
)
from airflow_provider_xcompliance.sensors.compliance import XComplianceJobSensor

RESUMABLE = os.environ.get("XC_TEST_RESUMABLE") == "1"
DEFERRABLE = os.environ.get("XC_TEST_DEFERRABLE", "1") == "1"
POLL = float(os.environ.get("XC_TEST_POLL", "1"))
PARAMS = {"job_type": "tweets", "ids_path": "", "results_path": "", "job_id": ""}

with DAG("xc_steps", schedule=None, params=PARAMS, catchup=False):
    create = XComplianceCreateJobOperator(
        task_id="create", job_type="{{ params.job_type }}", resumable=RESUMABLE
    )
    upload = XComplianceUploadIdsOperator(
        task_id="upload", job_id=create.output, ids_path="{{ params.ids_path }}"
    )
    wait = XComplianceJobSensor(
        task_id="wait",
        job_id=create.output,
        poll_interval=POLL,
        deferrable=DEFERRABLE,
        timeout=120,
    )
    download = XComplianceDownloadResultsOperator(
        task_id="download",
        job_id=create.output,
        results_path="{{ params.results_path }}",
        job_type="tweets",
    )
    create >> upload >> wait >> download

with DAG("xc_wait", schedule=None, params=PARAMS, catchup=False):
    XComplianceJobSensor(
        task_id="wait",
        job_id="{{ params.job_id }}",
        poll_interval=POLL,
        deferrable=DEFERRABLE,
        timeout=120,
    )

with DAG("xc_submit_retried", schedule=None, params=PARAMS, catchup=False):
    XComplianceSubmitJobOperator(
        task_id="submit",
        job_type="{{ params.job_type }}",
        ids_path="{{ params.ids_path }}",
        retries=1,
        retry_delay=timedelta(seconds=0),
        deferrable=DEFERRABLE,
        poll_interval=POLL,
    )
