"""Self-test of tests/support's servers: the ``seaweed`` fixture's S3 through boto3, and the
``postgres`` fixture, a real server that takes writes and listens on loopback only."""

from __future__ import annotations

import psycopg

from tests.support import SeaweedS3
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


def test_seaweed_boto3_roundtrip(seaweed: SeaweedS3, s3_bucket: str):
    assert seaweed.running
    assert seaweed.endpoint_url.startswith("http://127.0.0.1:")
    c = seaweed.client()
    c.put_object(Bucket=s3_bucket, Key="dir/obj.bin", Body=b"\x00payload\xff" * 1000)
    assert c.get_object(Bucket=s3_bucket, Key="dir/obj.bin")["Body"].read() == b"\x00payload\xff" * 1000
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")["Contents"]]
    assert keys == ["dir/obj.bin"]
    # each s3_bucket is fresh
    assert seaweed.create_bucket() != s3_bucket
