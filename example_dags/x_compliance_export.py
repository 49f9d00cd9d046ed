"""Step 2 from your own archive: export the tweet IDs a SQL table holds → check them with X
(submit → wait, deferred → download) → apply the results to that table, with an audit trail.

The archive is the ``tweets`` table of the database behind the connection ``ARCHIVE_CONN_ID``
(any common.sql connection; the demo's is a SQLite file: ``conn_type`` ``sqlite``, ``host`` the
file's path). The ID file and the results go under ``X_COMPLIANCE_DATA_URL`` (any
object-storage URL, default ``file:///tmp/x-compliance``), in a folder per run. The audit rows
name each record by an HMAC keyed by the Airflow Variable ``x_compliance_audit_key``:
``airflow variables set x_compliance_audit_key "$(openssl rand -hex 32)"``.
"""

import os

from airflow.sdk import DAG

from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.dags import compliance_task_group, weekly_schedule
from airflow_provider_xcompliance.operators.apply import XComplianceApplyToSqlOperator
from airflow_provider_xcompliance.operators.export import XComplianceExportIdsOperator

DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")
POLL_INTERVAL = float(os.environ.get("X_COMPLIANCE_POLL_INTERVAL", "60"))
ARCHIVE_CONN_ID = "x_compliance_demo_db"
RUN_DATA = DATA_URL + "/export/{{ ds }}"

# [START howto_archive_sql]
ARCHIVE = SqlArchive(
    conn_id=ARCHIVE_CONN_ID,
    table="tweets",
    id_column="id",
    author_id_column="author_id",  # a users job's IDs: the distinct authors
    geo_columns=("geo_lat", "geo_lon", "place_id"),  # set to NULL for scrub_geo
)
# [END howto_archive_sql]

with DAG(
    "x_compliance_export",
    schedule=weekly_schedule(),  # Sundays 00:00 UTC; unpausing starts no run by itself
    catchup=False,
    max_active_runs=1,
    tags=["x-compliance", "example"],
    description="Export the stored tweet IDs, check them with X, apply the results to the table",
):
    # [START howto_operator_export_ids]
    export = XComplianceExportIdsOperator(
        task_id="export_ids",
        archive=ARCHIVE,
        job_type="tweets",  # every stored tweet ID
        ids_path=f"{RUN_DATA}/tweet_ids.txt",  # templated; written whole or not at all
    )  # returns the export report: job_type, archive, path, ids, bytes, seconds
    compliance = compliance_task_group(
        "tweets", f"{RUN_DATA}/tweet_ids.txt", f"{RUN_DATA}/results/", poll_interval=POLL_INTERVAL
    )
    export >> compliance
    # [END howto_operator_export_ids]

    # [START howto_apply_results_handoff]
    apply = XComplianceApplyToSqlOperator(
        task_id="apply",
        # The group's download task: its summary holds the results' path, job id and job type.
        results=compliance.children["tweets_compliance.download"].output,
        job_type="tweets",  # users results are refused before anything changes
        conn_id=ARCHIVE.conn_id,
        table=ARCHIVE.table,
        id_column=ARCHIVE.id_column,
        geo_columns=ARCHIVE.geo_columns,
        audit_table="x_compliance_audit",
        max_delete_fraction=0.2,  # a wrong table or column must not wipe the data
    )
    # [END howto_apply_results_handoff]
