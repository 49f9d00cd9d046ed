"""The ``postgres`` fixture: a real server that takes writes and listens on loopback only."""

from __future__ import annotations

import psycopg

from tests.support.postgres import PostgresServer


def test_postgres_fixture_round_trip(postgres: PostgresServer) -> None:
    assert postgres.uri == f"postgres://postgres@127.0.0.1:{postgres.port}/xc_test"
    assert postgres.conn_env("pg") == {"AIRFLOW_CONN_PG": postgres.uri}
    with psycopg.connect(postgres.uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
        assert conn.execute("SELECT id, name FROM t ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
        assert conn.execute("SELECT current_database()").fetchone() == ("xc_test",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        conn.execute("DROP TABLE t")
