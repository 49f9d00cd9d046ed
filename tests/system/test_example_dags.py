"""The example DAGs: they import cleanly, and the pipeline runs end to end against the emulator."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset

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
