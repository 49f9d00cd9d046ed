"""A real deployment, as ``./dev airflow`` starts it, driven through its REST API.

The ``dev_airflow`` fixture (tests/conftest.py, tests/support/dev_airflow.py) runs
``demo.py --standalone`` once: the X API emulator, and Airflow 3.3 (scheduler, dag-processor,
api-server, triggerer; SQLite; LocalExecutor) as ``airflow standalone`` on a free loopback port
with the example DAGs. tests/system/browser/test_browser.py drives the same instance through the UI.

What this module proves: the deployment is shaped as the README says (every component on
127.0.0.1, 4 executor workers, the admin password never printed, the connection in the database,
the forms' metadata); unpausing a weekly example starts no run; a run triggered with S3 paths (a
real SeaweedFS) waits for the job in the triggerer, lands the results line for line, and its Asset
event drives the consumer DAG; and once stopped, nothing is left running and no secret is in a log.

Things about 3.3.2 that this relies on:

* The connection form's metadata is served by the UI router, ``GET /ui/connections/hook_meta``
  (``/api/v2/connections/hook_meta`` would be a connection named ``hook_meta``). "Test"
  (``POST /api/v2/connections/test``) runs the hook's ``test_connection()`` in the API server
  and answers 403 unless ``[core] test_connection = Enabled``.
* The Connections list's Test button posts the row as listed: password ``***``, ``port`` as
  ``Number(port)`` (0 when none is stored). The API reuses the stored credentials only when host
  and port match the stored ones; otherwise, without a real password in the body, it answers 400.
* ``GET /api/v2/assets/events`` (and a run's ``upstreamAssetEvents``) answers 500 while a run
  that one of the listed events created is still queued: ``DagRunAssetReference.start_date``
  must be a datetime, and a queued run has none. So the events are read once every consumer
  run has finished.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from airflow_provider_xcompliance import __version__
from devtools.demo import DEMO_TOKEN, PARALLELISM
from tests.support import SeaweedS3
from tests.support.dev_airflow import DevAirflow, cmdline
from tests.support.procs import listening_sockets
from tests.support.versions import AIRFLOW_V_3_2_PLUS

DAG_ID = "x_compliance_tweets"
CONSUMER_DAG_ID = "x_compliance_consumer"
SUBMIT_TASK, WAIT_TASK, DOWNLOAD_TASK = "compliance.submit", "compliance.wait", "compliance.download"
TRIGGER_CLASSPATH = "airflow_provider_xcompliance.triggers.compliance.XComplianceJobTrigger"
HOOK_CLASSPATH = "airflow_provider_xcompliance.hooks.compliance.XComplianceHook"
ASSET_URI = "x-compliance://tweets/results"
PARSE_TIMEOUT = 120  # the example DAGs show up in the API
RUN_TIMEOUT = 300  # a triggered run of 20,000 IDs ends
CONSUMER_TIMEOUT = 120  # the consumer has run on the Asset event


def _wait_parsed(dev_airflow: DevAirflow, dag_id: str) -> None:
    deadline = time.monotonic() + PARSE_TIMEOUT
    while dev_airflow.request("GET", f"/api/v2/dags/{dag_id}").status_code != 200:
        if time.monotonic() > deadline:
            errors = dev_airflow.request("GET", "/api/v2/importErrors").text[:3000]
            pytest.fail(
                f"DAG {dag_id} not parsed after {PARSE_TIMEOUT} s; import errors: {errors}\n"
                f"{dev_airflow.tail()}"
            )
        time.sleep(1)


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return b""


# ---------------------------------------------------------------------------- the deployment
def test_every_component_is_healthy_and_listens_on_loopback_only(dev_airflow: DevAirflow) -> None:
    health = dev_airflow.api("GET", "/api/v2/monitor/health")
    assert all(
        health[part]["status"] == "healthy"
        for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    )
    pids = [*dev_airflow.processes(), dev_airflow.proc.pid]  # Airflow, and the demo (the emulator)
    sockets = listening_sockets(pids)
    everywhere = [
        (pid, cmdline(pid)[:80], address, port)
        for pid, address, port in sockets
        if address not in ("127.0.0.1", "::1")
    ]
    assert not everywhere, f"listening beyond loopback: {everywhere}"
    emulator_url, _ = dev_airflow.emulator()
    ports = {port for _, _, port in sockets}
    assert {dev_airflow.port, int(emulator_url.rsplit(":", 1)[1])} <= ports, sockets
    assert not any(cmdline(pid).startswith("airflow serve-logs") for pid in pids), "a log server is running"


def test_local_executor_runs_four_workers(dev_airflow: DevAirflow) -> None:
    workers = [
        pid for pid in dev_airflow.processes() if cmdline(pid).startswith("airflow worker -- LocalExecutor")
    ]
    assert len(workers) == PARALLELISM == 4, [cmdline(pid) for pid in dev_airflow.processes()]


def test_admin_password_comes_from_a_file_and_is_never_printed(dev_airflow: DevAirflow) -> None:
    password = dev_airflow.admin_password()
    assert len(password) >= 16
    assert dev_airflow.password_file.stat().st_mode & 0o777 == 0o600
    output = dev_airflow.output()
    assert password not in output
    assert "previously generated" in output and "Not echoing it here" in output, output[:3000]
    assert f"password in {dev_airflow.password_file}" in output


def test_default_connection_is_stored_in_the_database(dev_airflow: DevAirflow) -> None:
    connection = dev_airflow.api("GET", "/api/v2/connections/x_compliance_default")
    assert connection["conn_type"] == "xcompliance", connection
    assert connection["host"] == "http://127.0.0.1" and connection["port"], connection
    listed = dev_airflow.api("GET", "/api/v2/connections", params={"limit": 100})["connections"]
    assert {"x_compliance_default", "x_compliance_demo_db"} <= {c["connection_id"] for c in listed}
    # not shadowed by an environment variable, which the UI would not show
    shadowed = [
        cmdline(pid)
        for pid in dev_airflow.processes()
        if b"\0AIRFLOW_CONN_X_COMPLIANCE_DEFAULT=" in _environ(pid)
    ]
    assert not shadowed, shadowed


def test_provider_is_listed(dev_airflow: DevAirflow) -> None:
    providers = dev_airflow.api("GET", "/api/v2/providers", params={"limit": 1000})["providers"]
    ours = [p for p in providers if p["package_name"] == "airflow-provider-xcompliance"]
    assert len(ours) == 1 and ours[0]["version"] == __version__, ours


def test_connection_form_offers_both_type_names_with_the_provider_fields(dev_airflow: DevAirflow) -> None:
    hooks = {h["connection_type"]: h for h in dev_airflow.api("GET", "/ui/connections/hook_meta")}
    assert hooks["xcompliance"]["hook_name"] == "X Compliance"
    assert hooks["x_compliance"]["hook_name"] == "X Compliance (old type name x_compliance)"
    assert hooks["xcompliance"]["hook_class_name"] == HOOK_CLASSPATH
    for conn_type in ("xcompliance", "x_compliance"):
        meta = hooks[conn_type]
        fields = meta["standard_fields"]
        assert fields["password"]["title"] == "Bearer token" and not fields["password"]["hidden"], fields
        assert fields["host"]["title"] == "API base URL", fields
        assert fields["host"]["placeholder"] == "https://api.x.com", fields
        assert not fields["port"]["hidden"], fields  # the Test button needs a stored port
        assert fields["login"]["hidden"] and fields["url_schema"]["hidden"], fields
        extra = meta["extra_fields"]
        assert set(extra) == {"timeout", "max_retries", "max_rate_limit_wait"}, extra
        assert [
            extra[name]["schema"]["title"] for name in ("timeout", "max_retries", "max_rate_limit_wait")
        ] == ["Request timeout (seconds)", "Retries", "Longest rate-limit wait (seconds)"]


def test_connections_list_test_button_request_passes_for_the_stored_connection(
    dev_airflow: DevAirflow,
) -> None:
    """The body the Connections list's Test button posts (the row as listed), and a wrong token."""
    row = dev_airflow.api("GET", "/api/v2/connections/x_compliance_default")
    body = {
        "connection_id": row["connection_id"],
        "conn_type": row["conn_type"],
        "description": row["description"] or "",
        "extra": row["extra"] or "{}",
        "host": row["host"] or "",
        "login": "",
        "password": "***",
        "port": int(row["port"] or 0),
        "schema": "",
    }
    answer = dev_airflow.api("POST", "/api/v2/connections/test", json=body)
    emulator_url, _ = dev_airflow.emulator()
    assert answer["status"] is True and answer["message"].startswith(f"Connected to {emulator_url}: "), answer
    wrong = dev_airflow.api(
        "POST",
        "/api/v2/connections/test",
        json={**body, "connection_id": "x_compliance_unsaved", "password": "xct-wrong-token"},
    )
    assert wrong["status"] is False and "401" in wrong["message"], wrong


def test_trigger_form_params_have_titles_and_a_required_job_type(dev_airflow: DevAirflow) -> None:
    _wait_parsed(dev_airflow, DAG_ID)
    params = dev_airflow.api("GET", f"/api/v2/dags/{DAG_ID}/details")["params"]
    assert {name: p["schema"]["title"] for name, p in params.items()} == {
        "job_type": "Job type",
        "ids_path": "IDs file",
        "results_path": "Results folder",
    }
    # the 3.3 form requires a field whose type excludes null: the job type cannot be cleared
    assert params["job_type"]["schema"]["type"] == "string" and params["job_type"]["schema"]["enum"] == [
        "tweets",
        "users",
    ]
    data_url = dev_airflow.data.as_uri()
    assert params["ids_path"]["value"] == f"{data_url}/ids/tweets.txt"
    assert params["results_path"]["value"] == f"{data_url}/results/tweets/"
    assert all(p["description"] for p in params.values()), params


def test_unpausing_a_weekly_example_starts_no_run(dev_airflow: DevAirflow) -> None:
    """What "Unpause on trigger" (ticked by default) does first: no run of the past week appears."""
    dag_id = "x_compliance_users"
    _wait_parsed(dev_airflow, dag_id)
    dag = dev_airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    assert dag["is_paused"] is False
    next_run = datetime.fromisoformat(dag["next_dagrun_run_after"])
    assert next_run > datetime.now(UTC), dag  # the next Sunday, not the past one
    assert (next_run.weekday(), next_run.hour, next_run.minute) == (6, 0, 0), dag
    assert dev_airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["total_entries"] == 0


# ---------------------------------------------------------------------------- a run with S3 paths
@pytest.fixture(scope="module")
def s3_run(dev_airflow: DevAirflow, seaweed: SeaweedS3) -> SimpleNamespace:
    """A run of the tweets example triggered over REST with a conf of S3 paths (the consumer DAG
    unpaused first, so that it listens before the download), watched until it ends."""
    bucket = seaweed.create_bucket()
    s3 = seaweed.client()
    s3.upload_file(str(dev_airflow.ids_file()), bucket, "triggered/ids.txt")
    data_url = f"s3://seaweed@{bucket}"
    conf = {
        "job_type": "tweets",
        "ids_path": f"{data_url}/triggered/ids.txt",
        "results_path": f"{data_url}/triggered/results/",
    }
    for dag_id in (CONSUMER_DAG_ID, DAG_ID):
        _wait_parsed(dev_airflow, dag_id)
        assert (
            dev_airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})["is_paused"]
            is False
        )

    # As the UI's Trigger dialog does. SQLite lets one process write at a time, so the API server
    # may answer 500 while the scheduler writes: try again under the same run id (409: it got in).
    run_id = f"manual__s3_{uuid.uuid4().hex[:8]}"
    for _ in range(10):
        response = dev_airflow.request(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        if response.status_code < 500:
            break
        time.sleep(1)
    assert response.status_code in (200, 409), f"trigger: HTTP {response.status_code}: {response.text[:2000]}"

    states_seen: list[str] = []
    deferred_views: list[dict[str, Any]] = []

    def watch() -> None:
        response = dev_airflow.request(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{WAIT_TASK}"
        )
        if response.status_code == 200:
            ti = response.json()
            if not states_seen or states_seen[-1] != ti["state"]:
                states_seen.append(ti["state"])
            if ti["state"] == "deferred" and ti.get("trigger") and len(deferred_views) < 3:
                deferred_views.append(ti)

    run = dev_airflow.wait_run(DAG_ID, run_id, RUN_TIMEOUT, watch)
    return SimpleNamespace(
        run=run,
        run_id=run_id,
        conf=conf,
        bucket=bucket,
        data_url=data_url,
        s3=s3,
        states_seen=states_seen,
        deferred_views=deferred_views,
        diagnostics=lambda: f"{dev_airflow.task_logs(DAG_ID, run_id)}\n{dev_airflow.tail()}",
    )


def test_s3_run_succeeds_with_every_task(dev_airflow: DevAirflow, s3_run: SimpleNamespace) -> None:
    states = dev_airflow.task_states(DAG_ID, s3_run.run_id)
    assert s3_run.run["state"] == "success", f"{states}\n{s3_run.diagnostics()}"
    assert states == {SUBMIT_TASK: "success", WAIT_TASK: "success", DOWNLOAD_TASK: "success"}
    assert s3_run.run["run_type"] == "manual" and s3_run.run["conf"] == s3_run.conf


def test_s3_run_waited_for_the_job_in_the_triggerer(dev_airflow: DevAirflow, s3_run: SimpleNamespace) -> None:
    assert "deferred" in s3_run.states_seen, f"{WAIT_TASK} never seen deferred: {s3_run.states_seen}"
    assert s3_run.deferred_views, f"{WAIT_TASK} deferred, but never seen with its trigger"
    view = s3_run.deferred_views[-1]
    assert view["trigger"]["classpath"] == TRIGGER_CLASSPATH, view["trigger"]
    assert view["triggerer_job"] and view["triggerer_job"]["job_type"] == "TriggererJob", view
    assert view["try_number"] == 1
    events = dev_airflow.api(
        "GET",
        "/api/v2/eventLogs",
        params={
            "dag_id": DAG_ID,
            "run_id": s3_run.run_id,
            "task_id": WAIT_TASK,
            "order_by": "id",
            "limit": 100,
        },
    )["event_logs"]
    if AIRFLOW_V_3_2_PLUS:  # 3.1 logs no state changes there; the trigger row above shows it
        assert "deferred" in [e["event"] for e in events], events

    # The triggerer writes what the trigger logs next to the task's log (no log server: the API
    # server reads the file), and the API merges it into the task log.
    wait_dir = (
        dev_airflow.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={s3_run.run_id}" / f"task_id={WAIT_TASK}"
    )
    trigger_log = wait_dir / f"attempt=1.log.trigger.{view['triggerer_job']['id']}.log"
    assert trigger_log.is_file(), sorted(os.listdir(wait_dir))
    assert "waiting for it to end" in trigger_log.read_text()
    if not AIRFLOW_V_3_2_PLUS:
        return  # 3.1's task log API merges the trigger's lines differently; the file above has them
    log = dev_airflow.api(
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{s3_run.run_id}/taskInstances/{WAIT_TASK}/logs/1",
        params={"full_content": "true"},
        headers={"Accept": "application/json"},
    )
    records = [r for r in log["content"] if isinstance(r, dict)]
    by_trigger = [r for r in records if str(r.get("logger", "")).endswith(".XComplianceJobTrigger")]
    assert any("in_progress" in str(r.get("event")) for r in by_trigger), records
    fired = [r for r in records if r.get("event") == "Trigger fired event"]
    assert len(fired) == 1 and "'status': 'complete'" in str(fired[0].get("result")), fired
    assert any("deferring until it ends" in str(r.get("event")) for r in records), records


def test_s3_run_lands_the_results_line_for_line(dev_airflow: DevAirflow, s3_run: SimpleNamespace) -> None:
    job_id = str(dev_airflow.xcom(DAG_ID, s3_run.run_id, SUBMIT_TASK))
    key = f"triggered/results/tweets-{job_id}.jsonl"
    keys = sorted(o["Key"] for o in s3_run.s3.list_objects_v2(Bucket=s3_run.bucket).get("Contents", []))
    assert keys == sorted(["triggered/ids.txt", key]), keys
    body = s3_run.s3.get_object(Bucket=s3_run.bucket, Key=key)["Body"].read().decode()
    assert body.endswith("\n")
    landed = [json.loads(line) for line in body.splitlines()]
    expected = dev_airflow.expected_results()
    assert expected and len(landed) == len(expected), (len(landed), len(expected))
    for number, (got, want) in enumerate(zip(landed, expected, strict=True), 1):
        assert got == want, f"line {number}: {got} != {want}"
    emulator_url, token = dev_airflow.emulator()
    jobs = requests.get(
        f"{emulator_url}/2/compliance/jobs",
        params={"type": "tweets"},
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
        proxies={"http": "", "https": ""},
    ).json()
    job = next((j for j in jobs.get("data", []) if str(j["id"]) == job_id), None)
    assert job and job["status"] == "complete", jobs


def _asset_event(dev_airflow: DevAirflow, run_id: str) -> dict[str, Any]:
    listed = dev_airflow.api(
        "GET",
        "/api/v2/assets/events",
        params={"source_dag_id": DAG_ID, "source_run_id": run_id, "limit": 100},
    )["asset_events"]
    matching = [e for e in listed if e["uri"] == ASSET_URI]
    assert len(matching) == 1, listed
    return matching[0]


def _consumer_run_on(dev_airflow: DevAirflow, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The finished consumer run whose triggering events include the one of ``run_id`` (a
    consumer run may cover several events), once every consumer run has finished."""
    deadline = time.monotonic() + CONSUMER_TIMEOUT
    while True:
        runs = dev_airflow.api("GET", f"/api/v2/dags/{CONSUMER_DAG_ID}/dagRuns", params={"limit": 100})[
            "dag_runs"
        ]
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            for run in runs:
                events = dev_airflow.api(
                    "GET", f"/api/v2/dags/{CONSUMER_DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
                )["asset_events"]
                if any(e["source_run_id"] == run_id for e in events):
                    return run, events
        assert time.monotonic() < deadline, f"{CONSUMER_DAG_ID} did not run on the event of {run_id}: {runs}"
        time.sleep(1)


def test_s3_run_asset_event_carries_the_download_summary(
    dev_airflow: DevAirflow, s3_run: SimpleNamespace
) -> None:
    _consumer_run_on(dev_airflow, s3_run.run_id)  # (the events API fails while a consumer run is queued)
    event = _asset_event(dev_airflow, s3_run.run_id)
    assert event["source_task_id"] == DOWNLOAD_TASK
    job_id = str(dev_airflow.xcom(DAG_ID, s3_run.run_id, SUBMIT_TASK))
    expected = dev_airflow.expected_results()
    assert event["extra"]["path"] == f"{s3_run.data_url}/triggered/results/tweets-{job_id}.jsonl", event
    assert event["extra"]["lines"] == len(expected), event
    assert event["extra"]["by_reason"] == dict(Counter(r["reason"] for r in expected)), event


def test_consumer_dag_runs_on_the_asset_event(dev_airflow: DevAirflow, s3_run: SimpleNamespace) -> None:
    consumer_run, events = _consumer_run_on(dev_airflow, s3_run.run_id)
    assert consumer_run["state"] == "success" and consumer_run["run_type"] == "asset_triggered", consumer_run
    assert dev_airflow.task_states(CONSUMER_DAG_ID, consumer_run["dag_run_id"]) == {"react": "success"}
    returned = dev_airflow.xcom(CONSUMER_DAG_ID, consumer_run["dag_run_id"], "react")
    summaries = [{"path": e["extra"]["path"], "lines": e["extra"]["lines"]} for e in events]
    assert sorted(returned, key=json.dumps) == sorted(summaries, key=json.dumps), (returned, summaries)
    ours = _asset_event(dev_airflow, s3_run.run_id)["extra"]
    assert {"path": ours["path"], "lines": ours["lines"]} in returned


# ---------------------------------------------------------------------------- after the stop
def test_stopping_leaves_nothing_running(stopped_dev_airflow: DevAirflow) -> None:
    report = stopped_dev_airflow.stop_report
    assert report["returncode"] == 0 and report["signals"] == ["SIGTERM"], report
    assert not report["strays"], f"processes outlived ./dev airflow: {report}"
    assert not report["left"], report


def test_no_log_and_no_output_holds_the_bearer_token_or_the_password(stopped_dev_airflow: DevAirflow) -> None:
    home = stopped_dev_airflow.home
    logs = stopped_dev_airflow.log_files()
    assert any(f"dag_id={DAG_ID}" in str(p) for p in logs), "no task log files: the check would prove nothing"
    password = stopped_dev_airflow.admin_password()
    for secret in (DEMO_TOKEN, password):
        leaks = [str(p.relative_to(home)) for p in logs if secret in p.read_text(errors="replace")]
        assert not leaks, f"a secret appears in {leaks}"
        assert secret not in stopped_dev_airflow.output(), "a secret appears in ./dev airflow's output"
    assert not (home / "demo-connections.json").exists()
