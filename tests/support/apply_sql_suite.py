"""The SQL applier's suite: what it must do on every database it supports. The tests are run by the
modules that import them, each with its own ``db`` fixture (a fresh database per test):
tests/unit/test_apply_sql.py on SQLite files, tests/integration/test_apply_sql.py on PostgreSQL
through psycopg 3 and psycopg2 (the COPY paths). The expected tables, report and audit trail are
computed in plain Python, from the rules by reason (tests/support/apply_sql.py); never read back
from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_xcompliance.apply.sql_tables import SqlTarget
from airflow_provider_xcompliance.exceptions import (
    ApplyConfigError,
    ApplyFailed,
    ApplyRefused,
    InvalidResultsError,
)
from tests.support.apply_sql import (
    AUDIT,
    GEO,
    JOB_ID,
    OVERRIDE_RESULTS,
    TWEETS,
    TWEETS_DDL,
    TWEETS_RESULTS,
    TWEETS_TARGET,
    USERS,
    USERS_RESULTS,
    USERS_TARGET,
    Database,
    T,
    U,
    applier,
    assert_audit,
    assert_report,
    assert_tables,
    break_user_deletes,
    expect_tweets_job,
    expect_users_job,
    large_case,
    write_results,
)

__all__ = [  # the tests: what a module that runs the suite imports
    "test_tweets_job_deletes_by_reason_and_scrubs_geo",
    "test_second_run_over_the_same_results_changes_nothing",
    "test_users_job_deletes_the_users_and_all_their_tweets",
    "test_users_job_on_the_users_table_itself",
    "test_overrides_change_what_a_reason_does",
    "test_users_job_override_keeps_protected_users",
    "test_audit_ids_plain_or_none",
    "test_no_audit_table_without_audit_table",
    "test_max_delete_fraction_refuses_and_changes_nothing",
    "test_dry_run_reports_and_changes_nothing",
    "test_a_broken_line_deep_in_the_results_changes_nothing",
    "test_a_bad_id_is_refused_with_its_line",
    "test_configuration_errors_name_what_is_missing",
    "test_a_database_error_midway_rolls_everything_back",
    "test_twenty_thousand_results_in_batches_of_a_thousand",
]


# ---------------------------------------------------------------------------- 1, 2: tweets jobs
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
