"""The example DAGs: they import cleanly, and the pipeline runs end to end against the emulator."""

from __future__ import annotations

import csv
import hmac
import json
import random
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from airflow_provider_xcompliance.emulator.rules import REASONS, TWEPOCH_MS, created_at_seconds

EXAMPLE_DAGS = Path(__file__).parents[2] / "example_dags"
TOKEN = "example-dags-token-93be11"

DAGBAG = """
import json
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag
bag = DagBag({folder!r})
print("DAGBAG " + json.dumps({{
    "errors": {{path: str(error) for path, error in bag.import_errors.items()}},
    "dags": {{dag_id: {{"params": sorted(dag.params.keys()), "tasks": sorted(dag.task_ids)}}
             for dag_id, dag in bag.dags.items()}},
}}))
"""


def test_example_dags_import_cleanly(airflow_env):
    result = airflow_env.python(DAGBAG.format(folder=str(EXAMPLE_DAGS)))
    assert result.returncode == 0, result.stdout[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("DAGBAG "))
    bag = json.loads(line.removeprefix("DAGBAG "))
    assert bag["errors"] == {}
    assert set(bag["dags"]) == {
        "x_compliance_tweets",
        "x_compliance_users",
        "x_compliance_pipeline",
        "x_compliance_consumer",
        "x_compliance_tweets_apply",
        "x_compliance_operators",
        "x_compliance_operators_two_step",
        "x_compliance_hook",
        "x_compliance_export",
        "x_compliance_cycle",
    }
    for dag_id in ("x_compliance_tweets", "x_compliance_users"):
        assert bag["dags"][dag_id]["params"] == ["ids_path", "job_type", "results_path"]
        assert bag["dags"][dag_id]["tasks"] == ["compliance.download", "compliance.submit", "compliance.wait"]
    applying = bag["dags"]["x_compliance_tweets_apply"]
    assert applying["params"] == ["dry_run", "ids_path", "results_path", "sql_conn_id", "table"]
    assert applying["tasks"] == ["apply", "compliance.download", "compliance.submit", "compliance.wait"]
    assert "users_compliance.wait" in bag["dags"]["x_compliance_pipeline"]["tasks"]
    assert "tweets_compliance.wait" in bag["dags"]["x_compliance_pipeline"]["tasks"]


def test_tweets_example_survives_every_recoverable_fault(airflow_env, tmp_path):
    """The shipped DAG, on its defaults (resumable upload), against the emulator's "all" fault
    profile: 408/429/503s and drops on signed URLs, partial and lost resumable answers, 503s on
    job lookups, NoSuchKey after completion. The results are still exactly the ground truth's."""
    data = tmp_path / "data"
    (data / "ids").mkdir(parents=True)
    truth = tmp_path / "truth.csv"
    generate_dataset(
        400_000, "tweets", data / "ids" / "tweets.txt", truth, seed=13
    )  # 8 MB: one chunk and a bit
    # A 10 s job polled every second: enough job lookups for the profile's every-fourth 503.
    with XComplianceEmulator(
        token=TOKEN,
        data_dir=tmp_path / "emu",
        speed=60,
        processing_seconds=600,
        ground_truth={"tweets": truth},
        fault_profile="all",
    ) as emulator:
        connection = {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN}
        run = airflow_env.dags_test(
            "x_compliance_tweets",
            EXAMPLE_DAGS,
            env={
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(connection),
                "X_COMPLIANCE_DATA_URL": data.as_uri(),
                "X_COMPLIANCE_POLL_INTERVAL": "1",
            },
        ).assert_success()
        failures = Counter(status for _, _, status in emulator.request_log if status >= 400 or status == 0)
    assert failures[408] and failures[429] and failures[503] and failures[404]  # the faults did happen
    summary = run.xcom("compliance.download")
    expected = list(
        expected_results((data / "ids" / "tweets.txt").read_text().split(), "tweets", ground_truth=truth)
    )
    landed = Path(summary["path"].removeprefix("file://")).read_text().splitlines()
    assert [json.loads(line) for line in landed] == expected and summary["lines"] == len(expected)


def test_pipeline_runs_two_jobs_of_different_types(airflow_env, tmp_path):
    data = tmp_path / "data"
    (data / "ids").mkdir(parents=True)
    truth = {kind: tmp_path / f"{kind}-truth.csv" for kind in ("tweets", "users")}
    generate_dataset(20_000, "tweets", data / "ids" / "tweets.txt", truth["tweets"], seed=11)
    generate_dataset(5_000, "users", data / "ids" / "users.txt", truth["users"], seed=12)
    connection = {"conn_type": "x_compliance", "host": "", "password": TOKEN}
    # One active job for the whole app: the second submit must wait (deferred) for the first job.
    with XComplianceEmulator(
        token=TOKEN,
        data_dir=tmp_path / "emu",
        speed=60,
        processing_seconds=300,
        one_active_job="global",
        ground_truth=truth,
    ) as emulator:
        connection["host"] = emulator.base_url
        run = airflow_env.dags_test(
            "x_compliance_pipeline",
            EXAMPLE_DAGS,
            env={
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(connection),
                "X_COMPLIANCE_DATA_URL": data.as_uri(),
            },
        ).assert_success()
        jobs = emulator.jobs()

    assert sorted(job["type"] for job in jobs) == ["tweets", "users"]
    assert all(job["status"] == "complete" for job in jobs)
    assert run.was_deferred("tweets_compliance.submit") or run.was_deferred("users_compliance.submit")

    expected = {
        kind: list(
            expected_results(
                (data / "ids" / f"{kind}.txt").read_text().split(), kind, ground_truth=truth[kind]
            )
        )
        for kind in ("tweets", "users")
    }
    for kind in ("tweets", "users"):
        summary = run.xcom(f"{kind}_compliance.download")
        assert summary["by_reason"] == dict(sorted(Counter(e["reason"] for e in expected[kind]).items()))
        landed = Path(summary["path"].removeprefix("file://")).read_text().splitlines()
        assert [json.loads(line) for line in landed] == expected[kind]
    plan = run.xcom("apply")
    deleted = {e["id"] for e in expected["tweets"] if e["reason"] != "scrub_geo"}
    assert plan["tweets_to_delete"] == len(deleted)
    assert plan["tweets_to_scrub_geo"] == len(
        {e["id"] for e in expected["tweets"] if e["reason"] == "scrub_geo"} - deleted
    )
    assert plan["users_by_reason"] == run.xcom("users_compliance.download")["by_reason"]


OPERATORS_DAG_FILE = EXAMPLE_DAGS / "x_compliance_operators.py"
OPERATORS_AUDIT_KEY = "example-dags-audit-key-5c2e"


def _tweets_over_days(ids_path: Path, truth_path: Path, count: int, days: int, seed: int) -> None:
    """``count`` tweet IDs created over ``days`` days from 2024-06-01 (UTC), so that a day holds
    tens of tweets as in a real archive, and a ground truth that flags one in 40, each tweets
    reason in turn, the first row written twice (X sometimes reports an ID twice)."""
    rng = random.Random(seed)
    start_ms = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
    tweet_ids = [
        ((start_ms + rng.randrange(days * 86_400_000) - TWEPOCH_MS) << 22) | rng.randrange(1 << 22)
        for _ in range(count)
    ]
    ids_path.write_text("".join(f"{tweet_id}\n" for tweet_id in tweet_ids))
    reasons = REASONS["tweets"]
    rows = [f"{tweet_id},{reasons[n % len(reasons)]}\n" for n, tweet_id in enumerate(tweet_ids[::40])]
    truth_path.write_text("# ground truth\nid,reason\n" + "".join(rows) + rows[0])


def _truth_reasons(path: Path) -> dict[int, str]:
    """The ground truth's reason for each flagged ID (a row written twice counts once)."""
    rows = csv.reader(line for line in path.open() if not line.startswith("#"))
    next(rows)  # id,reason
    return {int(row[0]): row[1] for row in rows}


def _write_archive(folder: Path, tweet_ids: list[int]) -> dict[int, tuple[str, bytes]]:
    """A JSON Lines archive of the tweets, one object per day of creation, every third tweet
    with geo data, written not compactly (untouched lines must stay so); ``{id: (object, line)}``."""
    records: dict[int, tuple[str, bytes]] = {}
    for n, tweet_id in enumerate(tweet_ids):
        day = datetime.fromtimestamp(created_at_seconds(tweet_id), UTC).strftime("%Y-%m-%d")
        record = {
            "id": str(tweet_id),
            "author_id": str(1000 + n % 97),
            "text": f"tweet {n}",
            "geo": {"lat": 52.52, "lon": 13.4} if n % 3 == 0 else None,
        }
        records[tweet_id] = (
            f"date={day}/part-0.jsonl",
            json.dumps(record, separators=(", ", ": ")).encode(),
        )
    objects: dict[str, list[bytes]] = {}
    for key, line in records.values():
        objects.setdefault(key, []).append(line)
    for key, lines in objects.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(b"\n".join(lines) + b"\n")
    return records


def _read_archive(folder: Path) -> dict[int, tuple[str, bytes]]:
    return {
        int(json.loads(line)["id"]): (path.relative_to(folder).as_posix(), line)
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    }


def _local(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def _by_reason(lines: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(line["reason"] for line in lines).items()))


def test_operator_examples_run_one_by_one(airflow_env, tmp_path):
    """The operators guide's DAGs (x_compliance_operators.py), each operator its own task: a
    tweets job submitted, waited for (deferred), downloaded and applied to a JSON Lines archive;
    a users job created and uploaded in two tasks, poked for and landed as one object; a tweets
    job done in one task with the hook. Everything is checked against the ground truth."""
    data = tmp_path / "data"
    (data / "ids").mkdir(parents=True)
    ids = {kind: data / "ids" / f"{kind}.txt" for kind in ("tweets", "users")}
    truth = {kind: tmp_path / f"{kind}-truth.csv" for kind in ("tweets", "users")}
    _tweets_over_days(ids["tweets"], truth["tweets"], 3_000, days=60, seed=41)
    generate_dataset(3_000, "users", ids["users"], truth["users"], seed=42)
    expected = {
        kind: list(expected_results(path.read_text().split(), kind, ground_truth=truth[kind]))
        for kind, path in ids.items()
    }
    tweet_ids = list(dict.fromkeys(int(line) for line in ids["tweets"].read_text().split()))
    archive = data / "archive" / "tweets"
    before = _write_archive(archive, tweet_ids)
    mtimes = {path: path.stat().st_mtime_ns for path in archive.rglob("*.jsonl")}

    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=60, processing_seconds=300, ground_truth=truth
    ) as emulator:
        connection = {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN}
        env = {
            "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(connection),
            "AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY": OPERATORS_AUDIT_KEY,
            "X_COMPLIANCE_DATA_URL": data.as_uri(),
            "X_COMPLIANCE_POLL_INTERVAL": "1",
        }
        runs = {
            dag_id: airflow_env.dags_test(
                dag_id, EXAMPLE_DAGS, env=env, dag_file=OPERATORS_DAG_FILE
            ).assert_success()
            for dag_id in ("x_compliance_operators", "x_compliance_operators_two_step", "x_compliance_hook")
        }
        jobs = emulator.jobs()
    assert sorted(job["type"] for job in jobs) == ["tweets", "tweets", "users"]
    assert all(job["status"] == "complete" for job in jobs)

    # submit → wait (deferred) → download: the results are the ground truth's, line for line,
    # in the folder the templated results_path names (the run's ds).
    run = runs["x_compliance_operators"]
    day = str(run.dag_run()["logical_date"])[:10]
    assert run.task_states() == dict.fromkeys(("apply_to_archive", "download", "submit", "wait"), "success")
    assert run.was_deferred("wait")
    job_id = run.xcom("submit")
    assert run.xcom("submit", key="job")["id"] == job_id and run.xcom("wait")["status"] == "complete"
    upload = run.xcom("submit", key="upload")
    assert (upload["job_id"], upload["ids"], upload["resumable"], upload["already_uploaded"]) == (
        job_id,
        3_000,
        True,
        False,
    )
    summary = run.xcom("download")
    assert _local(summary["path"]) == data / "results" / "operators" / day / f"tweets-{job_id}.jsonl"
    assert [json.loads(line) for line in _local(summary["path"]).read_text().splitlines()] == expected[
        "tweets"
    ]
    assert summary["lines"] == len(expected["tweets"]) and summary["by_reason"] == _by_reason(
        expected["tweets"]
    )
    assert [event["extra"] for event in run.asset_events("x-compliance://tweets/results")] == [summary]

    # → apply_to_archive: flagged tweets deleted, scrub_geo tweets kept without geo, every other
    # line byte-identical, only the days that held a change rewritten, an HMAC audit trail.
    reasons = _truth_reasons(truth["tweets"])
    deleted = {i for i, reason in reasons.items() if reason != "scrub_geo"}
    scrubbed = {
        i
        for i, reason in reasons.items()
        if reason == "scrub_geo" and json.loads(before[i][1])["geo"] is not None
    }
    assert deleted and scrubbed
    report = run.xcom("apply_to_archive")
    assert (report["job_id"], report["result_lines"], report["changed"], report["dry_run"]) == (
        job_id,
        summary["lines"],
        True,
        False,
    )
    assert report["deleted"] == dict(sorted(Counter(reasons[i] for i in deleted).items()))
    assert report["updated"] == {"scrub_geo": len(scrubbed)}
    after = _read_archive(archive)
    assert sorted(after) == sorted(set(tweet_ids) - deleted)
    for tweet_id, (key, line) in after.items():
        assert key == before[tweet_id][0]
        if tweet_id in scrubbed:
            assert json.loads(line) == {**json.loads(before[tweet_id][1]), "geo": None}
        else:
            assert line == before[tweet_id][1]
    changed_objects = {before[i][0] for i in deleted | scrubbed}
    assert {_local(target).relative_to(archive).as_posix() for target in report["targets"]} == changed_objects
    untouched = {path for path in mtimes if path.relative_to(archive).as_posix() not in changed_objects}
    assert untouched and all(path.stat().st_mtime_ns == mtimes[path] for path in untouched)
    audit = [
        json.loads(line)
        for path in sorted((data / "audit" / "tweets").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    key = OPERATORS_AUDIT_KEY.encode()
    assert sorted(
        (row["record_key"], row["reason"], row["change"], row["job_id"]) for row in audit
    ) == sorted(
        (
            hmac.new(key, str(i).encode(), "sha256").hexdigest(),
            reasons[i],
            "delete" if i in deleted else "scrub_geo",
            job_id,
        )
        for i in deleted | scrubbed
    )

    # create → upload (a simple PUT) → wait (poking, never deferred) → download to one object.
    run = runs["x_compliance_operators_two_step"]
    assert run.task_states() == dict.fromkeys(("create", "download", "upload", "wait"), "success")
    assert not run.was_deferred("wait")
    job_id = run.xcom("create")
    job = run.xcom("create", key="job")
    assert (job["id"], job["type"], job["resumable"]) == (job_id, "users", False)
    upload = run.xcom("upload")
    assert (upload["job_id"], upload["ids"], upload["resumable"], upload["already_uploaded"]) == (
        job_id,
        3_000,
        False,
        False,
    )
    summary = run.xcom("download")
    assert summary["job_id"] == job_id
    assert _local(summary["path"]) == data / "results" / "operators" / day / "users.jsonl"
    assert [json.loads(line) for line in _local(summary["path"]).read_text().splitlines()] == expected[
        "users"
    ]
    assert summary["lines"] == len(expected["users"]) and summary["by_reason"] == _by_reason(
        expected["users"]
    )
    assert [event["extra"] for event in run.asset_events("x-compliance://users/results")] == [summary]

    # The hook in a task of your own: a job of its own, the same results.
    run = runs["x_compliance_hook"]
    summary = run.xcom("check_with_the_hook")
    hook_job = next(job for job in jobs if job["name"] == "weekly-audit")
    assert summary["job_id"] == hook_job["id"] != runs["x_compliance_operators"].xcom("submit")
    assert _local(summary["path"]) == data / "results" / "hook" / day / f"tweets-{hook_job['id']}.jsonl"
    assert [json.loads(line) for line in _local(summary["path"]).read_text().splitlines()] == expected[
        "tweets"
    ]
    assert summary["by_reason"] == _by_reason(expected["tweets"])


EXPORT_DAG_FILE = EXAMPLE_DAGS / "x_compliance_export.py"
EXPORT_CONN_ENV = "AIRFLOW_CONN_X_COMPLIANCE_DEMO_DB"  # the example's ARCHIVE_CONN_ID
EXPORT_COLUMNS = "id, author_id, text, geo_lat, geo_lon, place_id"


def _seed_sqlite_archive(database: Path, tweet_ids: list[int]) -> dict[int, tuple]:
    """A ``tweets`` table as the demo seeds it (every fourth tweet with geo data); its rows by id."""
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE tweets (id INTEGER PRIMARY KEY, author_id INTEGER, text TEXT, "
            "geo_lat REAL, geo_lon REAL, place_id TEXT)"
        )
        db.executemany(
            "INSERT INTO tweets VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    tweet_id,
                    10_000 + n % 97,
                    f"tweet {n}",
                    *((52.5, 13.4, f"place{n % 7}") if n % 4 == 0 else (None,) * 3),
                )
                for n, tweet_id in enumerate(tweet_ids)
            ],
        )
    db.close()
    return _sqlite_rows(database)


def _sqlite_rows(database: Path) -> dict[int, tuple]:
    db = sqlite3.connect(database)
    try:
        return {row[0]: row for row in db.execute(f"SELECT {EXPORT_COLUMNS} FROM tweets")}
    finally:
        db.close()


def test_export_example_exports_checks_and_applies(airflow_env, tmp_path):
    """x_compliance_export.py: the tweets table's IDs exported to an ID file, checked with the
    emulator, and the download's summary handed to the apply task, which leaves the table holding
    exactly the seeded rows minus the flagged tweets, the scrub_geo ones without geo data."""
    data = tmp_path / "data"
    data.mkdir()
    ids, truth = tmp_path / "generated.txt", tmp_path / "truth.csv"
    generate_dataset(3_000, "tweets", ids, truth, seed=51)
    tweet_ids = list(dict.fromkeys(int(line) for line in ids.read_text().split()))  # a row each
    database = tmp_path / "archive.db"
    before = _seed_sqlite_archive(database, tweet_ids)
    expected = list(expected_results([str(i) for i in tweet_ids], "tweets", ground_truth=truth))
    reasons = {int(line["id"]): line["reason"] for line in expected}
    deleted = {i for i, reason in reasons.items() if reason != "scrub_geo"}
    scrubbed = {i for i, reason in reasons.items() if reason == "scrub_geo"} - deleted
    assert deleted and any(before[i][3] is not None for i in scrubbed)  # the run has work to do

    with XComplianceEmulator(
        token=TOKEN,
        data_dir=tmp_path / "emu",
        speed=60,
        processing_seconds=300,
        ground_truth={"tweets": truth},
    ) as emulator:
        connection = {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN}
        run = airflow_env.dags_test(
            "x_compliance_export",
            EXAMPLE_DAGS,
            env={
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(connection),
                EXPORT_CONN_ENV: json.dumps({"conn_type": "sqlite", "host": str(database)}),
                "AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY": OPERATORS_AUDIT_KEY,
                "X_COMPLIANCE_DATA_URL": data.as_uri(),
                "X_COMPLIANCE_POLL_INTERVAL": "1",
            },
            dag_file=EXPORT_DAG_FILE,
        ).assert_success()
        jobs = emulator.jobs()
    assert [(job["type"], job["status"]) for job in jobs] == [("tweets", "complete")]
    day = str(run.dag_run()["logical_date"])[:10]

    # The export: every stored tweet ID, once, in the run's folder; the report counts them.
    report = run.xcom("export_ids")
    id_file = _local(report["path"])
    assert id_file == data / "export" / day / "tweet_ids.txt"
    assert (report["job_type"], report["archive"], report["ids"]) == (
        "tweets",
        "x_compliance_demo_db:tweets",
        len(before),
    )
    exported = id_file.read_text().split()
    assert sorted(map(int, exported)) == sorted(before) and report["bytes"] == id_file.stat().st_size
    upload = run.xcom("tweets_compliance.submit", key="upload")
    assert upload["ids"] == len(before)

    # The hand-off: the group's download summary, of a tweets job, is what the apply task applied.
    summary = run.xcom("tweets_compliance.download")
    assert (summary["job_type"], summary["job_id"]) == ("tweets", jobs[0]["id"])
    assert summary["lines"] == len(expected)
    applied = run.xcom("apply")
    assert (applied["job_type"], applied["job_id"], applied["results_path"]) == (
        "tweets",
        summary["job_id"],
        summary["path"],
    )
    assert applied["result_lines"] == summary["lines"] and not applied["dry_run"]
    assert applied["deleted"] == dict(sorted(Counter(reasons[i] for i in deleted).items()))

    # The table: the seeded rows minus the deleted ones, record for record.
    after = _sqlite_rows(database)
    assert sorted(after) == sorted(set(before) - deleted)
    for tweet_id, row in after.items():
        if tweet_id in scrubbed:
            assert row == (*before[tweet_id][:3], None, None, None)
        else:
            assert row == before[tweet_id]


HANDOFF_DAG = """
from airflow.sdk import DAG, task

from airflow_provider_xcompliance.operators.apply import XComplianceApplyToSqlOperator

with DAG("xc_export_handoff_refused", schedule=None):

    @task
    def users_download():
        return {{"job_id": "1", "job_type": "users", "path": {path!r}, "lines": {lines}}}

    XComplianceApplyToSqlOperator(
        task_id="apply", results=users_download(), job_type="tweets", conn_id="x_compliance_demo_db",
        table="tweets", geo_columns=("geo_lat", "geo_lon", "place_id"),
    )
"""


def test_export_example_handoff_refuses_users_results(airflow_env, tmp_path):
    """A users job's summary handed to a tweets apply task (the example's, fed by a stand-in
    download) fails the task and changes nothing, although the results' user IDs equal stored
    tweet IDs, which a tweets apply would delete."""
    tweet_ids = [int(line) for line in _generated_tweet_ids(tmp_path, 200)]
    database = tmp_path / "archive.db"
    before = _seed_sqlite_archive(database, tweet_ids)
    results = tmp_path / "users-1.jsonl"
    results.write_text(
        "".join(
            json.dumps(
                {
                    "id": str(i),
                    "action": "delete",
                    "created_at": "2024-06-01T00:00:00.000Z",
                    "redacted_at": "2024-06-02T00:00:00.000Z",
                    "reason": "deleted",
                }
            )
            + "\n"
            for i in tweet_ids[:50]
        )
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "handoff.py").write_text(HANDOFF_DAG.format(path=results.as_uri(), lines=50))
    run = airflow_env.dags_test(
        "xc_export_handoff_refused",
        dags,
        env={EXPORT_CONN_ENV: json.dumps({"conn_type": "sqlite", "host": str(database)})},
    )
    assert run.failed
    assert run.task_states() == {"users_download": "success", "apply": "failed"}
    assert "are users results" in run.output and "this task applies tweets results" in run.output
    assert _sqlite_rows(database) == before


def _generated_tweet_ids(tmp_path: Path, count: int) -> list[str]:
    ids = tmp_path / "generated.txt"
    generate_dataset(count, "tweets", ids, seed=52)
    return list(dict.fromkeys(ids.read_text().split()))
