"""Applying results to a SQL archive with edit chains, dependent records and geo dependents, on
SQLite and on PostgreSQL (psycopg 3, psycopg2). What each table must hold afterwards is computed
here from the rules, record for record, never read back from the code under test."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import pytest

from airflow_provider_xcompliance.apply.audit import AuditIdentity
from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.apply.sql import SqlApplier
from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.exceptions import ApplyRefused
from tests.support.archive_rules import archive_after

KEY = b"archive-audit-key"
TWEETS_DDL = (
    "CREATE TABLE tweets (id BIGINT PRIMARY KEY, author_id BIGINT REFERENCES users (id), "
    "edit_root_id BIGINT, place TEXT)"
)
# (id, author_id, edit_root_id, place): chains 10 (root not stored), 20 (root stored), 30, 60
TWEETS = [
    (11, 7, 10, "p11"),
    (12, 7, 10, None),
    (13, 7, 10, "p13"),
    (20, 8, 20, "p20"),
    (21, 8, 20, "p21"),
    (22, 8, 20, None),
    (31, 9, 30, None),
    (32, 9, 30, "p32"),
    (40, 7, None, "p40"),
    (50, 8, None, "p50"),
    (61, 9, 60, "p61"),
    (62, 9, 60, "p62"),
    (70, 8, None, None),
]
USERS = [7, 8, 9]
MEDIA = [(t[0], f"m{t[0]}") for t in TWEETS]  # one media row per tweet
PLACES = [(t[0], t[3]) for t in TWEETS if t[3]]  # a geo dependent per tweet with a place
BIOS = [(u, f"bio{u}") for u in USERS]
TWEET_RESULTS = [
    ("12", "deleted"),  # a middle version: the whole chain 10 goes
    ("20", "scrub_geo"),  # the stored first version: every version of chain 20 is scrubbed
    ("30", "deleted"),  # the chain's first ID, not stored itself
    ("40", "protected"),
    ("61", "scrub_geo"),
    ("62", "deleted"),  # delete wins over scrub_geo within a chain
    ("999", "deleted"),  # not stored
]
USER_RESULTS = [("8", "suspended")]

ARCHIVE = SqlArchive(
    conn_id="archive_db",
    table="tweets",
    author_id_column="author_id",
    geo_columns=("place",),
    edit_root_column="edit_root_id",
    users_table="users",
    dependents={"tweet_media": "tweet_id"},
    user_dependents={"user_bios": "user_id"},
    geo_dependents={"tweet_places": "tweet_id"},
    audit_table="compliance_audit",
)


def expected(job_type: str) -> dict[str, set]:
    tables = {
        "tweets": set(TWEETS),
        "users": {(u,) for u in USERS},
        "tweet_media": set(MEDIA),
        "tweet_places": set(PLACES),
        "user_bios": set(BIOS),
    }
    if job_type == "tweets":
        flags = {int(i): "scrub_geo" if r == "scrub_geo" else "delete" for i, r in TWEET_RESULTS}
        return archive_after(tables, tweet_flags=flags)
    return archive_after(tables, removed_users={int(i) for i, _ in USER_RESULTS})


@pytest.fixture(params=["sqlite3", "psycopg", "psycopg2"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Any]:
    if request.param == "sqlite3":
        connect = lambda: sqlite3.connect(tmp_path / "archive.db")
        placeholder, admin, cleanup = "?", None, None
    else:
        server = request.getfixturevalue("postgres")
        schema = f"a_{uuid.uuid4().hex[:12]}"
        admin = psycopg.connect(server.uri, autocommit=True)
        admin.execute(f"CREATE SCHEMA {schema}")
        module = psycopg if request.param == "psycopg" else psycopg2
        connect = lambda: module.connect(server.uri, options=f"-c search_path={schema}")
        placeholder, cleanup = "%s", f"DROP SCHEMA {schema} CASCADE"
    conn = connect()
    cur = conn.cursor()
    for ddl in (
        "CREATE TABLE users (id BIGINT PRIMARY KEY)",
        TWEETS_DDL,
        "CREATE TABLE tweet_media (tweet_id BIGINT REFERENCES tweets (id), url TEXT)",
        "CREATE TABLE tweet_places (tweet_id BIGINT REFERENCES tweets (id), place TEXT)",
        "CREATE TABLE user_bios (user_id BIGINT REFERENCES users (id), bio TEXT)",
    ):
        cur.execute(ddl)
    for table, rows in (
        ("users", [(u,) for u in USERS]),
        ("tweets", TWEETS),
        ("tweet_media", MEDIA),
        ("tweet_places", PLACES),
        ("user_bios", BIOS),
    ):
        marks = ", ".join([placeholder] * len(rows[0]))
        cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.commit()
    yield conn, placeholder
    conn.close()
    if admin is not None:
        admin.execute(cleanup)
        admin.close()


def contents(conn) -> dict[str, set]:
    cur = conn.cursor()
    out = {}
    for table, columns in (
        ("tweets", "id, author_id, edit_root_id, place"),
        ("tweet_media", "tweet_id, url"),
        ("tweet_places", "tweet_id, place"),
        ("user_bios", "user_id, bio"),
        ("users", "id"),
    ):
        cur.execute(f"SELECT {columns} FROM {table}")
        out[table] = {tuple(row) for row in cur.fetchall()}
    conn.rollback()
    return out


def results_file(tmp_path, rows) -> str:
    path = tmp_path / f"results-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "action": "delete", "reason": r, "created_at": "2024-01-01T00:00:00.000Z"})
            + "\n"
            for i, r in rows
        )
    )
    return str(path)


def run(db, tmp_path, job_type: str, rows, **options):
    conn, placeholder = db
    applier = SqlApplier(
        conn,
        placeholder,
        ChangeRules(job_type),
        ARCHIVE.target(job_type),
        audit=AuditIdentity("hmac", KEY),
        job_id="j1",
        run_id="r1",
        **options,
    )
    return applier.run(results_file(tmp_path, rows))


@pytest.mark.parametrize(("job_type", "rows"), [("tweets", TWEET_RESULTS), ("users", USER_RESULTS)])
def test_every_table_holds_what_the_rules_say(db, tmp_path, job_type, rows):
    before = contents(db[0])
    report = run(db, tmp_path, job_type, rows)
    after = contents(db[0])
    assert after == expected(job_type)
    # one audit row per record changed (a deleted row, or a tweet whose geo went), dependents
    # included, each naming its table; records named by keyed hash, never by plain ID
    changed = sum(len(before[table] - after[table]) for table in before)
    cur = db[0].cursor()
    cur.execute("SELECT record_key, target, change FROM compliance_audit")
    audit = cur.fetchall()
    db[0].rollback()
    assert len(audit) == changed
    assert {row[1] for row in audit} >= {"tweets", "tweet_media"}
    plain = {str(t[0]) for t in TWEETS} | {str(u) for u in USERS}
    assert not {row[0] for row in audit} & plain and all(len(row[0]) == 64 for row in audit)
    assert report["targets"]["tweet_media"]["deleted"] == len(before["tweet_media"] - after["tweet_media"])


def test_a_second_run_changes_nothing(db, tmp_path):
    run(db, tmp_path, "tweets", TWEET_RESULTS)
    once = contents(db[0])
    report = run(db, tmp_path, "tweets", TWEET_RESULTS)
    assert contents(db[0]) == once and report["changed"] is False


def test_the_guard_counts_every_version_of_a_chain(db, tmp_path):
    # Only 2 of 13 tweets are flagged for deletion ("12", "62"), but their chains hold 5 stored
    # tweets: 5/13 > 0.3 must be refused, with nothing changed. Dependents are guarded alike (a
    # wrong column could wipe them): 4 of the 9 places go, so 0.5 lets the run through.
    before = contents(db[0])
    with pytest.raises(ApplyRefused):
        run(db, tmp_path, "tweets", [("12", "deleted"), ("62", "deleted")], max_delete_fraction=0.3)
    assert contents(db[0]) == before
    report = run(db, tmp_path, "tweets", [("12", "deleted"), ("62", "deleted")], max_delete_fraction=0.5)
    assert report["targets"]["tweets"]["deleted"] == 5 and report["targets"]["tweet_places"]["deleted"] == 4
