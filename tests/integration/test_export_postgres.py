"""Export of an archive's IDs from a real PostgreSQL server, through ``COPY … TO STDOUT`` with
psycopg 3 and psycopg2; the expected IDs are the rows the test inserts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import pytest

from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.exceptions import InvalidIdError
from airflow_provider_xcompliance.export.sql import export_sql_ids
from tests.support.postgres import PostgresServer

ARCHIVE = SqlArchive(
    conn_id="archive_db",
    table="tweets",
    author_id_column="author_id",
    edit_root_column="edit_root_id",
    users_table="users",
)
ROWS = 50_000  # several COPY blocks


@pytest.fixture(params=["psycopg", "psycopg2"])
def conn(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Any]:
    schema = f"x_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.uri, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"SET search_path = {schema}")
        admin.execute("CREATE TABLE tweets (id BIGINT PRIMARY KEY, author_id BIGINT, edit_root_id BIGINT)")
        admin.execute("CREATE TABLE users (id TEXT)")
        admin.execute(
            "INSERT INTO tweets SELECT 1500000000000000000 + g, g %% 1000 + 1, "
            "CASE WHEN g %% 50 = 0 THEN 1400000000000000000 + g END FROM generate_series(1, %s) g",
            (ROWS,),
        )
        admin.execute("INSERT INTO users VALUES ('5'), ('2000'), ('2001')")
        module = psycopg if request.param == "psycopg" else psycopg2
        connection = module.connect(postgres.uri, options=f"-c search_path={schema}")
        try:
            yield connection
        finally:
            connection.close()
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_tweets_are_copied_out_with_each_chains_first_id(conn, tmp_path):
    report = export_sql_ids(conn, ARCHIVE, "tweets", tmp_path / "tweets.txt")
    expected = {str(1500000000000000000 + g) for g in range(1, ROWS + 1)}
    expected |= {str(1400000000000000000 + g) for g in range(50, ROWS + 1, 50)}
    got = lines(tmp_path / "tweets.txt")
    assert sorted(got) == sorted(expected) and report["ids"] == len(expected)


def test_users_are_distinct(conn, tmp_path):
    export_sql_ids(conn, ARCHIVE, "users", tmp_path / "users.txt")
    got = lines(tmp_path / "users.txt")
    assert sorted(map(int, got)) == sorted({g % 1000 + 1 for g in range(1, ROWS + 1)} | {5, 2000, 2001})


def test_a_bad_stored_value_fails_and_nothing_is_written(conn, tmp_path):
    cur = conn.cursor()
    cur.execute("INSERT INTO users VALUES ('not-an-id')")
    conn.commit()
    with pytest.raises(InvalidIdError, match=r"'not-an-id' is not a tweet or user ID"):
        export_sql_ids(conn, ARCHIVE, "users", tmp_path / "users.txt")
    assert not (tmp_path / "users.txt").exists()
