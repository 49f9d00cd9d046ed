"""``./dev airflow`` for tests: ``python -m devtools.demo --standalone``.

The very code path a user starts (``demo.py --standalone``: the emulator, Airflow's database with
the connections in it, the admin password file, the ``--skip-serve-logs`` shim, ``airflow
standalone``), on a free port and in a temporary ``--workdir``, with ``--ids 20000`` to keep the
data small. The caller's environment reaches Airflow (the demo passes it through): the tests add
the ``aws`` connection of their SeaweedFS server there.

Things about ``airflow standalone`` on 3.3.2 that this relies on (see also
/work/shared/reference/airflow-3-provider.md):

* Stopping: the demo runs standalone in a process group of its own and, on SIGTERM, sends SIGTERM
  to that group, waits for it to empty (30 s), then SIGKILLs it. Every component ends within a
  few seconds of the SIGTERM. SIGINT to the group (what Ctrl-C sends) is worse: the scheduler was
  still running 40 s later; the demo catches Ctrl-C itself and sends SIGTERM.
* Anything still running after the demo has exited, in standalone's process group or with this
  AIRFLOW_HOME in its environment, is a stray: SIGKILLed, and reported (a test fails on it). The
  environment alone does not find them all: a process that sets its title (the api-server, the
  executor's workers, log servers) overwrites the memory /proc/<pid>/environ shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from .airflow_env import _STRIP_NAMES, _STRIP_PREFIXES
from .ports import free_port
from .procs import die_with_parent, process_table, venv_bin

__all__ = ["DevAirflow", "cmdline", "processes_with_env"]

REPO = Path(__file__).resolve().parents[2]
ID_COUNT = 20_000  # tweet IDs the demo generates (users: 2,000)
STARTUP_TIMEOUT = 300  # data, db migrate, connections import, standalone up and every component heartbeating
STOP_TIMEOUT = 60  # from SIGTERM to the demo until it has stopped Airflow (it waits 30 s, then SIGKILLs)


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of the live processes (readable by us) whose environment has ``name=value``."""
    needle = b"\0" + f"{name}={value}".encode() + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = b"\0" + f.read() + b"\0"
        except OSError:  # gone, or not ours
            continue
        if needle in environ:
            pids.append(int(entry))
    return pids


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus anything that could point Airflow or AWS elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIP_NAMES and not k.startswith(_STRIP_PREFIXES)}
    bin_dir = venv_bin()
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]).rstrip(os.pathsep)
    env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(bin_dir).parent / ".pycache"))
    env["NO_PROXY"] = env["no_proxy"] = ",".join(x for x in ("127.0.0.1,localhost", env.get("NO_PROXY")) if x)
    env.update({"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "AWS_EC2_METADATA_DISABLED": "true"})
    env.update(extra)
    return env


class DevAirflow:
    """``demo.py --standalone`` in a process group of its own, its output in a file, and a REST client."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir.resolve()
        self.home = self.workdir / "airflow"
        self.data = self.workdir / "data"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.output_path = self.workdir / "dev-airflow.out"
        self.env = _environment(env or {})
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies for loopback
        self.stop_report: dict[str, Any] | None = None
        self.standalone_pgid: int | None = None  # the process group the demo runs airflow standalone in
        self._output: Any = None

    # -- lifecycle
    def start(self) -> None:
        self._output = open(self.output_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.demo",
                "--standalone",
                "--workdir",
                str(self.workdir),
                "--port",
                str(self.port),
                "--ids",
                str(ID_COUNT),
                "--dags-folder",
                str(REPO / "example_dags"),
            ],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> dict[str, Any]:
        """Until ``/api/v2/monitor/health`` says DB, scheduler, triggerer and dag-processor are healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"./dev airflow exited with {self.proc.returncode}\n{self.tail()}")
            try:
                response = self.request("GET", "/api/v2/monitor/health", timeout=5)
                last = response.status_code, response.text[:500]
                if response.status_code == 200:
                    health = response.json()
                    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                        self.standalone_pgid = next(
                            pid for pid in self.processes() if cmdline(pid).endswith("airflow standalone")
                        )
                        return health
            except requests.RequestException as error:
                last = repr(error)
            time.sleep(1)
        raise AssertionError(f"Airflow not healthy after {timeout} s (last: {last})\n{self.tail()}")

    def processes(self) -> list[int]:
        """Airflow's processes: the demo's descendants, standalone's process group, and anything
        with this AIRFLOW_HOME in its environment (the demo itself not included)."""
        table = {pid: stat for pid, stat in process_table().items() if not stat.zombie}
        found: set[int] = set(processes_with_env("AIRFLOW_HOME", str(self.home)))
        found |= {
            pid for pid, stat in table.items() if self.standalone_pgid and stat.pgid == self.standalone_pgid
        }
        if self.alive():
            children: dict[int, list[int]] = {}
            for pid, stat in table.items():
                children.setdefault(stat.ppid, []).append(pid)
            todo = list(children.get(self.proc.pid, []))
            while todo:
                pid = todo.pop()
                found.add(pid)
                todo.extend(children.get(pid, []))
        found.discard(os.getpid())
        return sorted(pid for pid in found if pid in table)

    def stop(self) -> dict[str, Any]:
        """SIGTERM the demo, as ``kill`` would, and wait for it to stop Airflow; SIGKILL its group
        if it does not within STOP_TIMEOUT, and anything left with this AIRFLOW_HOME. Once only."""
        if self.stop_report is not None:
            return self.stop_report
        report: dict[str, Any] = {"signals": []}
        t0 = time.monotonic()
        if self.proc is not None:
            if self.proc.poll() is None:
                report["signals"].append("SIGTERM")
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    report["signals"].append("SIGKILL")
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.proc.wait(timeout=10)
            report["returncode"] = self.proc.returncode
        report["demo_seconds"] = round(time.monotonic() - t0, 1)
        strays = self.processes()
        report["strays"] = {pid: cmdline(pid) for pid in strays}
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.processes():
            time.sleep(0.2)
        report["left"] = {pid: cmdline(pid) for pid in self.processes()}
        report["seconds"] = round(time.monotonic() - t0, 1)
        if self._output is not None:
            self._output.close()
            self._output = None
        self.stop_report = report
        return report

    # -- what the demo made
    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def admin_password(self) -> str:
        return json.loads(self.password_file.read_text())["admin"]

    def ids_file(self, job_type: str = "tweets") -> Path:
        return self.data / "ids" / f"{job_type}.txt"

    def truth_file(self, job_type: str = "tweets") -> Path:
        return self.data / "truth" / f"{job_type}.csv"

    def expected_results(
        self, ids_file: Path | None = None, job_type: str = "tweets"
    ) -> list[dict[str, Any]]:
        """What the emulator answers for those IDs: the demo's ground truth, line for line."""
        from airflow_provider_xcompliance.emulator import expected_results

        with (ids_file or self.ids_file(job_type)).open() as lines:
            return list(
                expected_results(
                    (line.strip() for line in lines), job_type, ground_truth=self.truth_file(job_type)
                )
            )

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 150) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def log_files(self) -> list[Path]:
        return sorted(p for p in (self.home / "logs").rglob("*") if p.is_file())

    def task_logs(self, dag_id: str, run_id: str, lines: int = 80) -> str:
        """The tails of a run's task (and trigger) log files, for failure messages."""
        parts = []
        for path in self.log_files():
            if f"dag_id={dag_id}" in str(path) and f"run_id={run_id}" in str(path):
                text = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {path.relative_to(self.home)} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or f"(no task log files of {dag_id} {run_id})"

    # -- REST
    def login(self) -> str:
        """admin and the password from the file -> a JWT from ``POST /auth/token``, used from then on."""
        response = self.request(
            "POST", "/auth/token", json={"username": "admin", "password": self.admin_password()}
        )
        assert response.status_code == 201, (
            f"POST /auth/token: HTTP {response.status_code}: {response.text[:500]}"
        )
        jwt = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {jwt}"
        return jwt

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)  # a busy 2-core machine: the one api-server process can lag
        return self.session.request(method, self.base_url + path, **kwargs)

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        """Call the REST API; the decoded JSON answer, or AssertionError on another status.
        Idempotent calls are repeated on a 5xx (SQLite lets one process write at a time) and
        on a timeout."""
        attempts = 10 if method in ("GET", "PATCH", "DELETE") else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.request(method, path, **kwargs)
            except requests.Timeout:
                if attempt == attempts:
                    raise
                continue
            if response.status_code < 500:
                break
            time.sleep(1)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, (
            f"{method} {path}: HTTP {response.status_code} (expected {expect}): {response.text[:2000]}"
        )
        return response.json() if response.content else None

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300, watch: Any = None) -> dict[str, Any]:
        """Poll a DAG run until it ends; ``watch()`` is called on every round. The last run record."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if watch is not None:
                watch()
            if run["state"] in ("success", "failed"):
                return run
            assert self.alive(), f"./dev airflow died\n{self.tail()}"
            assert time.monotonic() < deadline, (
                f"run {run_id} still {run['state']} after {timeout} s\n"
                f"{self.task_logs(dag_id, run_id)}\n{self.tail()}"
            )
            time.sleep(1)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        instances = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in instances}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """An XCom value as the REST API gives it (its native JSON; decoded if it is JSON text)."""
        value = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        )["value"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        return value

    def emulator(self) -> tuple[str, str]:
        """The emulator's base URL and bearer token, read from the stored connection as a user would."""
        from devtools.demo import DEMO_TOKEN

        connection = self.api("GET", "/api/v2/connections/x_compliance_default")
        return f"{connection['host']}:{connection['port']}", DEMO_TOKEN
