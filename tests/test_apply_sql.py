"""Applying results to SQL tables, against real databases: SQLite, and PostgreSQL through psycopg 3
and psycopg2 (the COPY paths). The expected tables, report and audit trail are computed here, in
plain Python, from the rules by reason; never read back from the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import psycopg2
import pytest

from airflow_provider_xcompliance.apply.audit import AUDIT_COLUMNS, AuditIdentity
from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.apply.sql import SqlApplier, SqlTarget
from airflow_provider_xcompliance.exceptions import (
    ApplyConfigError,
    ApplyFailed,
    ApplyRefused,
    InvalidResultsError,
)

AUDIT_KEY = b"audit-key-for-tests-3c9f5a0e1b7d"
JOB_ID = "1382391418032259072"
RUN_ID = "manual__2025-06-01T08:00:00+00:00"
GEO = ("geo_lat", "geo_lon", "place_id")
AUDIT = "xc_audit"
TEST_DAGS = Path(__file__).parent / "dags"

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


@pytest.fixture(
    params=[
        "sqlite3",
        pytest.param("psycopg", marks=pytest.mark.integration),
        pytest.param("psycopg2", marks=pytest.mark.integration),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite3":
        database = sqlite_database(tmp_path / "data.sqlite")
    else:
        server = request.getfixturevalue("postgres")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        options = f"-c search_path={schema}"
        driver = psycopg if request.param == "psycopg" else psycopg2
        database = Database(
            request.param,
            "%s",
            lambda: driver.connect(server.uri, options=options),
            pg_admin(server, schema),
            schema,
        )
    try:
        yield database
    finally:
        database.close()


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


# ---------------------------------------------------------------------------- 1, 2: tweets jobs
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


def test_tweets_job_deletes_by_reason_and_scrubs_geo(db: Database, tmp_path: Path) -> None:
    """Every reason but scrub_geo deletes (unknown ones too); scrub_geo NULLs every geo column and
    keeps the rest; delete beats scrub_geo; duplicates and absent IDs change nothing more."""
    db.seed()
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    expected = expect_tweets_job(TWEETS, TWEETS_RESULTS)
    reasons = {"deleted", "suspended", "protected", "bounced", "copyright_takedown", "unknown"}
    assert set(expected.deleted) == reasons
    assert expected.updated == {"scrub_geo": 2}

    conn = db.connect()
    report = applier(db, "tweets", TWEETS_TARGET, conn=conn).run(results)

    assert_report(
        report,
        expected,
        job_type="tweets",
        job_id=JOB_ID,
        target="tweets",
        dry_run=False,
        results_path=str(results),
    )
    assert report["targets"] == {"tweets": {"deleted": 8, "updated": 2}}
    assert_tables(db, {"tweets": expected.tables["tweets"], "users": USERS}, conn)
    assert_audit(db, expected, ids=T + U)


def test_second_run_over_the_same_results_changes_nothing(db: Database, tmp_path: Path) -> None:
    """The same results again: changed=False; the tables and the audit trail as after the first run."""
    db.seed()
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    first = applier(db, "tweets", TWEETS_TARGET).run(results)
    assert first["changed"] is True
    tables_after_first = {t: db.rows(t) for t in ("tweets", "users")}
    audit_after_first = db.select(AUDIT)[1]

    second = applier(db, "tweets", TWEETS_TARGET).run(results)

    assert (second["changed"], second["deleted"], second["updated"], second["targets"]) == (False, {}, {}, {})
    assert second["result_lines"] == len(TWEETS_RESULTS)
    assert_tables(db, tables_after_first)
    assert db.select(AUDIT)[1] == audit_after_first


# ---------------------------------------------------------------------------- 3: users jobs
USERS_RESULTS = [
    (U[0], "suspended"),
    (U[2], "deleted"),
    (U[2], "deleted"),
    (U[5], "deactivated"),
    (U[3], "made_up_reason"),
    (ABSENT, "suspended"),
]


def test_users_job_deletes_the_users_and_all_their_tweets(db: Database, tmp_path: Path) -> None:
    """A users job over a tweets table (author_id_column) and a users table: each flagged user
    goes, with every tweet they wrote; the audit keys the tweets and the users by their own IDs."""
    db.seed()
    results = write_results(tmp_path / "users.jsonl", USERS_RESULTS)
    expected = expect_users_job(TWEETS, USERS, USERS_RESULTS)
    assert expected.targets["tweets"]["deleted"] >= 10 and expected.targets["users"]["deleted"] == 4

    conn = db.connect()
    report = applier(db, "users", USERS_TARGET, conn=conn).run(results)

    assert_report(report, expected, job_type="users", target="tweets")
    assert_tables(db, expected.tables, conn)
    assert_audit(db, expected, ids=T + U)
    assert {row[1] for row in db.select(AUDIT)[1]} == {"tweet", "user"}


def test_users_job_on_the_users_table_itself(db: Database, tmp_path: Path) -> None:
    """Without author_id_column, ``table`` holds the users: they are deleted, tweets untouched."""
    db.seed()
    results = write_results(tmp_path / "users.jsonl", USERS_RESULTS)
    expected = expect_users_job(None, USERS, USERS_RESULTS)

    report = applier(db, "users", SqlTarget("users", audit_table=AUDIT)).run(results)

    assert_report(report, expected, target="users")
    assert report["targets"] == {"users": {"deleted": 4, "updated": 0}}
    assert_tables(db, {"users": expected.tables["users"], "tweets": TWEETS})
    assert_audit(db, expected, ids=T + U)


# ---------------------------------------------------------------------------- 4: overrides
OVERRIDE_RESULTS = TWEETS_RESULTS + [(T[11], "protected"), (T[12], "protected"), (ABSENT + 2, "protected")]


@pytest.mark.parametrize(
    "overrides",
    [
        {"protected": "keep"},
        {"protected": "keep", "scrub_geo": "keep", "bounced": "scrub_geo"},
    ],
    ids=["keep-protected", "three-overrides"],
)
def test_overrides_change_what_a_reason_does(db: Database, tmp_path: Path, overrides: dict) -> None:
    """{"protected": "keep"} keeps protected tweets, and report["kept"] counts those result lines."""
    db.seed()
    results = write_results(tmp_path / "results.jsonl", OVERRIDE_RESULTS)
    expected = expect_tweets_job(TWEETS, OVERRIDE_RESULTS, overrides)
    assert expected.kept["protected"] == 4
    assert {T[2], T[11], T[12]} <= {row[0] for row in expected.tables["tweets"]}

    report = applier(db, "tweets", TWEETS_TARGET, overrides=overrides).run(results)

    assert_report(report, expected)
    assert_tables(db, expected.tables)
    assert_audit(db, expected, ids=T + U)


def test_users_job_override_keeps_protected_users(db: Database, tmp_path: Path) -> None:
    """Overrides hold for users jobs too: a protected user and their tweets stay."""
    db.seed()
    lines = USERS_RESULTS + [(U[4], "protected")]
    results = write_results(tmp_path / "users.jsonl", lines)
    expected = expect_users_job(TWEETS, USERS, lines, {"protected": "keep"})
    assert expected.kept == {"protected": 1} and (U[4], USERS[4][1]) in expected.tables["users"]

    report = applier(db, "users", USERS_TARGET, overrides={"protected": "keep"}).run(results)

    assert_report(report, expected)
    assert_tables(db, expected.tables)


# ---------------------------------------------------------------------------- 5: audit identities
@pytest.mark.parametrize("mode", ["plain", "none"])
def test_audit_ids_plain_or_none(db: Database, tmp_path: Path, mode: str) -> None:
    """audit_ids="plain" stores each record's ID, "none" stores NULL; one row per change either way."""
    db.seed()
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    expected = expect_tweets_job(TWEETS, TWEETS_RESULTS)

    applier(db, "tweets", TWEETS_TARGET, audit=mode).run(results)

    assert_audit(db, expected, mode, ids=T + U)
    keys = {row[0] for row in db.select(AUDIT)[1]}
    assert keys == ({None} if mode == "none" else {str(rid) for rid, *_ in expected.audit})


def test_no_audit_table_without_audit_table(db: Database, tmp_path: Path) -> None:
    """Without audit_table the data changes and no audit table appears."""
    db.seed()
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    applier(db, "tweets", SqlTarget("tweets", geo_columns=GEO), audit=None).run(results)
    assert_tables(db, expect_tweets_job(TWEETS, TWEETS_RESULTS).tables)
    assert not db.exists(AUDIT)


def test_the_plain_id_check_finds_ids_inside_text() -> None:
    """The audit check of assert_audit must be able to fail: it finds an ID inside longer text."""
    assert list(ids_within("ab783214cd", {"783214", "95731075"}, [6, 8])) == ["783214"]
    assert list(ids_within(f"x{T[0]}1", {str(T[0])}, [19])) == [str(T[0])]
    assert list(ids_within("78321 4", {"783214"}, [6])) == []


# ---------------------------------------------------------------------------- 6, 7: guard and dry run
@pytest.mark.parametrize("job_type", ["tweets", "users"])
def test_max_delete_fraction_refuses_and_changes_nothing(db: Database, tmp_path: Path, job_type: str) -> None:
    """Just below the fraction the results would delete: ApplyRefused, nothing changed, no audit
    table; at exactly that fraction the run goes ahead."""
    db.seed()
    if job_type == "tweets":
        lines, target = TWEETS_RESULTS, TWEETS_TARGET
        expected = expect_tweets_job(TWEETS, lines)
    else:
        lines, target = USERS_RESULTS, USERS_TARGET
        expected = expect_users_job(TWEETS, USERS, lines)
    results = write_results(tmp_path / "results.jsonl", lines)
    fractions = {
        "tweets": expected.fraction_deleted("tweets", len(TWEETS)),
        "users": expected.fraction_deleted("users", len(USERS)),
    }
    worst = max(fractions, key=fractions.get)

    conn = db.connect()
    with pytest.raises(ApplyRefused) as refused:
        applier(db, job_type, target, conn=conn, max_delete_fraction=fractions[worst] - 0.001).run(results)

    deleting = expected.targets[worst]["deleted"]
    total = len(TWEETS) if worst == "tweets" else len(USERS)
    assert f"would delete {deleting} of {total} records in {worst}" in str(refused.value)
    assert_tables(db, {"tweets": TWEETS, "users": USERS}, conn)
    assert not db.exists(AUDIT)

    report = applier(db, job_type, target, max_delete_fraction=fractions[worst]).run(results)
    assert_report(report, expected)
    assert_tables(db, {**{"tweets": TWEETS, "users": USERS}, **expected.tables})


@pytest.mark.parametrize("job_type", ["tweets", "users"])
def test_dry_run_reports_and_changes_nothing(db: Database, tmp_path: Path, job_type: str) -> None:
    """dry_run: the report counts what would change; the tables and the audit stay as they were."""
    db.seed()
    if job_type == "tweets":
        lines, target, expected = TWEETS_RESULTS, TWEETS_TARGET, expect_tweets_job(TWEETS, TWEETS_RESULTS)
    else:
        lines, target, expected = USERS_RESULTS, USERS_TARGET, expect_users_job(TWEETS, USERS, USERS_RESULTS)
    results = write_results(tmp_path / "results.jsonl", lines)

    conn = db.connect()
    report = applier(db, job_type, target, conn=conn, dry_run=True).run(results)

    assert_report(report, expected, dry_run=True)
    assert_tables(db, {"tweets": TWEETS, "users": USERS}, conn)
    assert not db.exists(AUDIT)


# ---------------------------------------------------------------------------- 8, 9, 10: failures
def test_a_broken_line_deep_in_the_results_changes_nothing(db: Database, tmp_path: Path) -> None:
    """A non-JSON line after 50 batches' worth of good lines: InvalidResultsError with the file
    and the line number; nothing changed, no audit table."""
    db.seed()
    good = [(rid, "scrub_geo" if rid in (T[3], T[10]) else "deleted") for rid in (T * 209)[:5_000]]
    results = write_results(tmp_path / "results.jsonl", [*good, '{"id":"12","reason":', *good[:100]])

    conn = db.connect()
    with pytest.raises(InvalidResultsError) as broken:
        applier(db, "tweets", TWEETS_TARGET, conn=conn, batch_size=100).run(results)

    assert str(results) in str(broken.value) and "line 5001:" in str(broken.value)
    assert_tables(db, {"tweets": TWEETS, "users": USERS}, conn)
    assert not db.exists(AUDIT)


def test_a_bad_id_is_refused_with_its_line(db: Database, tmp_path: Path) -> None:
    """An ID that is not decimal digits is not a tweet ID: refused, with its line, nothing changed."""
    db.seed()
    lines = [(T[0], "deleted"), '{"id":"12a","reason":"deleted"}']
    results = write_results(tmp_path / "results.jsonl", lines)
    with pytest.raises(InvalidResultsError, match="line 2: id '12a' is not a tweet or user ID"):
        applier(db, "tweets", TWEETS_TARGET).run(results)
    assert_tables(db, {"tweets": TWEETS})


@pytest.mark.parametrize(
    "job_type, target, named",
    [
        ("tweets", SqlTarget("tweet", geo_columns=GEO, audit_table=AUDIT), "Table tweet cannot be read"),
        (
            "tweets",
            SqlTarget("tweets", id_column="tweet_id", audit_table=AUDIT),
            "Table tweets has no column 'tweet_id'",
        ),
        (
            "tweets",
            SqlTarget("tweets", geo_columns=("geo_lat", "geo_lon", "geo_alt"), audit_table=AUDIT),
            "Table tweets has no column 'geo_alt'",
        ),
        (
            "users",
            SqlTarget("tweets", author_id_column="user_id", users_table="users", audit_table=AUDIT),
            "Table tweets has no column 'user_id'",
        ),
        (
            "users",
            SqlTarget("tweets", author_id_column="author_id", users_table="members", audit_table=AUDIT),
            "Table members cannot be read",
        ),
        (
            "users",
            SqlTarget(
                "tweets",
                author_id_column="author_id",
                users_table="users",
                users_id_column="user_id",
                audit_table=AUDIT,
            ),
            "Table users has no column 'user_id'",
        ),
    ],
    ids=[
        "missing-table",
        "missing-column",
        "missing-geo-column",
        "missing-author-column",
        "missing-users-table",
        "missing-users-column",
    ],
)
def test_configuration_errors_name_what_is_missing(
    db: Database, tmp_path: Path, job_type: str, target: SqlTarget, named: str
) -> None:
    """A missing table or column: ApplyConfigError naming it, before anything changed."""
    db.seed()
    lines = TWEETS_RESULTS if job_type == "tweets" else USERS_RESULTS
    results = write_results(tmp_path / "results.jsonl", lines)
    conn = db.connect()
    with pytest.raises(ApplyConfigError, match=named):
        applier(db, job_type, target, conn=conn).run(results)
    assert_tables(db, {"tweets": TWEETS, "users": USERS}, conn)
    assert not db.exists(AUDIT)


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


def test_a_database_error_midway_rolls_everything_back(db: Database, tmp_path: Path) -> None:
    """The users' tweets are deleted first, then the users' DELETE fails: ApplyFailed, the
    tweets are back, no audit table."""
    db.seed()
    words = break_user_deletes(db)
    results = write_results(tmp_path / "users.jsonl", USERS_RESULTS)
    assert expect_users_job(TWEETS, USERS, USERS_RESULTS).targets["tweets"]["deleted"] > 0

    conn = db.connect()
    with pytest.raises(ApplyFailed) as failed:
        applier(db, "users", USERS_TARGET, conn=conn).run(results)

    message = str(failed.value)
    assert f"Applying {results} to tweets failed; nothing was changed" in message and words in message
    assert_tables(db, {"tweets": TWEETS, "users": USERS}, conn)
    assert not db.exists(AUDIT)


# ---------------------------------------------------------------------------- 11: many batches
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


def test_twenty_thousand_results_in_batches_of_a_thousand(db: Database, tmp_path: Path) -> None:
    """COPY (PostgreSQL) or batched inserts (SQLite), 1,000 at a time: every line arrives, the
    tables, counts and audit rows are exactly the expected ones."""
    tweets, lines = large_case()
    db.execute(TWEETS_DDL.format("tweets"))
    db.insert("tweets", tweets)
    results = write_results(tmp_path / "results.jsonl", lines)
    expected = expect_tweets_job(tweets, lines)
    assert expected.targets["tweets"]["deleted"] > 10_000 and expected.targets["tweets"]["updated"] > 1_000

    report = applier(db, "tweets", TWEETS_TARGET, batch_size=1_000).run(results)

    assert_report(report, expected)
    assert db.rows("tweets") == sorted(expected.tables["tweets"])
    assert_audit(db, expected)


# ---------------------------------------------------------------------------- 12: the operator in a DAG run
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
