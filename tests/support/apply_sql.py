"""The SQL applier's tests' harness: the data (tweets, users, results files), the rules restated in
plain Python (what the tables, report and audit trail must be: computed here, never read back from
the code under test), the databases (a SQLite file, a PostgreSQL schema) and the checks.
Used by tests/support/apply_sql_suite.py and tests/system/test_apply_sql_operator.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg2

from airflow_provider_xcompliance.apply.audit import AUDIT_COLUMNS, AuditIdentity
from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.apply.sql import SqlApplier
from airflow_provider_xcompliance.apply.sql_tables import SqlTarget

AUDIT_KEY = b"audit-key-for-tests-3c9f5a0e1b7d"
JOB_ID = "1382391418032259072"
RUN_ID = "manual__2025-06-01T08:00:00+00:00"
GEO = ("geo_lat", "geo_lon", "place_id")
AUDIT = "xc_audit"

TWEETS_DDL = (
    "CREATE TABLE {} (id BIGINT PRIMARY KEY, author_id BIGINT, text TEXT, "
    "geo_lat DOUBLE PRECISION, geo_lon DOUBLE PRECISION, place_id VARCHAR(32))"
)
USERS_DDL = "CREATE TABLE {} (id BIGINT PRIMARY KEY, name TEXT)"


# ---------------------------------------------------------------------------- the data
USERS = [
    (2244994945, "XDevelopers"),
    (783214, "X"),
    (1263477406519369728, "amelia_r"),
    (1452098765432109056, "kofi.builds"),
    (95731075, "Nora Håkansson"),
    (1600000000000000001, "no_tweets_yet"),  # has no stored tweet
]
PLACES = ("01a9a39529b27f36", "5a110d312052166f", "3b77caf94bfc81fe")


def make_tweets(count: int = 24) -> list[tuple]:
    """Tweets by the first five users; a third with full geo, a third with a place only, a third
    with no geo data at all."""
    tweets = []
    for i in range(count):
        author = USERS[i % 5][0]
        place = PLACES[i % 3]
        lat, lon = 40.7128 + i / 1000, -74.006 - i / 1000
        geo = [(lat, lon, place), (None, None, place), (None, None, None)][i % 3]
        tweets.append((1265324480517361664 + i * 104729, author, f"tweet #{i}: it's «{i}» o'clock", *geo))
    return tweets


TWEETS = make_tweets()
T = [row[0] for row in TWEETS]  # tweet IDs by index
U = [row[0] for row in USERS]
ABSENT = 1999999999999999999  # an ID no table holds


def write_results(path: Path, lines: Iterable[tuple[int, str | None] | str]) -> Path:
    """A results file as X writes it; a ``(id, None)`` line has no reason, a ``str`` goes as is."""

    def line(item: tuple[int, str | None] | str) -> str:
        if isinstance(item, str):
            return item
        record_id, reason = item
        result = {"id": str(record_id), "action": "delete", "created_at": "2019-10-29T17:02:47.000Z"}
        if reason is not None:
            result["reason"] = reason
        return json.dumps(result, separators=(",", ":"))

    path.write_text("".join(line(item) + "\n" for item in lines))
    return path


# ---------------------------------------------------------------------------- the rules, restated
def rule(job_type: str, reason: str, overrides: dict[str, str]) -> str:
    if reason in overrides:
        return overrides[reason]
    return "scrub_geo" if job_type == "tweets" and reason == "scrub_geo" else "delete"


def flagged_ids(
    job_type: str, results: list[tuple[int, str | None]], overrides: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """``{id: (change, reason)}``: delete beats scrub_geo; an ID only kept is not flagged."""
    asked: dict[str, list[tuple[str, str]]] = {}
    for record_id, reason in results:
        reason = "unknown" if reason is None else reason
        asked.setdefault(str(record_id), []).append((rule(job_type, reason, overrides), reason))
    flagged = {}
    for record_id, asks in asked.items():
        for change in ("delete", "scrub_geo"):
            reasons = {r for c, r in asks if c == change}
            if reasons:
                assert len(reasons) == 1, f"test data: give {record_id} one {change} reason"
                flagged[record_id] = (change, reasons.pop())
                break
    return flagged


@dataclass
class Expected:
    """Tables, report counts and audit rows as the rules say they must end up."""

    tables: dict[str, list[tuple]] = field(default_factory=dict)
    deleted: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    targets: dict[str, dict[str, int]] = field(default_factory=dict)
    audit: list[tuple] = field(default_factory=list)  # (record id, record_type, target, reason, change)
    result_lines: int = 0

    def record(self, table: str, record_type: str, record_id: int, reason: str, change: str) -> None:
        kind = "deleted" if change == "delete" else "updated"
        getattr(self, kind)[reason] += 1
        self.targets.setdefault(table, {"deleted": 0, "updated": 0})[kind] += 1
        self.audit.append((record_id, record_type, table, reason, change))

    def fraction_deleted(self, table: str, total: int) -> float:
        return self.targets.get(table, {"deleted": 0})["deleted"] / total


def _start(job_type: str, results: list, overrides: dict[str, str] | None) -> tuple[Expected, dict]:
    overrides = overrides or {}
    expected = Expected(result_lines=len(results))
    for _, reason in results:
        if rule(job_type, reason or "unknown", overrides) == "keep":
            expected.kept[reason or "unknown"] += 1
    return expected, flagged_ids(job_type, results, overrides)


def expect_tweets_job(
    tweets: list[tuple], results: list, overrides: dict | None = None, table: str = "tweets"
) -> Expected:
    expected, flagged = _start("tweets", results, overrides)
    after = []
    for row in tweets:
        change, reason = flagged.get(str(row[0]), (None, None))
        if change == "delete":
            expected.record(table, "tweet", row[0], reason, "delete")
            continue
        if change == "scrub_geo" and any(value is not None for value in row[3:]):
            expected.record(table, "tweet", row[0], reason, "scrub_geo")
            row = (*row[:3], None, None, None)
        after.append(row)
    expected.tables[table] = after
    return expected


def expect_users_job(
    tweets: list[tuple] | None,
    users: list[tuple],
    results: list,
    overrides: dict | None = None,
    tweets_table: str = "tweets",
    users_table: str = "users",
) -> Expected:
    """``tweets`` None: the job's ``table`` is the users table itself."""
    expected, flagged = _start("users", results, overrides)
    if tweets is not None:
        expected.tables[tweets_table] = []
        for row in tweets:
            if str(row[1]) in flagged:
                expected.record(tweets_table, "tweet", row[0], flagged[str(row[1])][1], "delete")
            else:
                expected.tables[tweets_table].append(row)
    expected.tables[users_table] = []
    for row in users:
        if str(row[0]) in flagged:
            expected.record(users_table, "user", row[0], flagged[str(row[0])][1], "delete")
        else:
            expected.tables[users_table].append(row)
    return expected


def audit_key(mode: str, record_id: int) -> str | None:
    if mode == "hmac":
        return hmac.new(AUDIT_KEY, str(record_id).encode(), hashlib.sha256).hexdigest()
    return str(record_id) if mode == "plain" else None


# ---------------------------------------------------------------------------- the databases
@dataclass
class Database:
    """One test's own database: ``connect()`` opens a connection through the driver under test;
    ``admin`` is another, autocommitting connection that seeds and reads."""

    driver: str
    placeholder: str
    open: Callable[[], Any]
    admin: Any
    schema: str | None = None
    opened: list = field(default_factory=list)

    @property
    def postgres(self) -> bool:
        return self.driver != "sqlite3"

    def connect(self) -> Any:
        conn = self.open()
        self.opened.append(conn)
        return conn

    def execute(self, sql: str) -> None:
        self.admin.cursor().execute(sql)

    def insert(self, table: str, rows: Iterable[tuple]) -> None:
        rows = list(rows)
        if self.postgres:
            with self.admin.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(rows[0]))
        self.admin.execute("BEGIN")
        self.admin.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        self.admin.execute("COMMIT")

    def seed(self, tweets: list[tuple] = TWEETS, users: list[tuple] = USERS) -> None:
        self.execute(TWEETS_DDL.format("tweets"))
        self.execute(USERS_DDL.format("users"))
        self.insert("tweets", tweets)
        self.insert("users", users)

    def select(self, table: str, conn: Any = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows (sorted), through ``conn`` or the admin connection."""
        cur = (conn or self.admin).cursor()
        cur.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cur.description]
        rows = sorted((tuple(r) for r in cur.fetchall()), key=repr)
        if conn is not None and self.postgres:
            conn.rollback()  # end the read's transaction: no lock outlives the check
        return columns, rows

    def rows(self, table: str, conn: Any = None) -> list[tuple]:
        return sorted(self.select(table, conn)[1], key=lambda row: row[0])

    def exists(self, table: str) -> bool:
        cur = self.admin.cursor()
        if self.postgres:
            cur.execute(f"SELECT to_regclass('{table}') IS NOT NULL")
        else:
            cur.execute(f"SELECT COUNT(*) FROM sqlite_master WHERE name = '{table}'")
        return bool(cur.fetchone()[0])

    def close(self) -> None:
        for conn in self.opened:
            conn.close()
        if self.schema:
            self.execute(f"DROP SCHEMA {self.schema} CASCADE")
        self.admin.close()


def sqlite_database(path: Path) -> Database:
    """A SQLite file; the admin connection autocommits."""
    admin = sqlite3.connect(path, isolation_level=None)
    return Database("sqlite3", "?", lambda: sqlite3.connect(path), admin)


def pg_admin(server: Any, schema: str) -> Any:
    admin = psycopg.connect(server.uri, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    admin.execute(f"SET search_path TO {schema}")
    return admin


def postgres_database(server: Any, driver: str, schema: str) -> Database:
    """A PostgreSQL schema of its own in ``server``, opened through ``driver`` (``psycopg`` or
    ``psycopg2``); the admin connection autocommits, and ``close()`` drops the schema."""
    options = f"-c search_path={schema}"
    module = psycopg if driver == "psycopg" else psycopg2
    return Database(
        driver,
        "%s",
        lambda: module.connect(server.uri, options=options),
        pg_admin(server, schema),
        schema,
    )


def applier(
    db: Database,
    job_type: str,
    target: SqlTarget,
    *,
    conn: Any = None,
    overrides: dict | None = None,
    audit: str | None = "hmac",
    **options: Any,
) -> SqlApplier:
    """A SqlApplier on a new connection, with the tests' job and run IDs."""
    identity = AuditIdentity(audit, AUDIT_KEY if audit == "hmac" else None) if audit else None
    return SqlApplier(
        conn or db.connect(),
        db.placeholder,
        ChangeRules(job_type, overrides),
        target,
        audit=identity,
        job_id=JOB_ID,
        run_id=RUN_ID,
        **options,
    )


TWEETS_TARGET = SqlTarget("tweets", geo_columns=GEO, audit_table=AUDIT)
USERS_TARGET = SqlTarget("tweets", author_id_column="author_id", users_table="users", audit_table=AUDIT)


# ---------------------------------------------------------------------------- checks
def assert_tables(db: Database, expected: dict[str, list[tuple]], conn: Any = None) -> None:
    """Every table, record for record: through the admin connection (what is committed) and,
    given the applier's ``conn``, through it too (nothing left uncommitted or un-rolled-back)."""
    for table, rows in expected.items():
        assert db.rows(table) == sorted(rows), f"{table} (committed)"
        if conn is not None:
            assert db.rows(table, conn) == sorted(rows), f"{table} (applier's connection)"


def assert_report(report: dict, expected: Expected, **fields: Any) -> None:
    counts = {k: report[k] for k in ("result_lines", "deleted", "updated", "kept", "targets", "changed")}
    assert counts == {
        "result_lines": expected.result_lines,
        "deleted": dict(expected.deleted),
        "updated": dict(expected.updated),
        "kept": dict(expected.kept),
        "targets": expected.targets,
        "changed": bool(expected.audit),
    }
    assert {k: report[k] for k in fields} == fields


def assert_audit(
    db: Database,
    expected: Expected,
    mode: str = "hmac",
    *,
    ids: Iterable[int] = (),
    job_id: str | None = JOB_ID,
    run_id: str | None = RUN_ID,
    table: str = AUDIT,
) -> None:
    """One row per changed record, keyed as ``mode`` says, and (unless plain) no record's plain
    ID in any cell."""
    columns, rows = db.select(table)
    assert columns == list(AUDIT_COLUMNS)
    want = Counter(
        (audit_key(mode, rid), rtype, target, reason, change, job_id, run_id)
        for rid, rtype, target, reason, change in expected.audit
    )
    assert Counter(row[:7] for row in rows) == want
    stamps = {row[7] for row in rows}
    assert len(stamps) == 1, "one applied_at per run"
    applied_at = datetime.fromisoformat(stamps.pop().replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - applied_at < timedelta(minutes=10)
    if mode != "plain":
        plain = {str(i) for i in ids} | {str(rid) for rid, *_ in expected.audit}
        lengths = sorted({len(i) for i in plain})
        cells = [str(cell) for row in rows for cell in row]
        leaks = [(cell, found) for cell in cells for found in ids_within(cell, plain, lengths)]
        assert leaks == [], "plain IDs in the audit table"


def ids_within(text: str, ids: set[str], lengths: list[int]) -> Iterator[str]:
    """The IDs (of the given lengths) that occur anywhere in ``text``, found through its runs of digits."""
    for run in re.findall(r"\d{%d,}" % lengths[0], text):
        for n in lengths:
            yield from (run[at : at + n] for at in range(len(run) - n + 1) if run[at : at + n] in ids)


# ---------------------------------------------------------------------------- the results files
TWEETS_RESULTS = [
    (T[0], "deleted"),
    (T[1], "suspended"),
    (T[2], "protected"),
    (T[4], "bounced"),
    (T[5], "copyright_takedown"),  # a reason the rules do not name: deleted too
    (T[7], None),  # no reason at all ("unknown"): deleted
    (T[3], "scrub_geo"),  # full geo
    (T[10], "scrub_geo"),  # a place only
    (T[8], "scrub_geo"),  # no geo data: nothing to scrub
    (T[6], "scrub_geo"),
    (T[6], "deleted"),  # both: deleted
    (T[9], "deleted"),
    (T[9], "scrub_geo"),  # both, the other order
    (T[0], "deleted"),
    (T[3], "scrub_geo"),  # duplicates
    (ABSENT, "deleted"),
    (ABSENT + 1, "scrub_geo"),  # not in the data
]


USERS_RESULTS = [
    (U[0], "suspended"),
    (U[2], "deleted"),
    (U[2], "deleted"),
    (U[5], "deactivated"),
    (U[3], "made_up_reason"),
    (ABSENT, "suspended"),
]


OVERRIDE_RESULTS = TWEETS_RESULTS + [(T[11], "protected"), (T[12], "protected"), (ABSENT + 2, "protected")]


def break_user_deletes(db: Database) -> str:
    """Make ``DELETE FROM users`` fail for a flagged user: a foreign key on PostgreSQL, a
    RAISE(ABORT) trigger on SQLite. Returns the words the database's error will hold."""
    if db.postgres:
        db.execute(
            "CREATE TABLE follows (follower BIGINT REFERENCES users (id), "
            "followee BIGINT REFERENCES users (id))"
        )
        db.execute(f"INSERT INTO follows VALUES ({U[1]}, {U[2]})")
        return "foreign key"
    db.execute(
        "CREATE TRIGGER users_stay BEFORE DELETE ON users "
        "BEGIN SELECT RAISE(ABORT, 'users are kept by policy'); END"
    )
    return "users are kept by policy"


def large_case(seed: int = 11) -> tuple[list[tuple], list[tuple[int, str]]]:
    """50,000 tweets and 20,000 result lines: mixed reasons, duplicates, absent IDs, and IDs
    flagged both scrub_geo and deleted."""
    rng = random.Random(seed)
    tweets = []
    for i in range(50_000):
        geo = (rng.uniform(-60, 60), rng.uniform(-180, 180), PLACES[i % 3]) if i % 4 else (None, None, None)
        tweets.append((1_300_000_000_000_000_000 + i * 7919, U[i % 5], f"tweet {i}", *geo))
    reasons = ["deleted"] * 5 + ["suspended"] * 2 + ["protected", "deactivated", "scrub_geo", "scrub_geo"]
    lines: list[tuple[int, str]] = []
    while len(lines) < 20_000:
        record_id = rng.choice(tweets)[0] if rng.random() < 0.9 else 1_400_000_000_000_000_000 + len(lines)
        reason = rng.choice(reasons)
        lines.append((record_id, reason))
        if rng.random() < 0.05:
            lines.append((record_id, reason))  # a duplicate
        elif reason != "scrub_geo" and rng.random() < 0.03:
            lines.append((record_id, "scrub_geo"))  # flagged both ways
    # One reason per ID and change, as flagged_ids wants: the first line's reason wins.
    first: dict[tuple[int, bool], str] = {}
    lines = [(rid, first.setdefault((rid, r == "scrub_geo"), r)) for rid, r in lines[:20_000]]
    return tweets, lines
