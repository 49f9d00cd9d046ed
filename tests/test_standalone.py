"""A real deployment test: ``airflow standalone`` runs the example DAGs ``x_compliance_tweets``
and ``x_compliance_consumer``.

Airflow 3.3 (scheduler, dag-processor, api-server and triggerer; SQLite; LocalExecutor) runs as
``airflow standalone`` on free loopback ports, against the X API emulator (in this process) and a
real SeaweedFS S3 server. The test drives Airflow only the way a user does: through its REST API
(log in for a JWT, unpause, trigger a run with a conf, poll). Unpausing the ``@weekly`` tweets
DAG also starts its scheduled run at once (see below), which uses the DAG's default params (from
``X_COMPLIANCE_DATA_URL``); the triggered run, with other paths in its conf, runs after it
(``max_active_runs=1``). Then it checks that

1. ``compliance.wait`` of the triggered run really waited in the triggerer: the REST API showed
   it ``deferred`` on an ``XComplianceJobTrigger`` held by the TriggererJob, its state history
   (the event log) has ``deferred``, and the triggerer ran the trigger;
2. both runs succeeded, one after the other;
3. the results landed in S3 where each run was told to put them, line for line what the
   emulator's ground truth says;
4. the Asset event of ``x-compliance://tweets/results`` carries the download summary;
5. the Asset consumer ``x_compliance_consumer`` ran on those events: its ``react`` task
   succeeded and returned (XCom) the path and line count of each summary;
6. what the UI builds its forms from: the connection form of ``x_compliance`` (relabelled
   fields, the extra fields of ``conn-fields``), the provider in the providers list, the
   DAG's params (the "Trigger" form), and the connection form's "Test" button (a good token
   passes, a wrong one fails with the 401);

and that the bearer token of the X connection appears in no log file nor in the output.

Things about ``airflow standalone`` on 3.3.2 that this relies on (see also
/work/shared/reference/airflow-3-provider.md):

* It starts its components as ``airflow <component>`` from ``PATH``. Here ``PATH`` starts with a
  shim directory whose ``airflow`` adds ``--skip-serve-logs`` to ``scheduler`` and ``triggerer``:
  their log servers bind every interface (uvicorn ``host=""``, not configurable), and the API
  server reads the task logs from the local files anyway.
* ``[core] execution_api_server_url`` must follow ``[api] port`` or every task fails.
* The scheduled run: the example DAG is ``@weekly`` without a start date and ``catchup=False``,
  so unpausing it starts a run of the latest interval at once (``CronTriggerTimetable`` with
  catchup off always schedules the latest past tick). No 3.3.2 setting stops that run but
  keeps Asset-triggered runs: ``[scheduler] use_job_schedule = False`` skips
  ``_create_dagruns_for_dags`` altogether, which creates both kinds;
  ``create_cron_data_intervals`` only swaps in ``CronDataIntervalTimetable``, which also runs
  the latest complete interval at once. So the test lets that run happen and makes it valid:
  the IDs are also at the default ``<X_COMPLIANCE_DATA_URL>/ids/tweets.txt``, and it must
  succeed too. It is created at once on unpause and its ``run_after`` is the past weekly tick,
  so it runs first; the triggered run is queued behind it.
* The connection form's metadata is served by the UI router, ``GET /ui/connections/hook_meta``
  (``/api/v2/connections/hook_meta`` would be a connection named ``hook_meta``). "Test"
  (``POST /api/v2/connections/test``) runs the hook's ``test_connection()`` in the API server
  and answers 403 unless ``[core] test_connection = Enabled``.
* ``GET /api/v2/assets/events`` (and a run's ``upstreamAssetEvents``) answers 500 while a run
  that one of the listed events created is still queued: ``DagRunAssetReference.start_date``
  must be a datetime, and a queued run has none. So the events are read once every consumer
  run has finished.
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
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_xcompliance import __version__
from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from tests.support import AirflowEnv, SeaweedS3, free_ports
from tests.support.procs import die_with_parent

REPO = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "example_dags"
DAG_ID = "x_compliance_tweets"
CONSUMER_DAG_ID = "x_compliance_consumer"
SUBMIT_TASK = "compliance.submit"
WAIT_TASK = "compliance.wait"
DOWNLOAD_TASK = "compliance.download"
REACT_TASK = "react"
TRIGGER_CLASSPATH = "airflow_provider_xcompliance.triggers.compliance.XComplianceJobTrigger"
HOOK_CLASSPATH = "airflow_provider_xcompliance.hooks.compliance.XComplianceHook"
PROVIDER_PACKAGE = "airflow-provider-xcompliance"
CONN_TYPE = "x_compliance"
ASSET_URI = "x-compliance://tweets/results"
ID_COUNT = 20_000

# The emulator's clock runs 100x: a job takes 1500 emulated s = 15 real s after its upload. The
# wait task checks the job a few seconds after the upload (task start-up), so it finds it in
# progress and defers, with room to spare on a slow machine; the trigger checks at once, then
# sleeps until the job's estimated_completion (not the DAG's 60 s poll_interval).
EMULATOR_SPEED = 100
PROCESSING_SECONDS = 1500

STARTUP_TIMEOUT = 120  # standalone up, API healthy, every component heartbeating
PARSE_TIMEOUT = 90  # the DAGs show up in the API
SCHEDULE_TIMEOUT = 90  # the scheduled run shows up after unpausing
RUN_TIMEOUT = 300  # both tweets runs reach a terminal state
CONSUMER_TIMEOUT = 120  # the consumer has run on both Asset events
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
        """Call the REST API; the decoded JSON answer, or AssertionError on another status.
        Idempotent calls are repeated on a 5xx: SQLite lets one process write at a time."""
        for _ in range(10 if method in ("GET", "PATCH") else 1):
            response = self.request(method, path, **kwargs)
            if response.status_code < 500:
                break
            time.sleep(1)
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


def _task_logs(home: Path, dag_id: str, run_id: str, lines: int = 80) -> str:
    """The tails of this run's task (and trigger) log files, for failure messages."""
    parts = []
    for path in _log_files(home):
        if f"dag_id={dag_id}" in str(path) and f"run_id={run_id}" in str(path):
            text = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path.relative_to(home)} ---\n" + "\n".join(text[-lines:]))
    return "\n".join(parts) or f"(no task log files of {dag_id} {run_id})"


def _when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)  # 3.11 reads a trailing Z


def _xcom(standalone: Standalone, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """An XCom value as the REST API gives it (its native JSON; decoded if it is JSON text)."""
    entry = standalone.api(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    )
    value = entry["value"]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    return value


def _task_states(standalone: Standalone, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    return {
        ti["task_id"]: ti
        for ti in standalone.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    }


def _wait_parsed(standalone: Standalone, dag_id: str, deadline: float, diagnostics: Any) -> None:
    while standalone.request("GET", f"/api/v2/dags/{dag_id}").status_code != 200:
        if time.monotonic() > deadline:
            errors = standalone.request("GET", "/api/v2/importErrors").text[:3000]
            pytest.fail(f"DAG {dag_id} not parsed after {PARSE_TIMEOUT} s; import errors: {errors}\n"
                        f"{diagnostics()}")
        time.sleep(1)


def _check_connection_form(standalone: Standalone) -> None:
    """What the UI's connection form is built from: the provider-info dict's connection type."""
    hooks = standalone.api("GET", "/ui/connections/hook_meta")
    ours = [h for h in hooks if h["connection_type"] == CONN_TYPE]
    assert len(ours) == 1, f"connection types in the form: {sorted(str(h['connection_type']) for h in hooks)}"
    meta = ours[0]
    assert meta["hook_class_name"] == HOOK_CLASSPATH, meta
    assert meta["hook_name"] == "X Compliance", meta
    fields = meta["standard_fields"]
    assert fields, f"no standard field behaviour for {CONN_TYPE}: {meta}"
    assert fields["password"]["title"] == "Bearer token", fields
    assert fields["password"]["hidden"] is False, fields
    assert fields["host"]["title"] == "API base URL", fields
    assert fields["host"]["placeholder"] == "https://api.x.com", fields
    for hidden in ("login", "port", "url_schema"):
        assert fields[hidden] and fields[hidden]["hidden"] is True, (hidden, fields)
    extra = meta["extra_fields"] or {}
    assert set(extra) == {"timeout", "max_retries", "max_rate_limit_wait"}, extra
    assert "number" in extra["timeout"]["schema"]["type"], extra["timeout"]
    assert "integer" in extra["max_retries"]["schema"]["type"], extra["max_retries"]
    assert "number" in extra["max_rate_limit_wait"]["schema"]["type"], extra["max_rate_limit_wait"]
    for name, field in extra.items():
        assert field["schema"].get("title"), f"extra field {name} has no label: {field}"


def _check_provider_listed(standalone: Standalone) -> None:
    providers = standalone.api("GET", "/api/v2/providers", params={"limit": 1000})["providers"]
    ours = [p for p in providers if p["package_name"] == PROVIDER_PACKAGE]
    assert len(ours) == 1, f"providers: {sorted(p['package_name'] for p in providers)}"
    assert ours[0]["version"] == __version__, ours[0]


def _check_params(standalone: Standalone, defaults: dict[str, str]) -> None:
    """The "Trigger" form is built from the DAG's params, as the DAG details show them."""
    details = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/details")
    params = details["params"] or {}
    assert set(params) == {"job_type", "ids_path", "results_path"}, params
    assert params["job_type"]["value"] == "tweets", params["job_type"]
    assert params["job_type"]["schema"]["enum"] == ["tweets", "users"], params["job_type"]
    for name in ("ids_path", "results_path"):
        assert params[name]["value"] == defaults[name], (name, params[name])
        assert params[name]["schema"]["type"] == "string", (name, params[name])
        assert params[name]["description"], (name, params[name])


def _check_test_connection(standalone: Standalone, base_url: str, token: str) -> None:
    """The connection form's "Test" button: the API server runs the hook's test_connection()."""
    body = {
        "connection_id": "x_compliance_form_test",  # not a stored connection: only what is sent counts
        "conn_type": CONN_TYPE,
        "host": base_url,
        "password": token,
        "extra": json.dumps({"timeout": 10, "max_retries": 1}),
    }
    answer = standalone.api("POST", "/api/v2/connections/test", json=body)
    assert answer["status"] is True, answer
    wrong = standalone.api("POST", "/api/v2/connections/test", json={**body, "password": "xct-wrong-token"})
    assert wrong["status"] is False, wrong
    assert "401" in str(wrong["message"]), wrong


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

    # The data: 20,000 tweet IDs in S3, and what X (the emulator) will say about them. The same
    # IDs twice: where the example DAG looks by default (its scheduled run), and where the
    # triggered run's conf says.
    ids_file, truth_file = tmp_path / "tweets.txt", tmp_path / "truth.csv"
    generate_dataset(ID_COUNT, "tweets", ids_file, truth_file, seed=1)
    ids = ids_file.read_text().splitlines()
    expected = list(expected_results(ids, "tweets", ground_truth=truth_file))
    assert expected, "the generated dataset flags no tweet: nothing to compare"
    s3 = seaweed.client()
    s3.upload_file(str(ids_file), s3_bucket, "ids/tweets.txt")
    s3.upload_file(str(ids_file), s3_bucket, "triggered/ids.txt")
    data_url = f"s3://seaweed@{s3_bucket}"
    defaults = {  # example_dags/x_compliance_tweets.py with X_COMPLIANCE_DATA_URL=data_url
        "job_type": "tweets",
        "ids_path": f"{data_url}/ids/tweets.txt",
        "results_path": f"{data_url}/results/tweets/",
    }
    conf = {
        "job_type": "tweets",
        "ids_path": f"{data_url}/triggered/ids.txt",
        "results_path": f"{data_url}/triggered/results/",
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
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
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
        scheduled_run_id: str | None = None
        consumer_run_ids: list[str] = []
        states_seen: list[str] = []
        deferred_views: list[dict[str, Any]] = []

        def diagnostics() -> str:
            parts = [f"timings: {timings}", f"wait states seen: {states_seen}"]
            try:
                parts.append(f"emulator jobs: {json.dumps(emu.jobs(), default=str)[:3000]}")
            except Exception as error:  # noqa: BLE001 - diagnostics only
                parts.append(f"emulator jobs: {error!r}")
            for dag_id, some_run_id in [(DAG_ID, scheduled_run_id), (DAG_ID, run_id)] + [
                (CONSUMER_DAG_ID, r) for r in consumer_run_ids
            ]:
                if some_run_id is not None:
                    parts.append(_task_logs(home, dag_id, some_run_id))
            parts.append(f"--- airflow standalone output (tail) ---\n{standalone.tail(150)}")
            return "\n".join(parts)

        try:
            standalone.start()
            standalone.wait_healthy(STARTUP_TIMEOUT)
            mark("healthy")
            standalone.login()

            # The DAGs are parsed (and paused, as a new DAG is by default): unpause them like the
            # UI does; the consumer first, so that it is listening before any download.
            deadline = time.monotonic() + PARSE_TIMEOUT
            for dag_id in (CONSUMER_DAG_ID, DAG_ID):
                _wait_parsed(standalone, dag_id, deadline, diagnostics)
            mark("parsed")
            consumer = standalone.api("PATCH", f"/api/v2/dags/{CONSUMER_DAG_ID}", json={"is_paused": False})
            assert consumer["is_paused"] is False
            dag = standalone.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
            assert dag["is_paused"] is False

            # Unpausing the @weekly DAG starts its scheduled run (the latest weekly tick) at once.
            deadline = time.monotonic() + SCHEDULE_TIMEOUT
            while True:
                scheduled_runs = standalone.api(
                    "GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"}
                )["dag_runs"]
                if scheduled_runs:
                    break
                assert time.monotonic() < deadline, (
                    f"no scheduled run {SCHEDULE_TIMEOUT} s after unpausing {DAG_ID}\n{diagnostics()}"
                )
                time.sleep(0.5)
            assert len(scheduled_runs) == 1, scheduled_runs
            scheduled_run_id = scheduled_runs[0]["dag_run_id"]
            assert scheduled_runs[0]["conf"] in ({}, None), scheduled_runs[0]
            mark("scheduled")

            # Trigger a run with a conf, as the UI's "Trigger" dialog does. SQLite lets only one
            # process write at a time, so the API server may answer 500 ("Database error") while
            # the scheduler writes: try again under the same run id (409 = an earlier try got in).
            wanted_run_id = f"manual__test_{uuid.uuid4().hex[:8]}"
            for _ in range(10):
                response = standalone.request(
                    "POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                    json={"dag_run_id": wanted_run_id, "logical_date": None, "conf": conf},
                )
                if response.status_code < 500:
                    break
                time.sleep(1)
            if response.status_code == 409:
                run = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{wanted_run_id}")
            else:
                assert response.status_code == 200, f"trigger: HTTP {response.status_code}: {response.text[:2000]}"
                run = response.json()
            assert run["dag_run_id"] == wanted_run_id
            run_id = run["dag_run_id"]
            assert run["conf"] == conf
            assert run["run_type"] == "manual", run
            mark("triggered")

            # 6. While the scheduled run runs (ours is queued behind it): what the UI's forms show.
            _check_connection_form(standalone)
            _check_provider_listed(standalone)
            _check_params(standalone, defaults)
            _check_test_connection(standalone, emu.base_url, token)
            mark("checked_ui")

            # Poll the run, and watch the wait task while it is deferred.
            deadline = time.monotonic() + RUN_TIMEOUT
            ti_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{WAIT_TASK}"
            state = run["state"]
            while True:
                state = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
                if state == "running" and "started" not in timings:
                    mark("started")
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

            # 2. both runs succeeded, the scheduled one first
            scheduled = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{scheduled_run_id}")
            scheduled_tis = _task_states(standalone, DAG_ID, scheduled_run_id)
            assert scheduled["state"] == "success", (
                f"scheduled run {scheduled_run_id} ended {scheduled['state']}; tasks "
                f"{ {k: v['state'] for k, v in scheduled_tis.items()} }\n{diagnostics()}"
            )
            assert {k: v["state"] for k, v in scheduled_tis.items()} == {
                SUBMIT_TASK: "success", WAIT_TASK: "success", DOWNLOAD_TASK: "success",
            }, diagnostics()
            task_instances = _task_states(standalone, DAG_ID, run_id)
            assert state == "success", (
                f"run {run_id} ended {state}; tasks "
                f"{ {k: v['state'] for k, v in task_instances.items()} }\n{diagnostics()}"
            )
            assert {k: v["state"] for k, v in task_instances.items()} == {
                SUBMIT_TASK: "success", WAIT_TASK: "success", DOWNLOAD_TASK: "success",
            }, diagnostics()
            ours = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
            assert _when(scheduled["end_date"]) <= _when(ours["start_date"]), (scheduled, ours)

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

            # 3. the results landed in S3 where each run was told, line for line
            job_id = str(_xcom(standalone, DAG_ID, run_id, SUBMIT_TASK))
            scheduled_job_id = str(_xcom(standalone, DAG_ID, scheduled_run_id, SUBMIT_TASK))
            jobs = {str(j["id"]): j for j in emu.jobs()}
            assert set(jobs) == {job_id, scheduled_job_id} and job_id != scheduled_job_id, (
                job_id, scheduled_job_id, jobs,
            )
            assert all(j["status"] == "complete" for j in jobs.values()), jobs
            result_keys = {
                run_id: f"triggered/results/tweets-{job_id}.jsonl",
                scheduled_run_id: f"results/tweets/tweets-{scheduled_job_id}.jsonl",
            }
            listing = s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
            keys = sorted(o["Key"] for o in listing)
            assert keys == sorted(["ids/tweets.txt", "triggered/ids.txt", *result_keys.values()]), keys
            line_counts: dict[str, int] = {}
            landed_by_run: dict[str, list[dict[str, Any]]] = {}
            for some_run_id, key in result_keys.items():
                body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
                lines = body.splitlines()
                assert body.endswith("\n"), key
                landed = [json.loads(line) for line in lines]
                assert len(landed) == len(expected), (key, len(landed), len(expected))
                for number, (got, want) in enumerate(zip(landed, expected), 1):
                    assert got == want, f"line {number} of {key}: {got} != {want}"
                line_counts[some_run_id] = len(lines)
                landed_by_run[some_run_id] = landed
            mark("checked_s3")

            # 5. the consumer ran on the Asset events of both runs. (Read the events only once
            # every consumer run has started: on 3.3.2 GET /api/v2/assets/events, and
            # upstreamAssetEvents, answer 500 while a run an event created is still queued:
            # DagRunAssetReference.start_date must be a datetime, and a queued run has none.)
            consumed: dict[str, list[dict[str, Any]]] = {}  # consumer run id -> the events it ran on
            finished: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + CONSUMER_TIMEOUT
            while True:
                for consumer_run in standalone.api(
                    "GET", f"/api/v2/dags/{CONSUMER_DAG_ID}/dagRuns", params={"limit": 100}
                )["dag_runs"]:
                    consumer_run_id = consumer_run["dag_run_id"]
                    if consumer_run_id not in consumer_run_ids:
                        consumer_run_ids.append(consumer_run_id)
                    if consumer_run["state"] in TERMINAL_RUN_STATES and consumer_run_id not in finished:
                        finished[consumer_run_id] = consumer_run
                        consumed[consumer_run_id] = standalone.api(
                            "GET", f"/api/v2/dags/{CONSUMER_DAG_ID}/dagRuns/{consumer_run_id}/upstreamAssetEvents"
                        )["asset_events"]
                sources = {(e["source_dag_id"], e["source_run_id"]) for events in consumed.values() for e in events}
                if {(DAG_ID, scheduled_run_id), (DAG_ID, run_id)} <= sources and set(finished) == set(
                    consumer_run_ids
                ):
                    break
                assert time.monotonic() < deadline, (
                    f"{CONSUMER_DAG_ID} did not run on the asset events of {scheduled_run_id} and {run_id} "
                    f"within {CONSUMER_TIMEOUT} s; runs seen: {consumer_run_ids}, events consumed: "
                    f"{ {r: [(e['id'], e['source_run_id']) for e in events] for r, events in consumed.items()} }"
                    f"\n{diagnostics()}"
                )
                time.sleep(1)
            mark("consumed")

            # 4. the Asset event carries the summary of what landed
            asset_events: dict[str, dict[str, Any]] = {}
            for some_run_id, key in result_keys.items():
                listed = standalone.api(
                    "GET", "/api/v2/assets/events",
                    params={"source_dag_id": DAG_ID, "source_run_id": some_run_id, "limit": 100},
                )["asset_events"]
                matching = [e for e in listed if e["uri"] == ASSET_URI]
                assert len(matching) == 1, f"asset events of run {some_run_id}: {listed}"
                event = matching[0]
                assert event["source_task_id"] == DOWNLOAD_TASK
                extra = event["extra"]
                landed = landed_by_run[some_run_id]
                assert extra["path"] == f"{data_url}/{key}", extra
                assert extra["lines"] == line_counts[some_run_id], extra
                assert extra["by_reason"] == dict(Counter(r["reason"] for r in landed)), extra
                asset_events[some_run_id] = event
            mark("checked_asset")

            # 5. (cont.) each consumer run succeeded, and its react task returned the path and line
            # count of each event it ran on; together: both summaries, each once.
            summaries = {
                event["id"]: {"path": event["extra"]["path"], "lines": event["extra"]["lines"]}
                for event in asset_events.values()
            }
            returned: list[dict[str, Any]] = []
            for consumer_run_id, consumer_run in finished.items():
                consumer_tis = _task_states(standalone, CONSUMER_DAG_ID, consumer_run_id)
                assert consumer_run["state"] == "success", (
                    f"{CONSUMER_DAG_ID} run {consumer_run_id} ended {consumer_run['state']}; tasks "
                    f"{ {k: v['state'] for k, v in consumer_tis.items()} }\n{diagnostics()}"
                )
                assert consumer_run["run_type"] == "asset_triggered", consumer_run
                assert {k: v["state"] for k, v in consumer_tis.items()} == {REACT_TASK: "success"}, consumer_tis
                event_ids = [e["id"] for e in consumed[consumer_run_id]]
                assert event_ids and set(event_ids) <= set(summaries), (consumer_run_id, event_ids, summaries)
                value = _xcom(standalone, CONSUMER_DAG_ID, consumer_run_id, REACT_TASK)
                assert isinstance(value, list), value
                assert sorted(value, key=json.dumps) == sorted((summaries[i] for i in event_ids), key=json.dumps), (
                    consumer_run_id, event_ids, value,
                )
                returned.extend(value)
            our_summary = {"path": f"{data_url}/{result_keys[run_id]}", "lines": line_counts[run_id]}
            assert returned.count(our_summary) == 1, (our_summary, returned)
            assert sorted(returned, key=json.dumps) == sorted(summaries.values(), key=json.dumps), returned
            mark("checked_consumer")
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
    assert any(f"dag_id={CONSUMER_DAG_ID}" in str(p) for p in _log_files(home)), "no consumer task log files"

    print(f"\ntimings (s from test start): {timings}; stop: {stop_report}")
