"""The example DAGs on a real distributed Airflow: CeleryExecutor, two workers, Redis, PostgreSQL.

``CeleryCluster`` (tests/support/celery_cluster.py) starts Airflow 3.3's api-server, scheduler,
dag-processor and triggerer and two Celery workers (``w1``, ``w2``, 2 slots each) as separate
processes on 127.0.0.1, with Redis as the broker, a fresh PostgreSQL database (of the session's
server) as the metadata DB and result backend, SeaweedFS (the session's) for the IDs and the
results, and the X API emulator. The ``x_compliance_tweets`` and ``x_compliance_users`` DAGs are
triggered at the same time over REST, with S3 paths in their conf.

What this module proves: both runs succeed; their tasks ran on both workers; each sensor waited
in the triggerer, not in a worker slot; the results in S3 are byte for byte what X (the
emulator) served; nothing of the IDs or the results touched a worker's own disk (its ``HOME``
and ``TMPDIR``); every component listens on loopback only; the fault handles the next tests build
on work (a worker killed with SIGKILL and started again, the triggerer restarted); and stopping
leaves no process behind.

Things about 3.3.2 seen here (see also the docstring of tests/support/celery_cluster.py):

* A deferring task keeps its Celery slot for a few seconds after the task instance is already
  ``deferred`` (the task supervisor finishes up); the slot is free for the rest of the wait.
* ``execute_complete`` of the sensor runs as a new Celery task on whichever worker takes it:
  the task instance's ``hostname`` is that of its last worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import SeaweedS3
from tests.support.celery_cluster import CeleryCluster
from tests.support.postgres import PostgresServer
from tests.support.procs import open_files

DAGS = {"x_compliance_tweets": "tweets", "x_compliance_users": "users"}
SUBMIT_TASK, WAIT_TASK, DOWNLOAD_TASK = "compliance.submit", "compliance.wait", "compliance.download"
TRIGGER_CLASSPATH = "airflow_provider_xcompliance.triggers.compliance.XComplianceJobTrigger"
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedS3, postgres: PostgresServer
) -> Iterator[CeleryCluster]:
    with CeleryCluster(
        tmp_path_factory.mktemp("celery_cluster"), seaweed=seaweed, postgres=postgres
    ) as cluster:
        yield cluster


def _open_files(cluster: CeleryCluster, worker: str, ids: set[bytes]) -> dict[str, bool]:
    """Files the worker's processes (pool, task supervisors, tasks) hold open now in its scratch
    dirs or under /tmp, each with whether it holds any of the IDs (read through /proc, so a
    deleted temporary file, shown as ``... (deleted)``, is read too)."""
    found = {}
    for _, descriptor, target in open_files(cluster.pids(worker)):
        mine = target.startswith(f"{cluster.scratch(worker)}/")
        if not mine and (
            not target.startswith(("/tmp/", "/var/tmp/", "/dev/shm/"))
            or target.startswith(f"{cluster.workdir}/")
        ):  # (its logs, the other worker's scratch)
            continue
        try:
            with open(descriptor, "rb") as f:
                content = f.read(256 * 1024 * 1024)
        except OSError:
            continue
        found[target] = found.get(target, False) or any(n in ids for n in re.findall(rb"\d{5,19}", content))
    return found


@pytest.fixture(scope="module")
def runs(cluster: CeleryCluster) -> SimpleNamespace:
    """Both DAGs triggered at once with S3 paths, watched until they end: every second the wait
    tasks' states and views, Celery's active tasks while a wait is deferred, and the files the
    workers hold open."""
    confs, run_ids = {}, {}
    for dag_id, job_type in DAGS.items():
        confs[dag_id] = {
            "job_type": job_type,
            "ids_path": cluster.upload_ids(job_type, f"in/{job_type}.txt"),
            "results_path": f"{cluster.data_url}/out/{job_type}/",
        }
    started = time.monotonic()
    for dag_id in DAGS:
        run_ids[dag_id] = cluster.trigger(dag_id, confs[dag_id])

    states: dict[str, list[str]] = {dag_id: [] for dag_id in DAGS}
    deferred_views: dict[str, list[dict[str, Any]]] = {dag_id: [] for dag_id in DAGS}
    # per DAG: (seconds since trigger, whether a worker ran the wait task then) while it was deferred
    slot_samples: dict[str, list[tuple[float, bool]]] = {dag_id: [] for dag_id in DAGS}
    open_files: dict[str, dict[str, bool]] = {name: {} for name in cluster.worker_names}
    ids = cluster.all_ids()

    def watch() -> None:
        deferred = {}
        for dag_id, run_id in run_ids.items():
            response = cluster.request(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{WAIT_TASK}"
            )
            if response.status_code != 200:
                continue
            ti = response.json()
            if not states[dag_id] or states[dag_id][-1] != ti["state"]:
                states[dag_id].append(ti["state"])
            if ti["state"] == "deferred":
                deferred[dag_id] = ti
                if ti.get("trigger") and len(deferred_views[dag_id]) < 3:
                    deferred_views[dag_id].append(ti)
        if deferred:
            active = json.dumps(cluster.celery_active())
            for dag_id, ti in deferred.items():
                slot_samples[dag_id].append((round(time.monotonic() - started, 1), ti["id"] in active))
        for name in cluster.worker_names:
            for target, has_data in _open_files(cluster, name, ids).items():
                open_files[name][target] = open_files[name].get(target, False) or has_data

    ended = cluster.wait_runs([(dag_id, run_id) for dag_id, run_id in run_ids.items()], RUN_TIMEOUT, watch)
    return SimpleNamespace(
        run_ids=run_ids,
        confs=confs,
        runs={dag_id: ended[(dag_id, run_id)] for dag_id, run_id in run_ids.items()},
        seconds=round(time.monotonic() - started, 1),
        states=states,
        deferred_views=deferred_views,
        slot_samples=slot_samples,
        open_files=open_files,
    )


def _diagnostics(cluster: CeleryCluster, runs: SimpleNamespace) -> str:
    parts = []
    for dag_id, run_id in runs.run_ids.items():
        for path in cluster.task_log_files(dag_id, run_id):
            parts.append(
                f"--- {path.relative_to(cluster.home)} ---\n"
                + "\n".join(path.read_text(errors="replace").splitlines()[-40:])
            )
    return "\n".join(parts) + "\n" + cluster.tails()


# ---------------------------------------------------------------------------- the deployment
def test_every_component_runs_apart_on_loopback_only(cluster: CeleryCluster) -> None:
    health = cluster.api("GET", "/api/v2/monitor/health")
    assert all(
        health[part]["status"] == "healthy"
        for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    )
    pings = {name for reply in cluster.celery().control.ping(timeout=2.0) for name in reply}
    assert pings == {"celery@w1", "celery@w2"}, pings
    groups = {name: os.getpgid(c.pid) for name, c in cluster.components.items()}
    assert sorted(groups) == sorted(["api-server", "scheduler", "dag-processor", "triggerer", "w1", "w2"])
    assert len(set(groups.values())) == len(groups), groups  # each in a process group of its own
    sockets = cluster.listening()
    assert not [s for s in sockets if s[1] not in ("127.0.0.1", "::1")], (
        f"listening beyond loopback: {sockets}"
    )
    ports = {port for _, _, port in sockets}
    assert {cluster.port, cluster.redis.port, cluster.postgres.port, cluster.seaweed.ports["s3"]} <= ports, (
        sockets
    )
    assert not [
        pid for pid in cluster.pids() if "serve-logs" in _cmdline(pid).replace("--skip-serve-logs", "")
    ], "a log server is running"
    jobs = cluster.api("GET", "/api/v2/jobs", params={"is_alive": "true", "limit": 100})["jobs"]
    assert {(j["job_type"], j["hostname"]) for j in jobs} >= {
        ("SchedulerJob", "scheduler"),
        ("TriggererJob", "triggerer"),
    }, jobs


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------- the runs
def test_both_example_dags_succeed(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    for dag_id, run_id in runs.run_ids.items():
        states = cluster.task_states(dag_id, run_id)
        assert runs.runs[dag_id]["state"] == "success", f"{dag_id}: {states}\n{_diagnostics(cluster, runs)}"
        assert states == {SUBMIT_TASK: "success", WAIT_TASK: "success", DOWNLOAD_TASK: "success"}
        assert runs.runs[dag_id]["conf"] == runs.confs[dag_id]
    print(
        f"\nboth runs ended {runs.seconds} s after the first trigger; waits (s since trigger, in a slot): "
        f"{runs.slot_samples}"
    )


def test_tasks_ran_on_both_workers(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    hostnames = {
        (dag_id, ti["task_id"]): ti["hostname"]
        for dag_id, run_id in runs.run_ids.items()
        for ti in cluster.task_instances(dag_id, run_id)
    }
    assert set(hostnames.values()) == {"w1", "w2"}, hostnames
    # the same, as the metadata DB has it
    rows = cluster.sql(
        "SELECT dag_id, task_id, hostname, queue FROM task_instance WHERE run_id = ANY(%s)",
        (list(runs.run_ids.values()),),
    )
    assert {(r["dag_id"], r["task_id"]): r["hostname"] for r in rows} == hostnames
    assert {r["queue"] for r in rows} == {"default"}


def test_sensor_waited_in_the_triggerer_without_a_worker_slot(
    cluster: CeleryCluster, runs: SimpleNamespace
) -> None:
    for dag_id, run_id in runs.run_ids.items():
        assert "deferred" in runs.states[dag_id], (
            f"{dag_id}: {WAIT_TASK} never seen deferred: {runs.states[dag_id]}"
        )
        assert runs.states[dag_id][-1] == "success", runs.states[dag_id]
        events = cluster.api(
            "GET",
            "/api/v2/eventLogs",
            params={"dag_id": dag_id, "run_id": run_id, "task_id": WAIT_TASK, "order_by": "id", "limit": 100},
        )["event_logs"]
        assert "deferred" in [e["event"] for e in events], events

        # the trigger ran in the triggerer this cluster started
        assert runs.deferred_views[dag_id], f"{dag_id}: {WAIT_TASK} deferred, but never seen with its trigger"
        view = runs.deferred_views[dag_id][-1]
        assert view["trigger"]["classpath"] == TRIGGER_CLASSPATH, view["trigger"]
        job = view["triggerer_job"]
        assert job and job["job_type"] == "TriggererJob" and job["hostname"] == "triggerer", view
        wait_dir = cluster.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={WAIT_TASK}"
        assert (wait_dir / f"attempt=1.log.trigger.{job['id']}.log").is_file(), sorted(os.listdir(wait_dir))
        records = cluster.task_log(dag_id, run_id, WAIT_TASK)
        by_trigger = [r for r in records if str(r.get("logger", "")).endswith(".XComplianceJobTrigger")]
        assert any("in_progress" in str(r.get("event")) for r in by_trigger), records
        fired = [r for r in records if r.get("event") == "Trigger fired event"]
        assert len(fired) == 1 and "'status': 'complete'" in str(fired[0].get("result")), fired

        # no worker slot: once the deferring try has wound down, no worker runs the task while it waits
        samples = runs.slot_samples[dag_id]
        assert samples, f"{dag_id}: Celery never asked while {WAIT_TASK} was deferred"
        slot = [running for _, running in samples]
        wound_down = slot.index(False) if False in slot else len(slot)
        assert not any(slot[wound_down:]), f"{dag_id}: a worker ran the task again while it waited: {samples}"
        assert len(slot) - wound_down >= 3, f"{dag_id}: too few samples of the wait without a slot: {samples}"


def test_results_are_byte_exact(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    keys = cluster.object_keys()
    for dag_id, run_id in runs.run_ids.items():
        job_type = DAGS[dag_id]
        job_id = str(cluster.xcom(dag_id, run_id, SUBMIT_TASK))
        summary = cluster.xcom(dag_id, run_id, DOWNLOAD_TASK)
        url = f"{cluster.data_url}/out/{job_type}/{job_type}-{job_id}.jsonl"
        assert summary["path"] == url, summary
        landed = cluster.read_object(url)
        served = cluster.emulator.results_path(job_id).read_bytes()  # what X's storage served, decompressed
        assert landed == served, f"{job_type}: {len(landed)} bytes landed, {len(served)} served"
        expected = cluster.expected_results(job_type)
        assert expected and [json.loads(line) for line in landed.splitlines()] == expected
        assert summary["lines"] == len(expected) and summary["bytes"] == len(landed), summary
        assert cluster.emulator.job(job_id)["status"] == "complete"
        assert f"out/{job_type}/{job_type}-{job_id}.jsonl" in keys
    assert len([k for k in keys if k.startswith("out/")]) == len(DAGS), keys


def test_nothing_passed_through_a_worker_disk(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    ids = cluster.all_ids()
    # the check can see data: the generated ID files, outside the cluster, hold it
    assert cluster.files_with_data(cluster.data, ids), "the content check finds nothing even in the ID files"
    for name in cluster.worker_names:
        scratch = cluster.scratch(name)
        environ = cluster.components[name].env  # every process of the worker inherits it
        assert (environ["TMPDIR"], environ["HOME"]) == (str(scratch / "tmp"), str(scratch / "home"))
        seen = 0
        for pid in cluster.pids(name):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    shown = b"\0" + f.read() + b"\0"
            except OSError:  # ended meanwhile
                continue
            if b"\0XC_CLUSTER=" in shown:  # (setproctitle leaves some processes' environ unreadable)
                assert f"\0TMPDIR={scratch / 'tmp'}\0".encode() in shown, pid
                seen += 1
        assert seen, f"no process of {name} shows its environment"
        assert not cluster.files_with_data(scratch, ids), f"{name} kept data on its disk"
        # nor while the tasks ran: what it held open in its scratch or temporary space (such as
        # multiprocessing's pymp-* files) never held any
        with_data = sorted(f for f, has_data in runs.open_files[name].items() if has_data)
        assert not with_data, f"{name} held data in local files during the runs: {with_data}"
    # not in the shared AIRFLOW_HOME (task logs, ...) either: IDs and results are in S3 only
    assert not cluster.files_with_data(cluster.home, ids)
    assert {"in/tweets.txt", "in/users.txt"} <= set(cluster.object_keys())


# ---------------------------------------------------------------------------- fault handles
def test_a_killed_worker_comes_back(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    old = cluster.components["w1"].pid
    assert cluster.kill_worker("w1") == -signal.SIGKILL
    assert not [pid for pid in cluster.pids() if pid == old]
    pings = {name for reply in cluster.celery().control.ping(timeout=1.0) for name in reply}
    assert pings == {"celery@w2"}, pings
    cluster.start_worker("w1")
    cluster.wait_workers(["w1"], timeout=120)
    assert cluster.components["w1"].starts == 2 and cluster.components["w1"].pid != old


def test_the_triggerer_restarts(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    old = cluster.components["triggerer"].pid
    cluster.restart_triggerer()
    assert (
        cluster.components["triggerer"].pid != old and cluster.components["triggerer"].exits[-1] is not None
    )
    jobs = cluster.api("GET", "/api/v2/jobs", params={"job_type": "TriggererJob", "is_alive": "true"})["jobs"]
    assert [j["hostname"] for j in jobs] == ["triggerer"], jobs


# ---------------------------------------------------------------------------- after the stop
def test_stopping_leaves_nothing_running(cluster: CeleryCluster, runs: SimpleNamespace) -> None:
    report = cluster.stop()
    assert not report["strays"] and not report["left"], report
    assert all(code is not None for code in report["returncodes"].values()), report
    assert not cluster.pids()
    assert cluster.redis.proc.poll() is not None
    leftovers = report["leftovers"]
    print(f"\ncluster start {cluster.timings}, stop {report['seconds']} s; left by a leader: {leftovers}")
