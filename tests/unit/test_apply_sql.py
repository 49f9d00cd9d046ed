"""Applying results to SQL tables in SQLite files: the SQL applier's suite (tests/support/
apply_sql_suite.py; on PostgreSQL in tests/integration/test_apply_sql.py), and what needs no
database server at all."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.apply.sql import SqlApplier
from airflow_provider_xcompliance.apply.sql_tables import SqlTarget
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from tests.support.apply_sql import Database, T, ids_within, sqlite_database
from tests.support.apply_sql_suite import *  # noqa: F403  the suite's tests, run here on SQLite


@pytest.fixture(params=["sqlite3"])
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh SQLite file per test."""
    database = sqlite_database(tmp_path / "data.sqlite")
    try:
        yield database
    finally:
        database.close()


def test_the_plain_id_check_finds_ids_inside_text() -> None:
    """The audit check of assert_audit must be able to fail: it finds an ID inside longer text."""
    assert list(ids_within("ab783214cd", {"783214", "95731075"}, [6, 8])) == ["783214"]
    assert list(ids_within(f"x{T[0]}1", {str(T[0])}, [19])) == [str(T[0])]
    assert list(ids_within("78321 4", {"783214"}, [6])) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"table": "tweets; drop table x"},
        {"table": "a.b.c"},
        {"table": "tweets", "id_column": "id) OR (1=1"},
        {"table": "tweets", "geo_columns": ("geo_lat", "geo_lon = 0, text")},
        {"table": "tweets", "author_id_column": "author_id--"},
        {"table": "tweets", "users_table": "users where 1=1"},
        {"table": "tweets", "audit_table": "audit; drop table tweets"},
    ],
    ids=[
        "table-with-statement",
        "three-part-name",
        "id-column",
        "geo-column",
        "author-id-column",
        "users-table",
        "audit-table",
    ],
)
def test_names_that_are_not_plain_sql_names_are_refused(fields: dict) -> None:
    """Names become SQL text: anything but a plain (schema.)name is refused before any connection."""
    with pytest.raises(ApplyConfigError, match="is not a plain SQL name"):
        SqlTarget(**fields)


def test_scrub_geo_results_without_geo_columns_fail_before_any_change(tmp_path: Path) -> None:
    """Geo data X asks to remove cannot be left in place silently: no geo_columns is a config error."""
    connection = sqlite3.connect(tmp_path / "geo.sqlite")
    connection.execute("CREATE TABLE tweets (id BIGINT PRIMARY KEY, lat REAL)")
    connection.executemany("INSERT INTO tweets VALUES (?, ?)", [(1, 1.5), (2, 2.5)])
    connection.commit()
    results = tmp_path / "r.jsonl"
    results.write_text('{"id":"1","reason":"deleted"}\n{"id":"2","reason":"scrub_geo"}\n')
    with pytest.raises(
        ApplyConfigError, match=r"scrub_geo.*geo_columns is empty.*overrides=\{'scrub_geo': 'keep'\}"
    ):
        SqlApplier(connection, "?", ChangeRules("tweets"), SqlTarget("tweets")).run(results)
    assert connection.execute("SELECT id, lat FROM tweets ORDER BY id").fetchall() == [(1, 1.5), (2, 2.5)]
    kept = SqlApplier(connection, "?", ChangeRules("tweets", {"scrub_geo": "keep"}), SqlTarget("tweets")).run(
        results
    )
    assert kept["deleted"] == {"deleted": 1} and kept["kept"] == {"scrub_geo": 1}
