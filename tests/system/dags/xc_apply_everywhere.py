"""Step 5 everywhere, from public parts only: tweets and users compliance task groups, then the
results applied to a SQLite database, a PostgreSQL database and a JSON Lines data set in S3."""

import os

from airflow.sdk import DAG

from airflow_provider_xcompliance.dags import compliance_task_group
from airflow_provider_xcompliance.operators.apply import (
    XComplianceApplyToFilesOperator,
    XComplianceApplyToSqlOperator,
)

DATA = os.environ["XC_TEST_DATA_URL"]  # ids/, results/
DATASET = os.environ["XC_TEST_DATASET_URL"]  # the JSONL data set, in S3
AUDIT = os.environ["XC_TEST_AUDIT_URL"]


def results(kind: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{kind}_compliance.download')['path'] }}}}"


def job_id(kind: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{kind}_compliance.download')['job_id'] }}}}"


with DAG("xc_apply_everywhere", schedule=None, catchup=False):
    groups = {
        kind: compliance_task_group(kind, f"{DATA}/ids/{kind}.txt", f"{DATA}/results/", poll_interval=1)
        for kind in ("tweets", "users")
    }
    for conn_id in ("xc_sqlite", "xc_postgres"):
        tweets = XComplianceApplyToSqlOperator(
            task_id=f"tweets_to_{conn_id}",
            conn_id=conn_id,
            job_type="tweets",
            results_path=results("tweets"),
            job_id=job_id("tweets"),
            table="tweets",
            geo_columns=("geo_lat", "geo_lon"),
            audit_table="xc_audit",
            max_delete_fraction=0.5,
        )
        users = XComplianceApplyToSqlOperator(
            task_id=f"users_to_{conn_id}",
            conn_id=conn_id,
            job_type="users",
            results_path=results("users"),
            job_id=job_id("users"),
            table="tweets",
            author_id_column="author_id",
            users_table="users",
            audit_table="xc_audit",
            max_delete_fraction=0.5,
        )
        groups["tweets"] >> tweets
        groups["users"] >> users
        tweets >> users  # one writer at a time on a SQLite file
    tweets = XComplianceApplyToFilesOperator(
        task_id="tweets_to_s3_jsonl",
        job_type="tweets",
        results_path=results("tweets"),
        job_id=job_id("tweets"),
        data_path=DATASET,
        geo_fields=("geo",),
        partition_template="month={created_at:%Y-%m}",
        audit_path=AUDIT,
        max_delete_fraction=0.5,
    )
    users = XComplianceApplyToFilesOperator(
        task_id="users_to_s3_jsonl",
        job_type="users",
        results_path=results("users"),
        job_id=job_id("users"),
        data_path=DATASET,
        author_id_field="author_id",
        audit_path=AUDIT,
        max_delete_fraction=0.5,
    )
    groups["tweets"] >> tweets >> users
    groups["users"] >> users
