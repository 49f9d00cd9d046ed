"""Operators and the sensor inside a real Airflow (``airflow dags test`` on SQLite), against the
emulator over HTTP, landing results in a local folder and in a real S3 server (SeaweedFS)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from tests.support.versions import AIRFLOW_V_3_2_PLUS

TOKEN = "operator-test-token-7d41e0c2"
TEST_DAGS = Path(__file__).parent / "dags"
EXAMPLE_DAGS = Path(__file__).parents[2] / "example_dags"


def x_connection(emulator, **extra) -> dict[str, str]:
    connection = {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN, "extra": extra}
    return {"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(connection)}


def ids_of(path: Path) -> list[str]:
    return path.read_text().split()


def assert_no_secrets(run) -> None:
    """Neither the token nor any signed URL in logs, XCom or rendered fields."""
    texts = {
        "logs": run.logs_text(),
        "xcom": json.dumps(run.xcoms(), default=str),
        "rendered": json.dumps([run.rendered_fields(t) for t in run.task_states()], default=str),
    }
    for where, text in texts.items():
        assert TOKEN not in text, f"token in {where}"
        assert "X-Goog-Signature" not in text and "X-Goog-Credential" not in text, f"signed URL in {where}"
        assert "upload_session" not in text, f"resumable session URL in {where}"


@pytest.fixture
def dataset(tmp_path):
    ids, truth = tmp_path / "ids.txt", tmp_path / "truth.csv"
    generate_dataset(30_000, "tweets", ids, truth, seed=3)
    return ids, truth


def expected_lines(ids: Path, truth: Path, job_type: str = "tweets") -> list[dict]:
    return list(expected_results(ids_of(ids), job_type, ground_truth=truth))


def landed_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(
    "resumable, deferrable", [(False, True), (True, False)], ids=["simple-deferred", "resumable-poke"]
)
def test_each_operator_in_turn(airflow_env, dataset, tmp_path, resumable, deferrable):
    ids, truth = dataset
    results = tmp_path / "results" / "audit.jsonl"
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=60, processing_seconds=300, ground_truth=truth
    ) as emulator:
        run = airflow_env.dags_test(
            "xc_steps",
            TEST_DAGS,
            conf={"ids_path": ids.as_uri(), "results_path": results.as_uri()},
            env={
                **x_connection(emulator),
                "XC_TEST_RESUMABLE": str(int(resumable)),
                "XC_TEST_DEFERRABLE": str(int(deferrable)),
            },
        ).assert_success()
        assert len(emulator.jobs()) == 1
        job = emulator.jobs()[0]

    assert run.was_deferred("wait") is deferrable
    assert run.xcom("create") == job["id"]
    metadata = run.xcom("create", key="job")
    assert metadata["id"] == job["id"] and metadata["resumable"] is resumable and "upload_url" not in metadata
    assert job["name"] == metadata["name"] and job["name"].startswith("xc_steps.create-")
    upload = run.xcom("upload")
    assert (upload["ids"], upload["bytes"], upload["resumable"]) == (30_000, ids.stat().st_size, resumable)
    assert run.xcom("wait")["status"] == "complete"

    expected = expected_lines(ids, truth)
    assert landed_lines(results.read_text()) == expected
    summary = run.xcom("download")
    assert summary["path"] == results.as_uri() and summary["lines"] == len(expected)
    assert summary["by_reason"] == dict(sorted(Counter(line["reason"] for line in expected).items()))
    events = run.asset_events("x-compliance://tweets/results")
    assert len(events) == 1 and events[0]["extra"] == summary

    logs = run.logs_text()
    assert f"Upload to job {job['id']} done: 30,000 IDs" in logs
    assert f"Download of job {job['id']} done: {len(expected):,} lines" in logs
    assert_no_secrets(run)


def test_tweets_dag_lands_results_in_s3(airflow_env, dataset, seaweed, s3_bucket, tmp_path):
    ids, truth = dataset
    s3 = seaweed.client()
    s3.upload_file(str(ids), s3_bucket, "input/tweet_ids.txt")
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=60, processing_seconds=300, ground_truth=truth
    ) as emulator:
        run = airflow_env.dags_test(
            "x_compliance_tweets",
            EXAMPLE_DAGS,
            conf={
                "ids_path": f"s3://seaweed@{s3_bucket}/input/tweet_ids.txt",
                "results_path": f"s3://seaweed@{s3_bucket}/compliance/",
            },
            env={**x_connection(emulator), **seaweed.connection_env("seaweed")},
        ).assert_success()
        job_id = emulator.jobs()[0]["id"]

    assert run.was_deferred("compliance.wait")
    key = f"compliance/tweets-{job_id}.jsonl"
    listed = [
        o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="compliance/").get("Contents", [])
    ]
    assert listed == [key]  # and nothing partial beside it
    body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
    assert landed_lines(body) == expected_lines(ids, truth)
    summary = run.xcom("compliance.download")
    assert summary["path"] == f"s3://seaweed@{s3_bucket}/{key}"
    assert run.asset_events("x-compliance://tweets/results")[0]["extra"] == summary
    assert_no_secrets(run)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "poke"])
def test_failed_job_fails_the_sensor_with_its_error(airflow_env, tmp_path, deferrable):
    # `airflow dags test` takes about 7 s to start its first task (over 20 s on a loaded machine):
    # the job must still be running then (40 s of processing) for the sensor to have something to wait for.
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=45, processing_seconds=1800
    ) as emulator:
        job = requests.post(
            f"{emulator.base_url}/2/compliance/jobs",
            json={"type": "tweets"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()["data"]
        # A careless client uploads a file with a bad line; the job ends "failed".
        requests.put(
            job["upload_url"], data=b"1\n2\nthree\n", headers={"Content-Type": "text/plain"}
        ).raise_for_status()
        run = airflow_env.dags_test(
            "xc_wait",
            TEST_DAGS,
            conf={"job_id": job["id"]},
            env={**x_connection(emulator), "XC_TEST_DEFERRABLE": str(int(deferrable))},
        )
    assert run.failed and run.task_states()["wait"] == "failed"
    assert run.was_deferred("wait") is deferrable
    error = emulator.job(job["id"])["error"]
    assert f"Compliance job {job['id']} ended failed: {error}" in run.logs_text()
    assert_no_secrets(run)


def test_expired_job_fails_the_sensor(airflow_env, tmp_path):
    # a 45 s window: the sensor's first check must come before it ends, even on a loaded machine
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu", speed=20) as emulator:
        job = requests.post(
            f"{emulator.base_url}/2/compliance/jobs",
            json={"type": "users"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()["data"]
        run = airflow_env.dags_test(
            "xc_wait", TEST_DAGS, conf={"job_id": job["id"]}, env=x_connection(emulator)
        )
        assert emulator.job(job["id"])["status"] == "expired"
    assert run.failed and run.was_deferred("wait")
    assert f"Compliance job {job['id']} ended expired" in run.logs_text()


def test_bad_id_file_fails_with_its_line_and_sends_nothing(airflow_env, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2\n\n3\n12345678901234567890\n4\n")
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu", speed=10) as emulator:
        run = airflow_env.dags_test(
            "xc_steps",
            TEST_DAGS,
            conf={"ids_path": ids.as_uri(), "results_path": (tmp_path / "r.jsonl").as_uri()},
            env=x_connection(emulator),
        )
        job = emulator.jobs()[0]
        assert job["status"] == "created" and not emulator.submission_path(job["id"]).exists()
    assert run.failed and run.task_states()["upload"] == "failed"
    assert f"{ids.as_uri()}, line 5: '12345678901234567890' is not a tweet or user ID" in run.logs_text()
    assert not (tmp_path / "r.jsonl").exists()


def test_submit_waits_deferred_while_another_job_is_active(airflow_env, tmp_path):
    ids, truth = tmp_path / "users.txt", tmp_path / "truth.csv"
    generate_dataset(5_000, "users", ids, truth, seed=5)
    # One active job for the whole app, and a tweets job that nobody uploads to: it blocks
    # until its upload window (900 s, here 900/15 = 60 s) passes and it expires. The window must
    # outlast the DAG's start on a loaded machine (CI runs four workers on two cores): at 20 s the
    # blocker was seen expire before the submit asked, and no 409 came.
    with XComplianceEmulator(
        token=TOKEN,
        data_dir=tmp_path / "emu",
        speed=15,
        processing_seconds=300,
        one_active_job="global",
        ground_truth={"users": truth},
    ) as emulator:
        blocker = requests.post(
            f"{emulator.base_url}/2/compliance/jobs",
            json={"type": "tweets"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()["data"]
        run = airflow_env.dags_test(
            "x_compliance_users",
            EXAMPLE_DAGS,
            conf={"ids_path": ids.as_uri(), "results_path": (tmp_path / "results").as_uri() + "/"},
            env=x_connection(emulator),
        ).assert_success()
        jobs = {job["type"]: job for job in emulator.jobs()}
        conflicts = [entry for entry in emulator.request_log if entry[1] == "create_job" and entry[2] == 409]

    assert jobs["tweets"]["id"] == blocker["id"] and jobs["tweets"]["status"] == "expired"
    assert jobs["users"]["status"] == "complete" and len(conflicts) == 1
    assert run.was_deferred("compliance.submit") and run.was_deferred("compliance.wait")
    landed = (tmp_path / "results" / f"users-{jobs['users']['id']}.jsonl").read_text()
    assert landed_lines(landed) == expected_lines(ids, truth, "users")
    assert f"Compliance job {blocker['id']} (tweets) is created; waiting for it to end" in run.logs_text()


def test_retried_submit_creates_no_second_job(airflow_env, dataset, tmp_path):
    ids, _ = dataset
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu", speed=10) as emulator:
        # No client retries: the first try's upload dies with the dropped connection, the task
        # is retried by Airflow, and the retry must find and use the job the first try created.
        emulator.inject_fault("upload", kind="drop", times=1, after_bytes=50_000)
        run = airflow_env.dags_test(
            "xc_submit_retried",
            TEST_DAGS,
            conf={"ids_path": ids.as_uri()},
            env=x_connection(emulator, max_retries=0),
        ).assert_success()
        jobs = emulator.jobs()
        creates = [entry for entry in emulator.request_log if entry[1] == "create_job"]
        time.sleep(0.1)
        submitted = emulator.submission_path(jobs[0]["id"]).read_bytes()
    assert len(jobs) == 1 and len(creates) == 1
    # one earlier try: 3.3 logs its up_for_retry; 3.1's history keeps it as failed
    earlier = "up_for_retry" if AIRFLOW_V_3_2_PLUS else "failed"
    assert run.task_state_history("submit").count(earlier) == 1, run.task_state_history("submit")
    assert "Found job %s (created) from an earlier try; using it" % jobs[0]["id"] in run.logs_text()
    assert run.xcom("submit") == jobs[0]["id"] and run.xcom("submit", key="upload")["ids"] == 30_000
    assert submitted == ids.read_bytes()


def test_a_missing_ids_file_fails_before_any_job_is_created(airflow_env, tmp_path):
    missing = tmp_path / "nowhere" / "ids.txt"
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu", speed=10) as emulator:
        run = airflow_env.dags_test(
            "xc_submit_retried",
            TEST_DAGS,
            conf={"ids_path": missing.as_uri()},
            env=x_connection(emulator),
        )
        assert emulator.jobs() == []  # no job left behind, not even by the retry
    assert run.failed and run.task_states()["submit"] == "failed"
    assert f"The IDs file was not found: {missing.as_uri()}" in run.logs_text()
    assert "ConnectionError" not in run.logs_text()
