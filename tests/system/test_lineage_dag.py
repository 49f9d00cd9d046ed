"""OpenLineage: the events a real DAG run emits through OpenLineage's file transport (the Datasets
each operator reports: tests/unit/test_lineage.py)."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_xcompliance.emulator import XComplianceEmulator, generate_dataset

TOKEN = "lineage-test-token-93b1f07a"
TEST_DAGS = Path(__file__).parent / "dags"


# --- a real DAG run, with OpenLineage's file transport -----------------------------------------


def read_events(folder: Path) -> list[dict]:
    """Every event the file transport wrote (one file per event, or appended lines)."""
    events = []
    for file in sorted(folder.glob("events*")):
        for text in file.read_text().splitlines():
            if text.strip():
                events.append(json.loads(text))
    return events


def test_a_dag_run_emits_the_datasets_in_its_complete_events(airflow_env, tmp_path):
    ids, truth = tmp_path / "ids.txt", tmp_path / "truth.csv"
    generate_dataset(3_000, "tweets", ids, truth, seed=5, flagged_fraction=0.1)
    data = tmp_path / "lake" / "tweets"
    data.mkdir(parents=True)
    records = [
        {"id": tweet_id, "text": "t", "geo": {"place_id": "p"}} for tweet_id in ids.read_text().split()
    ]
    (data / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results, audit = tmp_path / "results", tmp_path / "audit"
    ol_dir = tmp_path / "openlineage"
    ol_dir.mkdir()
    transport = {"type": "file", "log_file_path": str(ol_dir / "events"), "append": True}

    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=60, processing_seconds=120, ground_truth=truth
    ) as emulator:
        connection = {"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN}
        run = airflow_env.dags_test(
            "xc_lineage",
            TEST_DAGS,
            conf={
                "ids_path": ids.as_uri(),
                "results_path": results.as_uri() + "/",
                "data_path": data.as_uri() + "/",
                "audit_path": audit.as_uri() + "/",
            },
            env={
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(connection),
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "xc-lineage-test",
            },
        ).assert_success()
        job_id = emulator.jobs()[0]["id"]
        api_host = emulator.base_url.split("://", 1)[1]

    complete = {
        event["job"]["name"]: event
        for event in read_events(ol_dir)
        if event.get("eventType") == "COMPLETE" and event["job"]["name"].startswith("xc_lineage.")
    }

    def datasets(task_id: str, side: str) -> list[tuple[str, str]]:
        assert f"xc_lineage.{task_id}" in complete, f"no COMPLETE event for {task_id}: {sorted(complete)}"
        return [(d["namespace"], d["name"]) for d in complete[f"xc_lineage.{task_id}"][side]]

    jobs = ("x-compliance://" + api_host, "jobs/tweets")
    results_file = results / f"tweets-{job_id}.jsonl"
    assert results_file.exists() and run.xcom("download")["path"] == results_file.as_uri()
    assert datasets("submit", "inputs") == [("file", str(ids))]
    assert datasets("submit", "outputs") == [jobs]
    assert datasets("download", "inputs") == [jobs]
    assert datasets("download", "outputs") == [("file", str(results_file))]
    assert datasets("apply_files", "inputs") == [("file", str(results_file))]
    assert datasets("apply_files", "outputs") == [("file", str(data)), ("file", str(audit))]
    assert any(audit.glob("*.jsonl")), "the run changed nothing: the test data set does not exercise apply"
