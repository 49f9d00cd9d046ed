"""compliance_cycle_dag on a SQLite archive, end to end with ``airflow dags test`` and the
emulator: export both job types, check them one job after the other, apply users then tweets,
report. Every table afterwards is compared, record for record, with the rules of
tests/support/archive_rules.py applied to the seeded rows and the emulator's ground truth."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from tests.support.archive_rules import archive_after

DAGS = Path(__file__).parent / "dags"
TOKEN = "cycle-token-4f1d"
AUDIT_KEY = "cycle-audit-key-77a0"
COLUMNS = {
    "tweets": "id, author_id, edit_root_id, place",
    "users": "id",
    "tweet_media": "tweet_id, url",
    "tweet_places": "tweet_id, place",
    "user_bios": "user_id, bio",
}


def generated(tmp_path: Path, job_type: str, count: int, seed: int) -> tuple[list[int], Path]:
    ids, truth = tmp_path / f"{job_type}.txt", tmp_path / f"{job_type}-truth.csv"
    generate_dataset(count, job_type, ids, truth, seed=seed)
    return list(dict.fromkeys(int(line) for line in ids.read_text().split())), truth


def seed_archive(database: Path, tweet_ids: list[int], user_ids: list[int]) -> dict[str, set[tuple]]:
    """Tweets in chains of three every tenth tweet (one author a chain), one in four with a place;
    a media row per tweet, a place row per placed tweet, a bio per user."""
    tweets = []
    for n, tweet_id in enumerate(tweet_ids):
        first = n - n % 10
        root = tweet_ids[first] if n % 10 < 3 else None
        author = user_ids[(first if root else n) % len(user_ids)]
        tweets.append((tweet_id, author, root, f"p{n}" if n % 4 == 0 else None))
    tables = {
        "tweets": set(tweets),
        "users": {(u,) for u in user_ids},
        "tweet_media": {(t[0], f"m{t[0]}") for t in tweets},
        "tweet_places": {(t[0], t[3]) for t in tweets if t[3]},
        "user_bios": {(u, f"bio{u}") for u in user_ids},
    }
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE TABLE tweets (id INTEGER PRIMARY KEY, author_id INTEGER, edit_root_id INTEGER, "
            "place TEXT)"
        )
        db.execute("CREATE TABLE tweet_media (tweet_id INTEGER, url TEXT)")
        db.execute("CREATE TABLE tweet_places (tweet_id INTEGER, place TEXT)")
        db.execute("CREATE TABLE user_bios (user_id INTEGER, bio TEXT)")
        for table, rows in tables.items():
            width = len(next(iter(rows)))
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", sorted(rows))
    db.close()
    return tables


def contents(database: Path) -> dict[str, set[tuple]]:
    db = sqlite3.connect(database)
    try:
        return {t: set(db.execute(f"SELECT {c} FROM {t}")) for t, c in COLUMNS.items()}
    finally:
        db.close()


def test_the_cycle_leaves_every_table_as_the_rules_say_and_a_second_run_changes_nothing(
    airflow_env, tmp_path
):
    tweet_ids, tweet_truth = generated(tmp_path, "tweets", 3_000, seed=61)
    user_ids, user_truth = generated(tmp_path, "users", 300, seed=62)
    database = tmp_path / "archive.db"
    before = seed_archive(database, tweet_ids, user_ids)
    tweet_results = list(expected_results(map(str, tweet_ids), "tweets", ground_truth=tweet_truth))
    user_results = list(expected_results(map(str, user_ids), "users", ground_truth=user_truth))
    flags = {int(r["id"]): "scrub_geo" if r["reason"] == "scrub_geo" else "delete" for r in tweet_results}
    removed = {int(r["id"]) for r in user_results}
    expected = archive_after(before, tweet_flags=flags, removed_users=removed)
    chained = {t[0] for t in before["tweets"] if t[2] is not None}
    assert removed and flags.keys() & chained  # the run has users to remove and chains to follow

    env = {
        "AIRFLOW_CONN_XC_ARCHIVE": json.dumps({"conn_type": "sqlite", "host": str(database)}),
        "AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY": AUDIT_KEY,
        "XC_CYCLE_WORKSPACE": (tmp_path / "workspace").as_uri(),
    }
    with XComplianceEmulator(
        token=TOKEN,
        data_dir=tmp_path / "emu",
        speed=120,
        processing_seconds=300,
        ground_truth={"tweets": tweet_truth, "users": user_truth},
    ) as emulator:
        connection = {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN}
        env["AIRFLOW_CONN_X_COMPLIANCE_DEFAULT"] = json.dumps(connection)
        first = airflow_env.dags_test("xc_cycle", DAGS, env=env, dag_file=DAGS / "xc_cycle_dags.py")
        first.assert_success()
        after = contents(database)
        second = airflow_env.dags_test("xc_cycle", DAGS, env=env, dag_file=DAGS / "xc_cycle_dags.py")
        second.assert_success()
        jobs = emulator.jobs()

    assert after == expected
    assert contents(database) == after  # the second cycle changed nothing
    # one job per type and cycle, the second waiting for the first (never two active at once)
    assert sorted(j["type"] for j in jobs) == ["tweets", "tweets", "users", "users"]
    assert all(j["status"] == "complete" for j in jobs)

    report = first.xcom("compliance_cycle.report")
    assert report["archive"] == "xc_archive:tweets" and sorted(report["job_types"]) == ["tweets", "users"]
    assert report["jobs"]["users"]["ids"] == len({t[1] for t in before["tweets"]} | set(user_ids))
    assert report["jobs"]["tweets"]["ids"] == len(before["tweets"])
    assert report["jobs"]["tweets"]["result_lines"] == len(tweet_results)
    deleted_tweets = len(before["tweets"]) - len(after["tweets"])
    by_target = {
        t: sum(job["targets"].get(t, {"deleted": 0})["deleted"] for job in report["jobs"].values())
        for t in ("tweets", "tweet_media", "users")
    }
    assert by_target == {
        "tweets": deleted_tweets,
        "tweet_media": len(before["tweet_media"]) - len(after["tweet_media"]),
        "users": len(before["users"]) - len(after["users"]),
    }
    assert set(report["seconds"]) == {
        f"{step}_{t}" for step in ("export", "download", "apply") for t in ("tweets", "users")
    }
    again = second.xcom("compliance_cycle.report")
    assert all(
        not job["targets"] or not any(sum(c.values()) for c in job["targets"].values())
        for job in again["jobs"].values()
    )

    # the audit: a row per record changed over both runs, none naming a record by its plain ID
    db = sqlite3.connect(database)
    audit = db.execute("SELECT record_key, target FROM compliance_audit").fetchall()
    db.close()
    changed = sum(len(before[t] - after[t]) for t in before)
    assert len(audit) == changed
    plain = {str(t[0]) for t in before["tweets"]} | {str(u) for u in user_ids}
    assert not {key for key, _ in audit} & plain
