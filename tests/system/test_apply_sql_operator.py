"""XComplianceApplyToSqlOperator in ``airflow dags test``, on a SQLite connection and a PostgreSQL
one (the applier itself: tests/support/apply_sql_suite.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.apply_sql import (
    AUDIT,
    AUDIT_KEY,
    JOB_ID,
    TWEETS,
    TWEETS_RESULTS,
    USERS,
    USERS_RESULTS,
    Database,
    T,
    U,
    assert_audit,
    assert_report,
    assert_tables,
    expect_tweets_job,
    expect_users_job,
    pg_admin,
    sqlite_database,
    write_results,
)

TEST_DAGS = Path(__file__).parent / "dags"


@pytest.fixture
def pg_schema(postgres: Any) -> Iterator[tuple[Any, str]]:
    """A fresh PostgreSQL schema and an autocommitting admin connection whose search_path is it."""
    schema = f"op_{uuid.uuid4().hex[:12]}"
    admin = pg_admin(postgres, schema)
    try:
        yield admin, schema
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture
def operator_databases(tmp_path: Path, pg_schema: tuple[Any, str]) -> Iterator[tuple[Database, Database]]:
    """The seeded SQLite file and PostgreSQL schema the DAG's tasks change (through Airflow)."""
    sqlite_path = tmp_path / "app.sqlite"
    lite = sqlite_database(sqlite_path)
    pg = Database("psycopg", "%s", lambda: None, pg_schema[0])  # the pg_schema fixture drops and closes
    for database in (lite, pg):
        database.seed()
    yield lite, pg
    lite.admin.close()


def apply_dag_env(tmp_path: Path, postgres: Any, **extra: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_XC_SQLITE": "sqlite://" + quote(str(tmp_path / "app.sqlite"), safe=""),
        **postgres.conn_env("xc_postgres"),
        **extra,
    }


def test_operator_applies_results_in_a_dag_run(
    airflow_env: Any, postgres: Any, pg_schema: tuple, operator_databases: tuple, tmp_path: Path
) -> None:
    """XComplianceApplyToSqlOperator in ``airflow dags test``: a tweets job on a SQLite connection,
    a users job on the PostgreSQL one, the HMAC key from AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY."""
    lite, pg = operator_databases
    tweets_results = write_results(tmp_path / "tweets.jsonl", TWEETS_RESULTS)
    users_results = write_results(tmp_path / "users.jsonl", USERS_RESULTS)
    conf = {
        "tweets_results": str(tweets_results),
        "users_results": users_results.as_uri(),
        "job_id": JOB_ID,
        "pg_schema": pg_schema[1],
    }

    run = airflow_env.dags_test(
        "xc_apply_sql",
        TEST_DAGS,
        conf=conf,
        dag_file=TEST_DAGS / "xc_apply_dags.py",
        env=apply_dag_env(tmp_path, postgres, AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY=AUDIT_KEY.decode()),
    ).assert_success()

    tweets_job = expect_tweets_job(TWEETS, TWEETS_RESULTS)
    assert_tables(lite, {"tweets": tweets_job.tables["tweets"], "users": USERS})
    assert_audit(lite, tweets_job, ids=T + U, run_id=run.run_id)
    report = run.xcom("apply_sqlite")
    assert_report(
        report,
        tweets_job,
        job_type="tweets",
        job_id=JOB_ID,
        target="tweets",
        results_path=str(tweets_results),
        dry_run=False,
    )
    assert run.asset_events("x-compliance://applied/sqlite")[0]["extra"] == report

    qualified = f"{pg_schema[1]}.tweets"
    users_job = expect_users_job(
        TWEETS, USERS, USERS_RESULTS, tweets_table=qualified, users_table=f"{pg_schema[1]}.users"
    )
    assert_tables(
        pg, {"tweets": users_job.tables[qualified], "users": users_job.tables[f"{pg_schema[1]}.users"]}
    )
    assert_audit(pg, users_job, ids=T + U, run_id=run.run_id)
    assert_report(
        run.xcom("apply_postgres"),
        users_job,
        job_type="users",
        target=qualified,
        results_path=users_results.as_uri(),
    )


def test_operator_without_the_audit_key_variable_fails_and_changes_nothing(
    airflow_env: Any, postgres: Any, pg_schema: tuple, operator_databases: tuple, tmp_path: Path
) -> None:
    """No x_compliance_audit_key Variable: both tasks fail, saying how to set it; no table changed."""
    lite, pg = operator_databases
    conf = {
        "tweets_results": str(write_results(tmp_path / "tweets.jsonl", TWEETS_RESULTS)),
        "users_results": str(write_results(tmp_path / "users.jsonl", USERS_RESULTS)),
        "job_id": JOB_ID,
        "pg_schema": pg_schema[1],
    }

    run = airflow_env.dags_test(
        "xc_apply_sql",
        TEST_DAGS,
        conf=conf,
        dag_file=TEST_DAGS / "xc_apply_dags.py",
        env=apply_dag_env(tmp_path, postgres),
    )

    assert run.failed and run.task_states() == {"apply_sqlite": "failed", "apply_postgres": "failed"}
    logs = run.logs_text()
    assert (
        "audit_ids='hmac' needs a key, and none is set. Set the Airflow Variable 'x_compliance_audit_key'"
    ) in logs
    assert "airflow variables set x_compliance_audit_key" in logs
    for database in (lite, pg):
        assert_tables(database, {"tweets": TWEETS, "users": USERS})
        assert not database.exists(AUDIT)
