"""The whole obligation, weekly: submit the stored tweet IDs → wait (deferred) → download →
apply the results to the SQL table that holds the tweets, with an audit trail.

The table needs the columns named below (``id``, and the geo columns that ``scrub_geo`` clears);
the connection is any common.sql one (PostgreSQL, SQLite, ...). The audit rows name each
record by an HMAC keyed by the Airflow Variable ``x_compliance_audit_key``:
``airflow variables set x_compliance_audit_key "$(openssl rand -hex 32)"``.
"""

import os

from airflow.sdk import DAG, Param

from airflow_provider_xcompliance.dags import weekly_schedule
from airflow_provider_xcompliance.operators.apply import XComplianceApplyToSqlOperator
from airflow_provider_xcompliance.task_groups import compliance_task_group

DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")
POLL_INTERVAL = float(os.environ.get("X_COMPLIANCE_POLL_INTERVAL", "60"))
# [START howto_download_task_id]
DOWNLOAD = "compliance.download"
# [END howto_download_task_id]

with DAG(
    "x_compliance_tweets_apply",
    schedule=weekly_schedule(),  # Sundays 00:00 UTC; unpausing starts no run by itself
    catchup=False,
    max_active_runs=1,
    tags=["x-compliance", "example"],
    description="Check the stored tweets with X and delete or geo-scrub them in the database",
    params={
        "ids_path": Param(
            f"{DATA_URL}/ids/tweets.txt",
            type="string",
            minLength=1,
            title="IDs file",
            description="The stored tweet IDs, one per line: a path or object-storage URL.",
        ),
        "results_path": Param(
            f"{DATA_URL}/results/tweets/",
            type="string",
            minLength=1,
            title="Results folder",
            description="Where the results land: a folder ending in / or an exact object URL.",
        ),
        "sql_conn_id": Param(
            "x_compliance_demo_db",
            type="string",
            minLength=1,
            title="Database connection",
            description="A SQL connection (PostgreSQL, SQLite, ...) to the table that holds the tweets.",
        ),
        "table": Param(
            "tweets",
            type="string",
            minLength=1,
            title="Tweets table",
            description="The table to delete flagged tweets from and geo-scrub.",
        ),
        # [START howto_param_dry_run]
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Report what would change and change nothing."
        ),
        # [END howto_param_dry_run]
    },
) as dag:
    # [START howto_operator_apply_to_sql]
    compliance = compliance_task_group(
        "tweets",
        "{{ params.ids_path }}",
        "{{ params.results_path }}",
        group_id="compliance",
        poll_interval=POLL_INTERVAL,
    )
    apply = XComplianceApplyToSqlOperator(
        task_id="apply",
        results_path=f"{{{{ ti.xcom_pull(task_ids='{DOWNLOAD}')['path'] }}}}",
        job_id=f"{{{{ ti.xcom_pull(task_ids='{DOWNLOAD}')['job_id'] }}}}",
        job_type="tweets",
        conn_id="{{ params.sql_conn_id }}",
        table="{{ params.table }}",
        id_column="id",
        geo_columns=("geo_lat", "geo_lon", "place_id"),
        audit_table="x_compliance_audit",
        max_delete_fraction=0.2,  # a wrong table or column must not wipe the data
        dry_run="{{ params.dry_run }}",
    )
    compliance >> apply
    # [END howto_operator_apply_to_sql]
