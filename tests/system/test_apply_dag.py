"""Step 5 end to end, from public operators only: tweets and users jobs against the emulator, and
their results applied to SQLite, PostgreSQL and a JSON Lines data set in S3 (SeaweedFS).

The outcome is compared record for record with what the ground truth and the rules say; the
audit trails hold no plain ID; a second run over the same results changes nothing.
"""

from __future__ import annotations

import csv
import hmac
import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from airflow_provider_xcompliance.emulator import XComplianceEmulator, generate_dataset
from airflow_provider_xcompliance.emulator.rules import created_at_seconds

TEST_DAGS = Path(__file__).parent / "dags"
TOKEN = "apply-everywhere-token"
AUDIT_KEY = "apply-everywhere-audit-key"
DAG_ID = "xc_apply_everywhere"
APPLY_TASKS = (
    "tweets_to_xc_sqlite",
    "users_to_xc_sqlite",
    "tweets_to_xc_postgres",
    "users_to_xc_postgres",
    "tweets_to_s3_jsonl",
    "users_to_s3_jsonl",
)
SCHEMA = (
    "CREATE TABLE tweets (id BIGINT PRIMARY KEY, author_id BIGINT, text TEXT, geo_lat REAL, geo_lon REAL)",
    "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT)",
)


class World:
    """The stored data before the run, and what the ground truth says must remain after it."""

    def __init__(self, data: Path, truth: dict[str, Path]) -> None:
        tweet_ids = list(
            dict.fromkeys(int(line) for line in (data / "ids" / "tweets.txt").read_text().split())
        )
        self.user_ids = list(
            dict.fromkeys(int(line) for line in (data / "ids" / "users.txt").read_text().split())
        )
        self.tweets = [
            (
                tweet,
                self.user_ids[n % len(self.user_ids)],
                f"tweet {n}",
                *((52.0 + n % 5, 13.0) if n % 3 == 0 else (None, None)),
            )
            for n, tweet in enumerate(tweet_ids)
        ]
        reasons = {kind: _truth(path) for kind, path in truth.items()}
        deleted_tweets = {i for i, reason in reasons["tweets"].items() if reason != "scrub_geo"}
        self.scrubbed = set(reasons["tweets"]) - deleted_tweets
        self.deleted_users = set(reasons["users"])
        self.expected_tweets = sorted(
            (t[0], t[1], t[2], *((None, None) if t[0] in self.scrubbed else t[3:]))
            for t in self.tweets
            if t[0] not in deleted_tweets and t[1] not in self.deleted_users
        )
        self.expected_users = sorted((u, f"user {u}") for u in self.user_ids if u not in self.deleted_users)
        self.all_ids = {str(i) for i in tweet_ids} | {str(u) for u in self.user_ids}

    def changed_records(self) -> int:
        """Audit rows one target must hold: each deleted tweet and user, and each tweet whose geo
        data the tweets job removed (the users job, which runs after, may then delete it too)."""
        deleted = len(self.tweets) - len(self.expected_tweets)
        scrubbed = sum(1 for t in self.tweets if t[0] in self.scrubbed and t[3] is not None)
        return deleted + scrubbed + len(self.user_ids) - len(self.expected_users)

    def jsonl_line(self, tweet: tuple) -> bytes:
        record = {
            "id": str(tweet[0]),
            "author_id": str(tweet[1]),
            "text": tweet[2],
            "geo": {"lat": tweet[3], "lon": tweet[4]} if tweet[3] is not None else None,
        }
        return json.dumps(
            record, separators=(", ", ": ")
        ).encode()  # not compact: untouched lines must stay so

    def partitions(self) -> dict[str, list[tuple]]:
        parts: dict[str, list[tuple]] = {}
        for tweet in self.tweets:
            month = datetime.fromtimestamp(created_at_seconds(tweet[0]), UTC).strftime("%Y-%m")
            parts.setdefault(f"month={month}/part-0.jsonl", []).append(tweet)
        return parts


def _truth(path: Path) -> dict[int, str]:
    rows = [row for row in csv.reader(line for line in path.open() if not line.startswith("#"))][1:]
    return {int(record_id): reason for record_id, reason in rows}


def _seed(connection, placeholder: str, world: World) -> None:
    cur = connection.cursor()
    for statement in SCHEMA:
        cur.execute(statement)
    cur.executemany(f"INSERT INTO tweets VALUES ({', '.join([placeholder] * 5)})", world.tweets)
    cur.executemany(
        f"INSERT INTO users VALUES ({placeholder}, {placeholder})", [(u, f"user {u}") for u in world.user_ids]
    )
    connection.commit()


def _read(connection) -> tuple[list, list, list]:
    cur = connection.cursor()
    tweets = sorted(
        tuple(row) for row in cur.execute("SELECT id, author_id, text, geo_lat, geo_lon FROM tweets")
    )
    users = sorted(tuple(row) for row in cur.execute("SELECT id, name FROM users"))
    audit = [
        tuple(row) for row in cur.execute("SELECT record_key, record_type, reason, change FROM xc_audit")
    ]
    return tweets, users, audit


@pytest.fixture
def databases(tmp_path, postgres):
    """A SQLite file and a fresh PostgreSQL database, as Airflow connections ``xc_sqlite``/``xc_postgres``."""
    name = f"xc_everywhere_{uuid.uuid4().hex[:8]}"
    admin_uri = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{postgres.database}"
    with psycopg.connect(admin_uri, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    lite = sqlite3.connect(tmp_path / "app.sqlite")
    pg = psycopg.connect(f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{name}")
    env = {
        "AIRFLOW_CONN_XC_SQLITE": "sqlite://" + quote(str(tmp_path / "app.sqlite"), safe=""),
        "AIRFLOW_CONN_XC_POSTGRES": f"postgres://{postgres.user}@{postgres.host}:{postgres.port}/{name}",
    }
    yield lite, pg, env
    lite.close()
    pg.close()
    with psycopg.connect(admin_uri, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_public_operators_apply_both_jobs_to_sqlite_postgres_and_s3(
    airflow_env, tmp_path, databases, seaweed, s3_bucket
):
    data = tmp_path / "data"
    (data / "ids").mkdir(parents=True)
    truth = {kind: tmp_path / f"{kind}-truth.csv" for kind in ("tweets", "users")}
    generate_dataset(
        12_000, "tweets", data / "ids" / "tweets.txt", truth["tweets"], seed=21, flagged_fraction=0.08
    )
    generate_dataset(
        2_000, "users", data / "ids" / "users.txt", truth["users"], seed=22, flagged_fraction=0.02
    )
    world = World(data, truth)

    lite, pg, env = databases
    _seed(lite, "?", world)
    _seed(pg, "%s", world)
    s3 = seaweed.client()
    originals = {}
    for key, tweets in world.partitions().items():
        lines = [world.jsonl_line(tweet) for tweet in tweets]
        originals.update({tweet[0]: line for tweet, line in zip(tweets, lines, strict=True)})
        s3.put_object(Bucket=s3_bucket, Key=f"dataset/{key}", Body=b"\n".join(lines) + b"\n")
    etags = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="dataset/")["Contents"]}

    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=60, processing_seconds=120, ground_truth=truth
    ) as emulator:
        env = {
            **env,
            **seaweed.connection_env("xc_s3"),
            "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
                {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN}
            ),
            "AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY": AUDIT_KEY,
            "XC_TEST_DATA_URL": data.as_uri(),
            "XC_TEST_DATASET_URL": f"s3://xc_s3@{s3_bucket}/dataset",
            "XC_TEST_AUDIT_URL": f"s3://xc_s3@{s3_bucket}/audit",
        }
        first = airflow_env.dags_test(
            DAG_ID, TEST_DAGS, env=env, dag_file=TEST_DAGS / "xc_apply_everywhere.py", timeout=420
        ).assert_success()
        reports = {task: first.xcom(task) for task in APPLY_TASKS}
        assert all(report["changed"] for report in reports.values())
        assert reports["tweets_to_xc_sqlite"]["updated"] and reports["users_to_xc_postgres"]["deleted"]

        # The databases hold exactly what the rules leave of the seeded data.
        for connection in (lite, pg):
            tweets, users, audit = _read(connection)
            assert tweets == world.expected_tweets
            assert users == world.expected_users
            assert len(audit) == world.changed_records()
            assert not {row[0] for row in audit} & world.all_ids  # no plain ID in the trail
            expected_keys = {
                hmac.new(AUDIT_KEY.encode(), str(i).encode(), "sha256").hexdigest()
                for i in {t[0] for t in world.tweets} - {t[0] for t in world.expected_tweets}
            }
            assert expected_keys <= {row[0] for row in audit if row[3] == "delete"}

        # The data set: deleted lines gone, scrubbed lines without geo, every other line byte-identical.
        remaining = {}
        for obj in s3.list_objects_v2(Bucket=s3_bucket, Prefix="dataset/")["Contents"]:
            body = s3.get_object(Bucket=s3_bucket, Key=obj["Key"])["Body"].read()
            for line in body.splitlines():
                remaining[int(json.loads(line)["id"])] = line
        assert sorted(remaining) == [t[0] for t in world.expected_tweets]
        for tweet_id, line in remaining.items():
            if tweet_id in world.scrubbed and json.loads(originals[tweet_id])["geo"] is not None:
                assert json.loads(line) == {**json.loads(originals[tweet_id]), "geo": None}
            else:
                assert line == originals[tweet_id]
        after = {
            o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="dataset/")["Contents"]
        }
        assert set(after) == set(etags)
        rewritten = {
            key.split(f"{s3_bucket}/", 1)[1]
            for task in ("tweets_to_s3_jsonl", "users_to_s3_jsonl")
            for key in reports[task]["targets"]
        }
        assert {key for key in etags if after[key] != etags[key]} == rewritten  # the others were not touched
        audit_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="audit/")["Contents"]]
        audit_text = b"".join(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read() for key in audit_keys)
        audit_rows = [json.loads(line) for line in audit_text.splitlines()]
        assert len(audit_rows) == world.changed_records() - (len(world.user_ids) - len(world.expected_users))
        assert not {row["record_key"] for row in audit_rows} & world.all_ids

        # A second run over the same results (new jobs, same answers) changes nothing, and says so.
        second = airflow_env.dags_test(
            DAG_ID, TEST_DAGS, env=env, dag_file=TEST_DAGS / "xc_apply_everywhere.py", timeout=420
        ).assert_success()
    assert not any(second.xcom(task)["changed"] for task in APPLY_TASKS)
    for connection in (lite, pg):
        tweets, users, audit = _read(connection)
        assert (tweets, users, len(audit)) == (
            world.expected_tweets,
            world.expected_users,
            world.changed_records(),
        )
    assert {
        o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="dataset/")["Contents"]
    } == after
