"""A real deployment test: ``airflow standalone`` runs the example DAG ``x_compliance_tweets``.

Airflow 3.3 (scheduler, dag-processor, api-server and triggerer; SQLite; LocalExecutor) runs as
``airflow standalone`` on free loopback ports, against the X API emulator (in this process) and a
real SeaweedFS S3 server. The test drives Airflow only the way a user does: through its REST API
(log in for a JWT, unpause, trigger a run with a conf, poll). Then it checks that

1. ``compliance.wait`` really waited in the triggerer: the REST API showed it ``deferred`` on an
   ``XComplianceJobTrigger`` held by the TriggererJob, its state history (the event log) has
   ``deferred``, and the triggerer ran the trigger;
2. the run succeeded;
3. the results landed in S3, line for line what the emulator's ground truth says;
4. the Asset event of ``x-compliance://tweets/results`` carries the download summary;

and that the bearer token of the X connection appears in no log file nor in the output.

Things about ``airflow standalone`` on 3.3.2 that this relies on (see also
/work/shared/reference/airflow-3-provider.md):

* It starts its components as ``airflow <component>`` from ``PATH``. Here ``PATH`` starts with a
  shim directory whose ``airflow`` adds ``--skip-serve-logs`` to ``scheduler`` and ``triggerer``:
  their log servers bind every interface (uvicorn ``host=""``, not configurable), and the API
  server reads the task logs from the local files anyway.
* ``[core] execution_api_server_url`` must follow ``[api] port`` or every task fails.
* ``[scheduler] use_job_schedule = False``: the example DAG is ``@weekly`` without a start date,
  so unpausing it would also start a scheduled run at once (catchup=False runs the latest
  interval), which would compete with the triggered run (``max_active_runs=1``, one active job).
* Stopping: SIGTERM to its process group ends every component in a few seconds (standalone
  itself dies at once, its components each get the signal too). SIGINT (what Ctrl-C sends to
  the group) is worse: the scheduler was still running 40 s later. Anything still running
  with this AIRFLOW_HOME is SIGKILLed at the end, and the test fails if something was.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from tests.support import AirflowEnv, SeaweedS3, free_ports
from tests.support.procs import die_with_parent

REPO = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "example_dags"
DAG_ID = "x_compliance_tweets"
SUBMIT_TASK = "compliance.submit"
WAIT_TASK = "compliance.wait"
DOWNLOAD_TASK = "compliance.download"
TRIGGER_CLASSPATH = "airflow_provider_xcompliance.triggers.compliance.XComplianceJobTrigger"
ASSET_URI = "x-compliance://tweets/results"
ID_COUNT = 20_000

# The emulator's clock runs 100x: a job takes 3000 emulated s = 30 real s after its upload. Long
# enough that the wait task surely finds it in progress (and defers) even on a slow machine;
# the trigger then checks once at once and again after the DAG's poll_interval (60 s).
EMULATOR_SPEED = 100
PROCESSING_SECONDS = 3000

STARTUP_TIMEOUT = 120  # standalone up, API healthy, every component heartbeating
PARSE_TIMEOUT = 90  # the DAG shows up in the API
RUN_TIMEOUT = 300  # the run reaches a terminal state
STOP_TIMEOUT = 20  # from SIGTERM to SIGKILL

TERMINAL_RUN_STATES = {"success", "failed"}


# ---------------------------------------------------------------------------- processes
def _processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of the processes (readable by us) whose environment has ``name=value``."""
    needle = f"{name}={value}".encode() + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read() + b"\0"
        except OSError:  # gone, or not ours
            continue
        if b"\0" + needle in b"\0" + environ:
            pids.append(int(entry))
    return pids


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in (b"Z", b"X"):
            members.append(int(entry))
    return members


class Standalone:
    """``airflow standalone`` in its own process group, its output in a file, and a REST client."""

    def __init__(self, airflow: AirflowEnv, env: dict[str, str], port: int, output_path: Path) -> None:
        self.airflow = airflow
        self.env = env
        self.port = port
        self.output_path = output_path
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies for loopback
        self._output = None
        self.stop_report: dict[str, Any] = {}

    # -- lifecycle
    def start(self) -> None:
        self._output = open(self.output_path, "wb")
        self.proc = subprocess.Popen(
            [self.airflow.airflow_bin, "standalone"],
            cwd=str(self.airflow.home),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def stop(self) -> dict[str, Any]:
        """SIGTERM the process group, SIGKILL what is left after a while; then SIGKILL anything
        still running with this AIRFLOW_HOME (a process that left the group)."""
        report: dict[str, Any] = {"signals": []}
        t0 = time.monotonic()
        if self.proc is not None:
            pgid = self.proc.pid
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10)):
                self.proc.poll()  # reap the leader, or it counts as alive
                if not _group_members(pgid):
                    break
                report["signals"].append(signal.Signals(sig).name)
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    self.proc.poll()
                    if not _group_members(pgid):
                        break
                    time.sleep(0.2)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILLed above
                pass
            report["returncode"] = self.proc.returncode
        # Anything that left the group (setsid) but still runs with our AIRFLOW_HOME.
        strays = _processes_with_env("AIRFLOW_HOME", str(self.airflow.home))
        report["strays"] = {pid: _cmdline(pid) for pid in strays}
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _processes_with_env("AIRFLOW_HOME", str(self.airflow.home)):
            time.sleep(0.2)
        report["left"] = {
            pid: _cmdline(pid) for pid in _processes_with_env("AIRFLOW_HOME", str(self.airflow.home))
        }
        report["seconds"] = round(time.monotonic() - t0, 1)
        if self._output is not None:
            self._output.close()
            self._output = None
        self.stop_report = report
        return report

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- output
    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 120) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    # -- REST
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        """Call the REST API; the decoded JSON answer, or AssertionError on another status."""
        response = self.request(method, path, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, (
            f"{method} {path}: HTTP {response.status_code} (expected {expect}): {response.text[:2000]}"
        )
        return response.json() if response.content else None

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        """Until ``/api/v2/monitor/health`` says the DB, scheduler, triggerer and dag-processor are healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"airflow standalone exited with {self.proc.returncode}\n{self.tail()}")
            try:
                response = self.request("GET", "/api/v2/monitor/health", timeout=5)
                last = response.status_code, response.text[:500]
                if response.status_code == 200:
                    health = response.json()
                    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                        return health
            except requests.RequestException as error:
                last = repr(error)
            time.sleep(1)
        raise AssertionError(f"Airflow not healthy after {timeout} s (last: {last})\n{self.tail()}")

    def login(self, timeout: float = 30) -> str:
        """The simple auth manager's admin password (generated) -> a JWT from ``POST /auth/token``."""
        password_file = self.airflow.home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + timeout
        while not password_file.exists():
            assert time.monotonic() < deadline, f"{password_file} never appeared\n{self.tail()}"
            time.sleep(0.5)
        passwords = json.loads(password_file.read_text())
        username, password = next(iter(passwords.items()))
        response = self.request("POST", "/auth/token", json={"username": username, "password": password})
        assert response.status_code == 201, f"POST /auth/token: HTTP {response.status_code}: {response.text[:500]}"
        jwt = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {jwt}"
        # an unauthenticated call is refused: the token is what lets us in
        anonymous = requests.get(self.base_url + f"/api/v2/dags/{DAG_ID}", timeout=10,
                                 proxies={"http": "", "https": ""})
        assert anonymous.status_code == 401, f"unauthenticated GET answered {anonymous.status_code}"
        return jwt


def _airflow_shim(directory: Path, real_airflow: str) -> Path:
    """A directory whose ``airflow`` runs the real one, adding ``--skip-serve-logs`` to the
    scheduler and the triggerer (their log servers would listen on every interface)."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "airflow"
    shim.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f'  scheduler|triggerer) exec "{real_airflow}" "$@" --skip-serve-logs ;;\n'
        "esac\n"
        f'exec "{real_airflow}" "$@"\n'
    )
    shim.chmod(0o755)
    return directory


def _log_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "logs").rglob("*") if p.is_file())


def _task_logs(home: Path, run_id: str, lines: int = 80) -> str:
    """The tails of this run's task (and trigger) log files, for failure messages."""
    parts = []
    for path in _log_files(home):
        if f"dag_id={DAG_ID}" in str(path) and run_id in str(path):
            text = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path.relative_to(home)} ---\n" + "\n".join(text[-lines:]))
    return "\n".join(parts) or "(no task log files)"


# ---------------------------------------------------------------------------- the test
@pytest.mark.timeout(600)
def test_standalone_runs_example_dag_with_deferral_to_the_triggerer(
    tmp_path: Path, seaweed: SeaweedS3, s3_bucket: str
) -> None:
    t_start = time.monotonic()
    timings: dict[str, float] = {}

    def mark(name: str) -> None:
        timings[name] = round(time.monotonic() - t_start, 1)

    token = "xct-" + secrets.token_hex(20)

    # The data: 20,000 tweet IDs in S3, and what X (the emulator) will say about them.
    ids_file, truth_file = tmp_path / "tweets.txt", tmp_path / "truth.csv"
    generate_dataset(ID_COUNT, "tweets", ids_file, truth_file, seed=1)
    ids = ids_file.read_text().splitlines()
    expected = list(expected_results(ids, "tweets", ground_truth=truth_file))
    assert expected, "the generated dataset flags no tweet: nothing to compare"
    s3 = seaweed.client()
    s3.upload_file(str(ids_file), s3_bucket, "ids/tweets.txt")
    data_url = f"s3://seaweed@{s3_bucket}"
    conf = {
        "job_type": "tweets",
        "ids_path": f"{data_url}/ids/tweets.txt",
        "results_path": f"{data_url}/results/",
    }

    airflow = AirflowEnv(tmp_path / "airflow_home")
    home = airflow.home
    api_port, worker_log_port, trigger_log_port = free_ports(3)
    shim_dir = _airflow_shim(tmp_path / "shim-bin", airflow.airflow_bin)

    with XComplianceEmulator(
        token=token,
        data_dir=tmp_path / "emulator",
        speed=EMULATOR_SPEED,
        processing_seconds=PROCESSING_SECONDS,
        ground_truth=truth_file,
    ) as emu:
        env = airflow.env(
            {
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
                    {"conn_type": "x_compliance", "host": emu.base_url, "password": token}
                ),
                **seaweed.connection_env("seaweed"),
                "X_COMPLIANCE_DATA_URL": data_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
            },
            dags_folder=DAGS_FOLDER,
        )
        env["PATH"] = os.pathsep.join([str(shim_dir), env["PATH"]])

        standalone = Standalone(airflow, env, api_port, tmp_path / "standalone.out")
        run_id: str | None = None
        states_seen: list[str] = []
        deferred_views: list[dict[str, Any]] = []

        def diagnostics() -> str:
            parts = [f"timings: {timings}", f"wait states seen: {states_seen}"]
            try:
                parts.append(f"emulator jobs: {json.dumps(emu.jobs(), default=str)[:3000]}")
            except Exception as error:  # noqa: BLE001 - diagnostics only
                parts.append(f"emulator jobs: {error!r}")
            if run_id is not None:
                parts.append(_task_logs(home, run_id))
            parts.append(f"--- airflow standalone output (tail) ---\n{standalone.tail(150)}")
            return "\n".join(parts)

        try:
            standalone.start()
            standalone.wait_healthy(STARTUP_TIMEOUT)
            mark("healthy")
            standalone.login()

            # The DAG is parsed (and paused, as a new DAG is by default): unpause it like the UI does.
            deadline = time.monotonic() + PARSE_TIMEOUT
            while standalone.request("GET", f"/api/v2/dags/{DAG_ID}").status_code != 200:
                if time.monotonic() > deadline:
                    errors = standalone.request("GET", "/api/v2/importErrors").text[:3000]
                    pytest.fail(f"DAG {DAG_ID} not parsed after {PARSE_TIMEOUT} s; import errors: {errors}\n"
                                f"{diagnostics()}")
                time.sleep(1)
            mark("parsed")
            dag = standalone.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
            assert dag["is_paused"] is False

            # Trigger a run with a conf, as the UI's "Trigger" dialog does.
            run = standalone.api(
                "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", expect=200,
                json={"logical_date": None, "conf": conf},
            )
            run_id = run["dag_run_id"]
            assert run["conf"] == conf
            mark("triggered")

            # Poll the run, and watch the wait task while it is deferred.
            deadline = time.monotonic() + RUN_TIMEOUT
            ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{WAIT_TASK}"
            state = run["state"]
            while True:
                state = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
                response = standalone.request("GET", ti_path)
                if response.status_code == 200:
                    ti = response.json()
                    if not states_seen or states_seen[-1] != ti["state"]:
                        states_seen.append(ti["state"])
                        if ti["state"] == "deferred" and "deferred" not in timings:
                            mark("deferred")
                    if ti["state"] == "deferred" and ti.get("trigger") and len(deferred_views) < 3:
                        deferred_views.append(ti)
                if state in TERMINAL_RUN_STATES:
                    break
                assert standalone.alive(), f"airflow standalone died\n{diagnostics()}"
                assert time.monotonic() < deadline, (
                    f"run {run_id} still {state} after {RUN_TIMEOUT} s\n{diagnostics()}"
                )
                time.sleep(1)
            mark("run_done")

            task_instances = {
                ti["task_id"]: ti
                for ti in standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")[
                    "task_instances"
                ]
            }
            # 2. the run succeeded
            assert state == "success", (
                f"run {run_id} ended {state}; tasks "
                f"{ {k: v['state'] for k, v in task_instances.items()} }\n{diagnostics()}"
            )
            assert {k: v["state"] for k, v in task_instances.items()} == {
                SUBMIT_TASK: "success", WAIT_TASK: "success", DOWNLOAD_TASK: "success",
            }, diagnostics()

            # 1. the wait was deferred to the triggerer, which ran XComplianceJobTrigger
            assert "deferred" in states_seen, f"{WAIT_TASK} never seen deferred\n{diagnostics()}"
            assert deferred_views, f"{WAIT_TASK} deferred, but never with its trigger\n{diagnostics()}"
            view = deferred_views[-1]
            assert view["trigger"]["classpath"] == TRIGGER_CLASSPATH, view["trigger"]
            assert view["triggerer_job"] is not None, f"no triggerer took the trigger: {view}"
            assert view["triggerer_job"]["job_type"] == "TriggererJob", view["triggerer_job"]
            assert view["try_number"] == 1 and task_instances[WAIT_TASK]["try_number"] == 1

            events = standalone.api(
                "GET", "/api/v2/eventLogs",
                params={"dag_id": DAG_ID, "run_id": run_id, "task_id": WAIT_TASK, "order_by": "id", "limit": 100},
            )["event_logs"]
            event_names = [e["event"] for e in events]
            assert "deferred" in event_names, f"event log of {WAIT_TASK}: {event_names}\n{diagnostics()}"

            # The triggerer writes what the trigger logs next to the task's log, in
            # attempt=1.log.trigger.<triggerer job id>.log; the API merges it into the task log.
            triggerer_id = view["triggerer_job"]["id"]
            wait_dir = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={WAIT_TASK}"
            trigger_log = wait_dir / f"attempt=1.log.trigger.{triggerer_id}.log"
            assert trigger_log.is_file(), f"no {trigger_log.name} in {sorted(os.listdir(wait_dir))}"
            log = standalone.api(
                "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{WAIT_TASK}/logs/1",
                params={"full_content": "true"}, headers={"Accept": "application/json"},
            )
            records = [r for r in log["content"] if isinstance(r, dict)]
            by_trigger = [r for r in records if str(r.get("logger", "")).endswith(".XComplianceJobTrigger")]
            assert any("in_progress" in str(r.get("event")) for r in by_trigger), (
                f"no progress logged by XComplianceJobTrigger in the task log: {records}"
            )
            fired = [r for r in records if r.get("event") == "Trigger fired event"]
            assert len(fired) == 1 and "'status': 'complete'" in str(fired[0].get("result")), fired
            events_in_order = [r.get("event") for r in records]
            assert any("deferring until it ends" in str(e) for e in events_in_order), events_in_order

            # 3. the results landed in S3, line for line
            jobs = emu.jobs()
            assert len(jobs) == 1, jobs
            job_id = str(jobs[0]["id"])
            assert jobs[0]["status"] == "complete", jobs[0]
            listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix="results/").get("Contents", [])
            keys = [o["Key"] for o in listing]
            assert keys == [f"results/tweets-{job_id}.jsonl"], keys
            body = s3.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read().decode()
            lines = body.splitlines()
            assert body.endswith("\n")
            landed = [json.loads(line) for line in lines]
            assert len(landed) == len(expected), (len(landed), len(expected))
            for number, (got, want) in enumerate(zip(landed, expected), 1):
                assert got == want, f"line {number} of the results: {got} != {want}"
            mark("checked_s3")

            # 4. the Asset event carries the summary of what landed
            asset_events = standalone.api(
                "GET", "/api/v2/assets/events",
                params={"source_dag_id": DAG_ID, "source_run_id": run_id, "limit": 100},
            )["asset_events"]
            ours = [e for e in asset_events if e["uri"] == ASSET_URI]
            assert len(ours) == 1, f"asset events of run {run_id}: {asset_events}"
            event = ours[0]
            assert event["source_task_id"] == DOWNLOAD_TASK
            extra = event["extra"]
            assert extra["path"] == f"{data_url}/results/tweets-{job_id}.jsonl", extra
            assert extra["lines"] == len(lines), extra
            assert extra["distinct_ids"] == len({r["id"] for r in landed}), extra
            assert extra["by_reason"] == dict(Counter(r["reason"] for r in landed)), extra
            mark("checked_asset")
        finally:
            stop_report = standalone.stop()
            mark("stopped")

    # Everything stopped: nothing of this Airflow is left running.
    assert not stop_report["left"], f"processes survived the stop: {stop_report}"
    assert not stop_report["strays"], f"processes escaped the process group: {stop_report}"

    # The bearer token is nowhere in the logs or the output.
    leaks = [str(p.relative_to(home)) for p in _log_files(home) if token in p.read_text(errors="replace")]
    assert not leaks, f"the bearer token appears in {leaks}"
    assert token not in standalone.output(), "the bearer token appears in airflow standalone's output"
    assert _log_files(home), "no log files at all: the leak check would prove nothing"
    assert any(f"dag_id={DAG_ID}" in str(p) for p in _log_files(home)), "no task log files"

    print(f"\ntimings (s from test start): {timings}; stop: {stop_report}")
