"""A DAG for the lineage test: submit → wait → download → apply to a JSON Lines data set, each
reporting its inputs and outputs to OpenLineage (tests/system/test_lineage_dag.py)."""

from airflow.sdk import DAG

from airflow_provider_xcompliance.operators.apply import XComplianceApplyToFilesOperator
from airflow_provider_xcompliance.operators.compliance import (
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
)
from airflow_provider_xcompliance.sensors.compliance import XComplianceJobSensor

PARAMS = {"ids_path": "", "results_path": "", "data_path": "", "audit_path": ""}

with DAG("xc_lineage", schedule=None, params=PARAMS, catchup=False):
    submit = XComplianceSubmitJobOperator(
        task_id="submit",
        job_type="tweets",
        ids_path="{{ params.ids_path }}",
        deferrable=False,
        poll_interval=1,
    )
    wait = XComplianceJobSensor(
        task_id="wait",
        job_id=submit.output,
        poll_interval=1,
        deferrable=False,
        timeout=120,
    )
    download = XComplianceDownloadResultsOperator(
        task_id="download",
        job_id=submit.output,
        results_path="{{ params.results_path }}",
        job_type="tweets",
    )
    apply = XComplianceApplyToFilesOperator(
        task_id="apply_files",
        job_type="tweets",
        results_path="{{ ti.xcom_pull(task_ids='download')['path'] }}",
        job_id=submit.output,
        data_path="{{ params.data_path }}",
        geo_fields=["geo"],
        audit_path="{{ params.audit_path }}",
        audit_ids="plain",
    )
    submit >> wait >> download >> apply
