"""Faults on a real distributed Airflow (CeleryExecutor, two workers): the fault matrix.

One ``CeleryCluster`` for the module. Its DAGs folder holds one DAG of this module's own,
``xc_fault_matrix`` (written at fixture time: the provider's ``compliance_task_group`` with the
example DAG's params, ``retries=2`` with a 3 s delay, and ``max_active_runs=10`` so runs of one
job type contend for X's one-active-job rule). Each test starts runs of its own:

1. a worker SIGKILLed while the submit task is in its upload, between two 8 MiB chunks: the
   retry finds the job its first try created (one job for the run at X), resumes the upload
   session from where it stands, after the job's upload window, and the results are right;
   the same with no retries and a Clear of the failed run (``xc_fault_matrix_once``);
2. a worker SIGKILLed while the download task is in its download: the retry lands exactly one,
   byte-exact results object; nothing partial is ever seen; the open multipart upload a killed
   try would leave (made by the test: the results are smaller than one part) is aborted;
3. the triggerer restarted while the wait is deferred: the wait resumes, the run completes;
4. 5xx bursts and dropped connections on the wait's job listing (the trigger's shared watch):
   no task fails or is retried;
5. ``CONTENDING_RUNS`` runs of one job type at once: all complete, one job per run, no 429.

A SIGKILLed worker's Celery message would only come back after the broker's visibility timeout
(24 h by default); the scheduler's task instance heartbeat timeout (20 s here) fails the killed
task instance instead, and its retry is queued anew.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_xcompliance.client.upload_sessions import VARIABLE_PREFIX
from tests.support import SeaweedS3
from tests.support.celery_cluster import CeleryCluster
from tests.support.postgres import PostgresServer

DAG_ID = "xc_fault_matrix"
ONCE_DAG_ID = "xc_fault_matrix_once"  # the same without retries: a failed run is Cleared
SUBMIT, WAIT, DOWNLOAD = "compliance.submit", "compliance.wait", "compliance.download"
RUN_TIMEOUT = 360
# X runs the jobs one after the other: about 17 s a run here.
CONTENDING_RUNS = 10
# Twice the dataset's IDs, repeated to 10 MiB: two 8 MiB chunks, so a kill can land between them.
BIG_IDS = "in/tweets-10mib.txt"

DAG_SOURCE = textwrap.dedent(
    f'''
    """The fault matrix's DAG (written by this module)."""
    from datetime import timedelta

    from airflow.sdk import DAG

    from airflow_provider_xcompliance.dags import compliance_task_group

    for dag_id, retries in (("{DAG_ID}", 2), ("{ONCE_DAG_ID}", 0)):
        with DAG(
            dag_id,
            schedule=None,
            catchup=False,
            max_active_runs=10,
            default_args={{"retries": retries, "retry_delay": timedelta(seconds=3)}},
            params={{"job_type": "tweets", "ids_path": "", "results_path": ""}},
        ) as dag:
            compliance_task_group(
                job_type="{{{{ params.job_type }}}}",
                ids_path="{{{{ params.ids_path }}}}",
                results_path="{{{{ params.results_path }}}}",
                group_id="compliance",
                poll_interval=3.0,
            )
        globals()[dag_id] = dag
    '''
)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedS3, postgres: PostgresServer
) -> Iterator[CeleryCluster]:
    dags = tmp_path_factory.mktemp("fault_matrix_dags")
    (dags / "xc_fault_matrix.py").write_text(DAG_SOURCE)
    with CeleryCluster(
        tmp_path_factory.mktemp("fault_matrix"),
        seaweed=seaweed,
        postgres=postgres,
        dags_folder=dags,
        emulator_options={
            "processing_seconds": 1200.0,  # 10 s in progress at speed 120
            # X's 15-minute upload window is 7.5 s at speed 120; 3600 emulated s are 30 real
            # ones: room for an upload on a loaded machine, yet a killed upload's retry (after
            # the 20 s heartbeat timeout) and a Clear come after it, as on a real deployment
            # (300 s heartbeat timeout + 300 s retry delay against 15 minutes). They must resume
            # the session: a new one can no longer be opened.
            "upload_window_seconds": 3600.0,
        },
        extra_env={
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
        },
    ) as cluster:
        cluster.upload_ids("tweets", "in/tweets.txt")
        ids = cluster.ids_file("tweets").read_bytes()
        cluster.s3().put_object(Bucket=cluster.bucket, Key=BIG_IDS, Body=ids * -(-10 * 2**20 // len(ids)))
        yield cluster


# ---------------------------------------------------------------------------- helpers
def _trigger(
    cluster: CeleryCluster, name: str, ids: str = "in/tweets.txt", dag_id: str = DAG_ID
) -> tuple[str, str]:
    conf = {
        "job_type": "tweets",
        "ids_path": f"{cluster.data_url}/{ids}",
        "results_path": f"{cluster.data_url}/out/{name}/",
    }
    return cluster.trigger(dag_id, conf), f"out/{name}/"


def _ti(cluster: CeleryCluster, run_id: str, task_id: str, dag_id: str = DAG_ID) -> dict[str, Any] | None:
    response = cluster.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    return response.json() if response.status_code == 200 else None


def _until(what: str, check: Any, timeout: float, cluster: CeleryCluster) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not seen within {timeout} s: {what}\n{cluster.tails()}")


def _until_deferred(cluster: CeleryCluster, run_id: str) -> None:
    _until(
        "the wait deferred",
        lambda: (t := _ti(cluster, run_id, WAIT)) and t["state"] == "deferred",
        180,
        cluster,
    )


def _diagnostics(cluster: CeleryCluster, run_id: str, dag_id: str = DAG_ID) -> str:
    parts = [
        f"--- {path.relative_to(cluster.home)} ---\n"
        + "\n".join(path.read_text(errors="replace").splitlines()[-30:])
        for path in cluster.task_log_files(dag_id, run_id)
    ]
    return "\n".join(parts) + "\n" + cluster.tails(30)


def _assert_success(cluster: CeleryCluster, run_id: str, run: dict[str, Any], dag_id: str = DAG_ID) -> None:
    assert run["state"] == "success", (
        f"{run_id}: {cluster.task_states(dag_id, run_id)}\n{_diagnostics(cluster, run_id, dag_id)}"
    )


def _jobs_of_run(cluster: CeleryCluster, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
    """The emulator's jobs whose name is the submit task's default name for this run."""
    import hashlib

    key = f"{dag_id}\n{run_id}\n{SUBMIT}\n-1"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return [j for j in cluster.emulator.jobs() if str(j.get("name", "")).endswith(f"-{digest}")]


def _assert_results(
    cluster: CeleryCluster, run_id: str, prefix: str, dag_id: str = DAG_ID, truth: bool = True
) -> str:
    """The run's results are byte-exact what X served, the only object under ``prefix``, and
    (with ``truth``: the dataset's own IDs file) what the ground truth says."""
    job_id = str(cluster.xcom(dag_id, run_id, SUBMIT))
    summary = cluster.xcom(dag_id, run_id, DOWNLOAD)
    key = f"{prefix}tweets-{job_id}.jsonl"
    assert summary["path"] == f"{cluster.data_url}/{key}", summary
    landed = cluster.read_object(key)
    served = cluster.emulator.results_path(job_id).read_bytes()
    assert landed == served, f"{len(landed)} bytes landed, {len(served)} served"
    if truth:
        expected = cluster.expected_results("tweets")
        assert [json.loads(line) for line in landed.splitlines()] == expected
    assert [k for k in cluster.object_keys() if k.startswith(prefix)] == [key]
    return job_id


def _open_multipart_uploads(cluster: CeleryCluster) -> list[dict[str, Any]]:
    return cluster.s3().list_multipart_uploads(Bucket=cluster.bucket).get("Uploads", [])


def _kill_worker_running(cluster: CeleryCluster, run_id: str, task_id: str, dag_id: str = DAG_ID) -> str:
    """SIGKILL the worker whose Celery pool runs ``task_id`` of the run now, start it again; its name."""

    def running() -> dict[str, Any] | None:
        ti = _ti(cluster, run_id, task_id, dag_id)
        return ti if ti and ti["state"] == "running" and ti.get("hostname") else None

    ti = _until(f"{task_id} running with a hostname", running, 120, cluster)
    worker = ti["hostname"]
    assert worker in cluster.worker_names, ti
    active = json.dumps(cluster.celery_active().get(f"celery@{worker}", []))
    assert ti["id"] in active, f"{task_id} ({ti['id']}) not active on {worker}: {active}"
    assert cluster.kill_worker(worker, signal.SIGKILL) == -signal.SIGKILL
    cluster.start_worker(worker)
    cluster.wait_workers([worker], timeout=120)
    return worker


# ---------------------------------------------------------------------------- 1. kill mid-upload
def _kill_between_chunks(cluster: CeleryCluster, name: str, dag_id: str) -> tuple[str, str]:
    """Start a run on the 10 MiB IDs; SIGKILL its submit's worker once the first 8 MiB chunk is
    stored, while the second is held at the storage server. The run id and results prefix."""
    cluster.emulator.clear_faults()
    cluster.emulator.inject_fault("upload_session", "delay", seconds=30, skip=1)
    run_id, prefix = _trigger(cluster, name, ids=BIG_IDS, dag_id=dag_id)
    _until("the second chunk held", lambda: not cluster.emulator.pending_faults(), 120, cluster)
    assert len(_jobs_of_run(cluster, run_id, dag_id)) == 1
    _kill_worker_running(cluster, run_id, SUBMIT, dag_id)
    return run_id, prefix


def _assert_resumed(cluster: CeleryCluster, run_id: str, prefix: str, dag_id: str) -> None:
    """One job for the run, complete and right; the last try found it and resumed its session
    past the first chunk, after the upload window (no new session could be opened then)."""
    submit = cluster.task_instance(dag_id, run_id, SUBMIT)
    jobs = _jobs_of_run(cluster, run_id, dag_id)
    assert len(jobs) == 1, f"jobs at X for this run: {jobs}"
    assert jobs[0]["id"] == _assert_results(cluster, run_id, prefix, dag_id, truth=False)
    events = [str(r.get("event")) for r in cluster.task_log(dag_id, run_id, SUBMIT, submit["try_number"])]
    assert any("from an earlier try" in e for e in events), f"the job was not found again: {events}"
    resumed = [e for e in events if "Resuming the upload session of an earlier try at byte" in e]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= 8 * 2**20, events
    assert not any(name.startswith(VARIABLE_PREFIX) for name in cluster.variables()), (
        "the kept session was not removed"
    )


def test_worker_killed_mid_upload_retry_resumes_the_session(cluster: CeleryCluster) -> None:
    run_id, prefix = _kill_between_chunks(cluster, "mid_upload", DAG_ID)
    run = cluster.wait_runs([(DAG_ID, run_id)], RUN_TIMEOUT)[(DAG_ID, run_id)]
    _assert_success(cluster, run_id, run)
    submit = cluster.task_instance(DAG_ID, run_id, SUBMIT)
    assert submit["try_number"] >= 2, f"the kill did not cost the submit a try: {submit}"
    _assert_resumed(cluster, run_id, prefix, DAG_ID)


def test_worker_killed_mid_upload_then_cleared_resumes_the_session(cluster: CeleryCluster) -> None:
    run_id, prefix = _kill_between_chunks(cluster, "mid_upload_cleared", ONCE_DAG_ID)
    run = cluster.wait_runs([(ONCE_DAG_ID, run_id)], RUN_TIMEOUT)[(ONCE_DAG_ID, run_id)]
    assert run["state"] == "failed", cluster.task_states(ONCE_DAG_ID, run_id)
    cluster.api(
        "POST",
        f"/api/v2/dags/{ONCE_DAG_ID}/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [SUBMIT],
            "include_downstream": True,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    _until("the run queued again", lambda: cluster.run(ONCE_DAG_ID, run_id)["state"] != "failed", 60, cluster)
    run = cluster.wait_runs([(ONCE_DAG_ID, run_id)], RUN_TIMEOUT)[(ONCE_DAG_ID, run_id)]
    _assert_success(cluster, run_id, run, ONCE_DAG_ID)
    _assert_resumed(cluster, run_id, prefix, ONCE_DAG_ID)


# ---------------------------------------------------------------------------- 2. kill mid-download
def test_worker_killed_mid_download_leaves_one_complete_object(cluster: CeleryCluster) -> None:
    cluster.emulator.clear_faults()
    # The first results download request hangs 45 s: the kill lands while the download task
    # has its writer open (the stale-upload check done) and is waiting for X's bytes.
    cluster.emulator.inject_fault("download", "delay", seconds=45)
    run_id, prefix = _trigger(cluster, "mid_download")
    seen: dict[str, set[int]] = {}  # key -> sizes seen under the prefix

    def look() -> None:
        for o in cluster.s3().list_objects_v2(Bucket=cluster.bucket, Prefix=prefix).get("Contents", []):
            seen.setdefault(o["Key"], set()).add(o["Size"])

    def taken() -> bool:
        look()
        return not cluster.emulator.pending_faults()

    _until("the delayed download request taken", taken, 240, cluster)
    look()
    worker = _kill_worker_running(cluster, run_id, DOWNLOAD)
    look()
    # The results (about 127 KB) stay below the writer's 5 MiB part size, so the killed try had
    # begun no multipart upload yet. What a kill after the first part leaves -- an open
    # multipart upload of the very key, with a part -- is made here, before the retry starts:
    # the retry must abort it.
    job_id = str(cluster.xcom(DAG_ID, run_id, SUBMIT))
    key = f"{prefix}tweets-{job_id}.jsonl"
    s3 = cluster.s3()
    stale = s3.create_multipart_upload(Bucket=cluster.bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=cluster.bucket, Key=key, UploadId=stale, PartNumber=1, Body=b"{}\n" * 1000)
    download = cluster.task_instance(DAG_ID, run_id, DOWNLOAD)
    assert download["try_number"] == 1, f"the retry began before the stale upload was made: {download}"
    assert [u["UploadId"] for u in _open_multipart_uploads(cluster)] == [stale]
    run = cluster.wait_runs([(DAG_ID, run_id)], RUN_TIMEOUT, watch=look, interval=0.5)[(DAG_ID, run_id)]
    look()
    _assert_success(cluster, run_id, run)
    download = cluster.task_instance(DAG_ID, run_id, DOWNLOAD)
    assert download["try_number"] >= 2, f"the kill of {worker} did not cost the download a try: {download}"
    assert _assert_results(cluster, run_id, prefix) == job_id
    size = len(cluster.emulator.results_path(job_id).read_bytes())
    assert seen == {key: {size}}, f"objects seen under {prefix} while the run went: {seen}"
    assert not _open_multipart_uploads(cluster), _open_multipart_uploads(cluster)
    retry_log = cluster.task_log(DAG_ID, run_id, DOWNLOAD, download["try_number"])
    assert any("Aborting an unfinished multipart upload" in str(r.get("event")) for r in retry_log), retry_log
    print(f"\nkilled {worker} in the download of {size} bytes; sizes seen under {prefix}: {seen}")


# ---------------------------------------------------------------------------- 3. triggerer restart
def test_triggerer_restarted_mid_wait(cluster: CeleryCluster) -> None:
    cluster.emulator.clear_faults()
    run_id, prefix = _trigger(cluster, "triggerer_restart")
    _until_deferred(cluster, run_id)
    job_id = str(cluster.xcom(DAG_ID, run_id, SUBMIT))
    assert cluster.emulator.job(job_id)["status"] in ("created", "in_progress"), cluster.emulator.job(job_id)
    old = cluster.components["triggerer"].pid
    cluster.restart_triggerer()
    assert cluster.components["triggerer"].pid != old
    run = cluster.wait_runs([(DAG_ID, run_id)], RUN_TIMEOUT)[(DAG_ID, run_id)]
    _assert_success(cluster, run_id, run)
    _assert_results(cluster, run_id, prefix)
    assert len(_jobs_of_run(cluster, run_id)) == 1


# ---------------------------------------------------------------------------- 4. lookup faults
def test_lookup_5xx_and_drops_while_waiting(cluster: CeleryCluster) -> None:
    cluster.emulator.clear_faults()
    run_id, prefix = _trigger(cluster, "lookup_faults")
    _until_deferred(cluster, run_id)
    before = len(cluster.emulator.request_log)
    for fault in (
        {"kind": "status", "status": 503, "times": 3},
        {"kind": "drop", "times": 2},
        {"kind": "status", "status": 500, "times": 2},
        {"kind": "status", "status": 502, "times": 1},
        {"kind": "drop", "times": 1},
        {"kind": "status", "status": 504, "times": 2},
    ):
        cluster.emulator.inject_fault("list_jobs", **fault)  # the wait's shared watch lists the jobs
    run = cluster.wait_runs([(DAG_ID, run_id)], RUN_TIMEOUT)[(DAG_ID, run_id)]
    _assert_success(cluster, run_id, run)
    assert not cluster.emulator.pending_faults(), "the faults were not all met"
    lookups = [
        status for _, endpoint, status in cluster.emulator.request_log[before:] if endpoint == "list_jobs"
    ]
    assert sum(1 for s in lookups if s >= 500 or s == 0) == 11, lookups
    tis = cluster.task_instances(DAG_ID, run_id)
    assert {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in tis} == {
        SUBMIT: ("success", 1),
        WAIT: ("success", 1),
        DOWNLOAD: ("success", 1),
    }, tis
    _assert_results(cluster, run_id, prefix)


# ---------------------------------------------------------------------------- 5. contention
def test_runs_contend_for_the_one_active_job(cluster: CeleryCluster) -> None:
    cluster.emulator.clear_faults()
    before = len(cluster.emulator.request_log)
    started = time.monotonic()
    runs = [_trigger(cluster, f"contend_{i}") for i in range(CONTENDING_RUNS)]
    ended = cluster.wait_runs([(DAG_ID, run_id) for run_id, _ in runs], RUN_TIMEOUT + 60 * CONTENDING_RUNS)
    seconds = round(time.monotonic() - started, 1)
    job_ids = set()
    for run_id, prefix in runs:
        _assert_success(cluster, run_id, ended[(DAG_ID, run_id)])
        jobs = _jobs_of_run(cluster, run_id)
        assert len(jobs) == 1, f"{run_id}: jobs {jobs}"
        job_ids.add(_assert_results(cluster, run_id, prefix))
    assert len(job_ids) == CONTENDING_RUNS
    log = cluster.emulator.request_log[before:]
    assert [r for r in log if r[2] == 429] == [], "the emulator answered 429s"
    created = [r for r in log if r[1] == "create_job" and 200 <= r[2] < 300]
    assert len(created) == CONTENDING_RUNS, created
    counts: dict[str, int] = {}
    for _, endpoint, status in log:
        counts[f"{endpoint} {status}"] = counts.get(f"{endpoint} {status}", 0) + 1
    print(f"\n{CONTENDING_RUNS} contending runs done in {seconds} s; requests: {counts}")


# ---------------------------------------------------------------------------- after the faults
def test_stopping_after_the_faults_leaves_nothing_running(cluster: CeleryCluster) -> None:
    report = cluster.stop()
    assert not report["strays"] and not report["left"], report
    assert not cluster.pids()
    leftovers = report["leftovers"]  # a killed worker's processes outside its group, SIGKILLed then
    print(f"\ncluster start {cluster.timings}, stop {report['seconds']} s; left by a leader: {leftovers}")
