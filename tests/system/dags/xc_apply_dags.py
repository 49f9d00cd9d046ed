"""A DAG for the apply tests: XComplianceApplyToSqlOperator on a SQLite connection (a tweets job)
and on a PostgreSQL one (a users job, tables in the schema ``params.pg_schema``)."""

from airflow.sdk import DAG, Asset

from airflow_provider_xcompliance.operators.apply import XComplianceApplyToSqlOperator

PARAMS = {"tweets_results": "", "users_results": "", "job_id": "", "pg_schema": "public"}

with DAG("xc_apply_sql", schedule=None, params=PARAMS, catchup=False):
    XComplianceApplyToSqlOperator(
        task_id="apply_sqlite",
        conn_id="xc_sqlite",
        job_type="tweets",
        results_path="{{ params.tweets_results }}",
        job_id="{{ params.job_id }}",
        table="tweets",
        geo_columns=["geo_lat", "geo_lon", "place_id"],
        audit_table="xc_audit",
        asset=Asset("x-compliance://applied/sqlite"),
    )
    XComplianceApplyToSqlOperator(
        task_id="apply_postgres",
        conn_id="xc_postgres",
        job_type="users",
        results_path="{{ params.users_results }}",
        job_id="{{ params.job_id }}",
        table="{{ params.pg_schema }}.tweets",
        author_id_column="author_id",
        users_table="{{ params.pg_schema }}.users",
        audit_table="{{ params.pg_schema }}.xc_audit",
        batch_size=2,
    )
