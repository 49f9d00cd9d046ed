"""Applying results to SQL tables in a real PostgreSQL server, through psycopg 3 and psycopg2 (the
COPY paths): the SQL applier's suite (tests/support/apply_sql_suite.py; on SQLite in
tests/unit/test_apply_sql.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.apply_sql import Database, postgres_database
from tests.support.apply_sql_suite import *  # noqa: F403  the suite's tests, run here on PostgreSQL
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["psycopg", "psycopg2"])
def db(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Database]:
    """A PostgreSQL schema of its own per test, opened through the driver under test."""
    database = postgres_database(postgres, request.param, f"t_{uuid.uuid4().hex[:12]}")
    try:
        yield database
    finally:
        database.close()
