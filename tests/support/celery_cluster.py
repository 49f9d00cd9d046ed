"""A real Airflow 3.3 deployment with the CeleryExecutor, every part a process of its own.

``CeleryCluster`` (a context manager) starts, on free 127.0.0.1 ports:

* Redis as the Celery broker (tests/support/redis_server.py: no persistence);
* a fresh PostgreSQL database as the metadata DB and the Celery result backend (on a given
  server, e.g. the session's ``postgres`` fixture, or on its own tests/support/postgres.py one);
* SeaweedFS (a given one, e.g. the session's ``seaweed`` fixture, or its own) with a bucket for
  the IDs and the results, reachable from Airflow as the ``aws`` connection ``seaweed``;
* the X API emulator (in this process, a thread) with generated data sets and their ground truth;
* ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and one
  ``airflow celery worker -H <name>`` per worker (``w1``, ``w2``), each in a process group of its
  own, its output in ``<workdir>/logs/<name>.log``;

and yields itself: a REST client logged in as ``admin`` (``api``, ``trigger``, ``wait_run`` ...),
fault handles (``kill_worker``, ``start_worker``, ``restart_worker``, ``restart_triggerer``,
``emulator.inject_fault``), Celery's view of the workers (``celery_active``), SQL on the metadata
DB (``sql``), and the data (``ids_file``, ``upload_ids``, ``expected_results``).
:meth:`CeleryCluster.stop` ends every process it started (SIGTERM to each group, SIGKILL after a
grace period), then anything else still carrying the cluster's ``XC_CLUSTER`` environment
variable, and reports what it had to kill.

How the components are tied together (checked on Airflow 3.3.2, celery provider 3.26.0):

* One ``AIRFLOW_HOME`` on this machine, but no ``airflow.cfg`` matters: everything is set by
  ``AIRFLOW__*`` variables, the same for every component: ``[core] fernet_key``,
  ``[api_auth] jwt_secret`` (the API server signs the tasks' Execution API tokens with it),
  ``[core] execution_api_server_url`` (workers reach the API server there), the broker and the
  result backend (``db+postgresql+psycopg2://``: SQLAlchemy 2.1 maps a bare ``postgresql://``
  to psycopg 3, which Celery's database backend does not take).
* Hostnames: ``[core] hostname_callable`` = :func:`tests.support.worker_name.hostname`, which
  returns ``XC_WORKER_NAME``. ``-H w1`` only names the Celery node (``celery@w1``); the task
  runner records ``hostname_callable()`` in the task instance, the FQDN by default, the same for
  both workers on one machine.
* Log servers: 3.3.2's ``serve_logs`` binds ``host=""`` (every interface) with no option to
  change it, only the port (``[logging] worker_log_server_port``, ``trigger_log_server_port``),
  and the API server asks every worker on the one configured port at ``http://<TI hostname>:port``.
  So every component runs with ``--skip-serve-logs`` and they share ``$AIRFLOW_HOME/logs`` (the
  "shared log volume" setup): the API server reads task and trigger logs from there.
* Scratch: each process gets its own empty ``HOME`` and ``TMPDIR`` under ``<workdir>/scratch``,
  so a test can prove that nothing of the data passed through a worker's local disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .airflow_env import _STRIP_NAMES, _STRIP_PREFIXES
from .dev_airflow import cmdline, processes_with_env
from .ports import free_port
from .postgres import PostgresServer, running_postgres
from .procs import ProcStat, die_with_parent, listening_sockets, process_table, stop_process, venv_bin
from .redis_server import RedisServer, running_redis
from .seaweed import SeaweedS3

__all__ = ["CeleryCluster", "Component", "celery_cluster", "listening_sockets"]

REPO = Path(__file__).resolve().parents[2]
AWS_CONN_ID = "seaweed"
X_TOKEN = "celery-cluster-token-not-a-secret"
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
STARTUP_TIMEOUT = 300  # migrate, every component up and heartbeating, both workers answering
STOP_GRACE = 15  # seconds from SIGTERM to SIGKILL (a Celery worker waits for its running tasks)
DATASETS = {"tweets": 20_000, "users": 2_000}


@dataclass
class Component:
    """One process of the cluster (started again under the same name after a kill)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    exits: list[int | None] = field(default_factory=list)  # return codes of earlier processes

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _still_running(table: Mapping[int, ProcStat], pid: int, started: int) -> bool:
    """Whether the process seen as ``pid`` started at ``started`` still runs (not a reused pid)."""
    stat = table.get(pid)
    return stat is not None and stat.started == started and not stat.zombie


def _tree(leaders: Mapping[int, str], table: Mapping[int, ProcStat]) -> dict[int, str]:
    """The processes in the sessions or groups of ``leaders`` (live ones), and their descendants."""
    found = {
        pid: leaders.get(stat.sid) or leaders.get(stat.pgid)
        for pid, stat in table.items()
        if stat.sid in leaders or stat.pgid in leaders
    }
    changed = True
    while changed:  # children that left the session (setsid) are still children
        changed = False
        for pid, stat in table.items():
            if pid not in found and stat.ppid in found:
                found[pid] = found[stat.ppid]
                changed = True
    return {pid: name for pid, name in found.items() if name}


class CeleryCluster:
    """Airflow with the CeleryExecutor and its services; see the module docstring.

    :param workdir: an empty directory for everything (AIRFLOW_HOME, logs, data, scratch dirs).
    :param seaweed: a running SeaweedFS to use (a bucket is made in it); its own one if None.
    :param postgres: a running PostgreSQL server to make the Airflow database in; its own if None.
    :param workers: the Celery workers' names (their ``-H`` and their task instances' hostname).
    :param concurrency: task slots per worker.
    :param datasets: IDs to generate per job type (the emulator gets their ground truth).
    :param emulator_options: keyword arguments for ``XComplianceEmulator`` (e.g. ``speed``,
        ``processing_seconds``: by default a job is in progress for 15 s).
    :param extra_env: more environment for every Airflow process (wins over the defaults), e.g.
        ``AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT`` for a fault test.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        seaweed: SeaweedS3 | None = None,
        postgres: PostgresServer | None = None,
        workers: Iterable[str] = ("w1", "w2"),
        concurrency: int = 2,
        dags_folder: str | os.PathLike[str] = REPO / "example_dags",
        datasets: Mapping[str, int] = DATASETS,
        emulator_options: Mapping[str, Any] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.home = self.workdir / "airflow"
        self.logs = self.workdir / "logs"
        self.data = self.workdir / "data"
        self.scratch_root = self.workdir / "scratch"
        self.worker_names = tuple(workers)
        self.concurrency = concurrency
        self.dags_folder = Path(dags_folder).resolve()
        self.datasets = dict(datasets)
        self.emulator_options = dict(emulator_options or {})
        self.extra_env = dict(extra_env or {})
        self.cluster_id = uuid.uuid4().hex[:12]
        self._given_seaweed, self._given_postgres = seaweed, postgres
        self.seaweed: SeaweedS3 | None = None
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.emulator: Any = None  # XComplianceEmulator
        self.database = f"airflow_{self.cluster_id}"
        self.bucket = ""
        self.port = 0
        self.base_url = ""
        self.password = secrets.token_urlsafe(16)
        self.components: dict[str, Component] = {}
        self.timings: dict[str, float] = {}
        self.stop_report: dict[str, Any] | None = None
        self.leftovers: dict[str, list[str]] = {}  # component -> processes SIGKILLed after their leader ended
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies for loopback
        self._stack = contextlib.ExitStack()
        self._celery_app: Any = None
        self._database_created = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> CeleryCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> CeleryCluster:
        t0 = time.monotonic()
        for d in (self.home, self.logs, self.data / "ids", self.data / "truth", self.scratch_root):
            d.mkdir(parents=True, exist_ok=True)
        self._start_services()
        self.timings["services"] = round(time.monotonic() - t0, 1)
        self._base_env = self._airflow_env()
        t1 = time.monotonic()
        self._migrate()
        self.timings["migrate"] = round(time.monotonic() - t1, 1)
        t2 = time.monotonic()
        for name in SERVICES:
            self._start(name, self._service_argv(name))
        for name in self.worker_names:
            self.start_worker(name)
        self.wait_healthy()
        self.login()
        self.wait_workers()
        self.timings["airflow_up"] = round(time.monotonic() - t2, 1)
        self.timings["start"] = round(time.monotonic() - t0, 1)
        return self

    def _start_services(self) -> None:
        from airflow_provider_xcompliance.emulator import XComplianceEmulator, generate_dataset

        self.redis = self._stack.enter_context(running_redis())
        if self._given_postgres is None:
            self.postgres = self._stack.enter_context(running_postgres())
        else:
            self.postgres = self._given_postgres
        self._create_database()
        if self._given_seaweed is None:
            self.seaweed = self._stack.enter_context(SeaweedS3(self.workdir / "seaweed"))
        else:
            self.seaweed = self._given_seaweed
        self.bucket = self.seaweed.create_bucket(f"xc-celery-{self.cluster_id}")
        for job_type, count in self.datasets.items():
            generate_dataset(count, job_type, self.ids_file(job_type), self.truth_file(job_type), seed=2026)
        options = {"speed": 120.0, "processing_seconds": 1800.0, **self.emulator_options}  # 15 s in progress
        self.emulator = self._stack.enter_context(
            XComplianceEmulator(
                token=X_TOKEN,
                data_dir=self.workdir / "emulator",
                ground_truth={job_type: self.truth_file(job_type) for job_type in self.datasets},
                **options,
            )
        )
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _create_database(self) -> None:
        self._postgres_execute(f'CREATE DATABASE "{self.database}"')
        self._database_created = True

    def _postgres_execute(self, statement: str) -> None:
        import psycopg2

        pg = self.postgres
        conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=pg.database)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    @property
    def sql_alchemy_conn(self) -> str:
        pg = self.postgres
        return f"postgresql+psycopg2://{pg.user}@{pg.host}:{pg.port}/{self.database}"

    def _airflow_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        from airflow_provider_xcompliance.connection import CONNECTION_TYPE, DEFAULT_CONN_ID

        env = {
            k: v for k, v in os.environ.items() if k not in _STRIP_NAMES and not k.startswith(_STRIP_PREFIXES)
        }
        bin_dir = venv_bin()
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]).rstrip(os.pathsep)
        env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(bin_dir).parent / ".pycache"))
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO), env.get("PYTHONPATH")) if x)
        env["NO_PROXY"] = env["no_proxy"] = ",".join(
            x for x in ("127.0.0.1,localhost", env.get("NO_PROXY")) if x
        )
        passwords = self.home / "passwords.json"
        fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as output:
            json.dump({"admin": self.password}, output)
        x_conn = {"conn_type": CONNECTION_TYPE, "host": self.emulator.base_url, "password": X_TOKEN}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "XC_CLUSTER": self.cluster_id,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url(0),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.sql_alchemy_conn,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # >= 64 bytes for HS512
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.support.worker_name.hostname",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",  # as the README advises
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                # not used (every component runs with --skip-serve-logs), but never the defaults
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}": json.dumps(x_conn),
                **self.seaweed.connection_env(AWS_CONN_ID),
                "X_COMPLIANCE_DATA_URL": self.data_url,
                "X_COMPLIANCE_POLL_INTERVAL": "3",  # emulated jobs take seconds, not hours
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(self.home / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "no-aws-credentials"),
            }
        )
        env.update(self.extra_env)
        return env

    def _migrate(self) -> None:
        log = self.logs / "migrate.log"
        env = self._env_for("migrate")
        with log.open("wb") as output:
            proc = subprocess.Popen(
                [f"{venv_bin()}/airflow", "db", "migrate"],
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call
            )
            try:
                code = proc.wait(timeout=300)
            finally:
                stop_process(proc, 5, group=True)
        if code != 0:
            raise RuntimeError(f"airflow db migrate exited with {code}\n{self.tail('migrate')}")

    def _env_for(self, name: str) -> dict[str, str]:
        scratch = self.scratch(name)
        (scratch / "home").mkdir(parents=True, exist_ok=True)
        (scratch / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            **self._base_env,
            "XC_WORKER_NAME": name,
            "HOME": str(scratch / "home"),
            "TMPDIR": str(scratch / "tmp"),
        }

    def _service_argv(self, name: str) -> list[str]:
        airflow = f"{venv_bin()}/airflow"
        return {
            "api-server": [
                airflow,
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        }[name]

    def _worker_argv(self, name: str) -> list[str]:
        return [
            f"{venv_bin()}/airflow",
            "celery",
            "worker",
            "-H",
            name,
            "-c",
            str(self.concurrency),
            "--skip-serve-logs",
        ]

    def _start(self, name: str, argv: list[str]) -> Component:
        component = self.components.get(name)
        if component is None:
            component = self.components[name] = Component(
                name, argv, self._env_for(name), self.logs / f"{name}.log"
            )
        assert not component.alive(), f"{name} is already running (pid {component.pid})"
        with component.log_path.open("ab") as output:
            output.write(f"\n===== start {component.starts + 1} of {name}: {' '.join(argv)}\n".encode())
            output.flush()
            component.proc = subprocess.Popen(
                argv,
                cwd=self.home,
                env=component.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call
            )
        component.starts += 1
        return component

    def _members(self, name: str) -> dict[int, int]:
        """``{pid: start time}`` of the component's processes now."""
        proc = self.components[name].proc
        if proc is None or proc.poll() is not None:
            return {}
        table = process_table()
        return {pid: table[pid].started for pid in _tree({proc.pid: name}, table)}

    def _stop(
        self,
        name: str,
        sig: int | None = signal.SIGTERM,
        grace: float = STOP_GRACE,
        members: dict[int, int] | None = None,
    ) -> int | None:
        """Signal the component's process group with ``sig`` (None: already signalled, its
        processes then were ``members``); SIGKILL it after ``grace`` s."""
        component = self.components[name]
        proc = component.proc
        if proc is None:
            return None
        members = self._members(name) if members is None else members
        if proc.poll() is None:
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                stop_process(proc, 0.1, group=True)
        # Whatever outlived the leader (a pool child, a task that ignored SIGTERM or left the
        # group) is SIGKILLed and reported; each is checked by pid and start time against pid reuse.
        table = process_table()
        outlived = [
            pid for pid, started in members.items() if pid != proc.pid and _still_running(table, pid, started)
        ]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in outlived:
            self.leftovers.setdefault(name, []).append(f"{pid} {cmdline(pid)}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        component.exits.append(proc.returncode)
        component.proc = None
        return proc.returncode

    def stop(self) -> dict[str, Any]:
        """Stop everything this cluster started (once); the report says what needed SIGKILL."""
        if self.stop_report is not None:
            return self.stop_report
        t0 = time.monotonic()
        report: dict[str, Any] = {"returncodes": {}}
        running = [c for c in self.components.values() if c.alive()]
        members = {c.name: self._members(c.name) for c in running}
        for component in running:  # SIGTERM all at once, then wait for each
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.proc.pid, signal.SIGTERM)
        for component in running:
            report["returncodes"][component.name] = self._stop(
                component.name, None, members=members[component.name]
            )
        if self._celery_app is not None:
            with contextlib.suppress(Exception):
                self._celery_app.close()
        report["leftovers"] = dict(self.leftovers)
        strays = processes_with_env("XC_CLUSTER", self.cluster_id)
        report["strays"] = {pid: cmdline(pid) for pid in strays}
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and processes_with_env("XC_CLUSTER", self.cluster_id):
            time.sleep(0.2)
        table = process_table()
        left = set(processes_with_env("XC_CLUSTER", self.cluster_id))
        left |= {
            pid
            for tree in members.values()
            for pid, started in tree.items()
            if _still_running(table, pid, started)
        }
        report["left"] = {pid: cmdline(pid) for pid in sorted(left)}
        report["airflow_seconds"] = round(time.monotonic() - t0, 1)
        self._stack.close()  # emulator, SeaweedFS and PostgreSQL if its own, Redis
        if self._given_postgres is not None and self._database_created:
            with contextlib.suppress(Exception):  # the server is someone else's: leave it as found
                self._postgres_execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        report["seconds"] = round(time.monotonic() - t0, 1)
        self.stop_report = report
        return report

    # ------------------------------------------------------------------ fault handles
    def start_worker(self, name: str) -> Component:
        """Start (again) the Celery worker ``name``, with its scratch dir as it was left."""
        return self._start(name, self._worker_argv(name))

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` (SIGKILL by default: the worker, its pool and its tasks die at once) to the
        worker's process group; its return code. SIGTERM is Celery's warm shutdown."""
        return self._stop(name, sig, grace=STOP_GRACE)

    def restart_worker(self, name: str, sig: int = signal.SIGKILL, *, wait: bool = True) -> Component:
        self.kill_worker(name, sig)
        component = self.start_worker(name)
        if wait:
            self.wait_workers([name])
        return component

    def restart_triggerer(self, sig: int = signal.SIGTERM, *, wait: bool = True) -> Component:
        """Stop the triggerer with ``sig`` (SIGKILL after the grace period) and start a new one;
        with ``wait``, until ``/monitor/health`` reports the new one heartbeating."""
        old_pid = self.components["triggerer"].pid
        self._stop("triggerer", sig)
        component = self._start("triggerer", self._service_argv("triggerer"))
        if wait:
            self.wait_healthy(new_triggerer_after=old_pid)
        return component

    def restart(self, name: str, sig: int = signal.SIGTERM) -> Component:
        """Stop and start any component by name (``scheduler``, ``api-server``, ``w1`` ...)."""
        self._stop(name, sig)
        argv = self._worker_argv(name) if name in self.worker_names else self._service_argv(name)
        return self._start(name, argv)

    # ------------------------------------------------------------------ readiness
    def wait_healthy(
        self, timeout: float = STARTUP_TIMEOUT, new_triggerer_after: int | None = None
    ) -> dict[str, Any]:
        """Until ``/api/v2/monitor/health`` says the DB, scheduler, triggerer and dag-processor are
        healthy (with ``new_triggerer_after``: a triggerer heartbeat newer than this call)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        since = time.time()
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                response = self.request("GET", "/api/v2/monitor/health", timeout=5)
                last = response.status_code, response.text[:500]
                if response.status_code == 200:
                    health = response.json()
                    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    healthy = all((health.get(p) or {}).get("status") == "healthy" for p in parts)
                    fresh = new_triggerer_after is None or self._triggerer_heartbeat_since(health, since)
                    if healthy and fresh:
                        return health
            except requests.RequestException as error:
                last = repr(error)
            time.sleep(1)
        raise AssertionError(f"Airflow not healthy after {timeout} s (last: {last})\n{self.tails()}")

    @staticmethod
    def _triggerer_heartbeat_since(health: dict[str, Any], since: float) -> bool:
        from datetime import datetime

        beat = (health.get("triggerer") or {}).get("latest_triggerer_heartbeat")
        return bool(beat) and datetime.fromisoformat(beat).timestamp() > since

    def wait_workers(self, names: Iterable[str] | None = None, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until every named worker (all by default) answers a Celery ping."""
        want = {f"celery@{n}" for n in (names or self.worker_names)}
        deadline = time.monotonic() + timeout
        answered: set[str] = set()
        while time.monotonic() < deadline:
            self.assert_alive()
            answered = {name for reply in (self.celery().control.ping(timeout=1.0) or []) for name in reply}
            if want <= answered:
                return
            time.sleep(0.5)
        raise AssertionError(
            f"Celery workers {sorted(want - answered)} not answering after {timeout} s\n{self.tails()}"
        )

    def assert_alive(self, names: Iterable[str] | None = None) -> None:
        dead = [
            c
            for c in self.components.values()
            if (names is None or c.name in names) and c.proc is not None and c.proc.poll() is not None
        ]
        if dead:
            raise AssertionError(
                "exited: "
                + ", ".join(f"{c.name} ({c.proc.returncode})" for c in dead)
                + "\n"
                + "\n".join(self.tail(c.name) for c in dead)
            )

    # ------------------------------------------------------------------ Celery's view
    def celery(self) -> Any:
        """A Celery app on the cluster's broker (for ``control.ping``, ``control.inspect`` ...)."""
        if self._celery_app is None:
            from celery import Celery

            self._celery_app = Celery("xc-test-client", broker=self.redis.url(0))
        return self._celery_app

    def celery_active(self, timeout: float = 1.0) -> dict[str, list[dict[str, Any]]]:
        """``{"celery@w1": [task, ...]}``: the Celery tasks each worker is running now (each an
        Airflow workload whose JSON args carry the task instance's ``id``)."""
        live = sum(
            1 for name in self.worker_names if self.components.get(name) and self.components[name].alive()
        )
        return self.celery().control.inspect(timeout=timeout, limit=live or None).active() or {}

    # ------------------------------------------------------------------ data
    @property
    def data_url(self) -> str:
        """``s3://seaweed@<bucket>``: the connection id rides in the URL."""
        return f"s3://{AWS_CONN_ID}@{self.bucket}"

    def ids_file(self, job_type: str) -> Path:
        return self.data / "ids" / f"{job_type}.txt"

    def truth_file(self, job_type: str) -> Path:
        return self.data / "truth" / f"{job_type}.csv"

    def s3(self) -> Any:
        return self.seaweed.client()

    def upload_ids(self, job_type: str, key: str | None = None) -> str:
        """Upload the job type's generated ID file to the bucket; its ``s3://seaweed@...`` URL."""
        key = key or f"ids/{job_type}.txt"
        self.s3().upload_file(str(self.ids_file(job_type)), self.bucket, key)
        return f"{self.data_url}/{key}"

    def read_object(self, url_or_key: str) -> bytes:
        key = url_or_key.removeprefix(f"{self.data_url}/")
        return self.s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def object_keys(self) -> list[str]:
        listed = self.s3().list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed)

    def expected_results(self, job_type: str) -> list[dict[str, Any]]:
        from airflow_provider_xcompliance.emulator import expected_results

        with self.ids_file(job_type).open() as lines:
            return list(
                expected_results(
                    (line.strip() for line in lines), job_type, ground_truth=self.truth_file(job_type)
                )
            )

    def all_ids(self) -> set[bytes]:
        ids: set[bytes] = set()
        for job_type in self.datasets:
            ids.update(
                line.strip() for line in self.ids_file(job_type).read_bytes().splitlines() if line.strip()
            )
        return ids

    def scratch(self, name: str) -> Path:
        """The component's own ``HOME`` (``home/``) and ``TMPDIR`` (``tmp/``) parent."""
        return self.scratch_root / name

    def files_with_data(self, root: Path, ids: set[bytes] | None = None) -> list[str]:
        """Files under ``root`` that hold any of the cluster's IDs (so also any result line)."""
        ids = ids if ids is not None else self.all_ids()
        found = []
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            try:
                content = path.read_bytes()
            except OSError:
                continue
            if any(number in ids for number in re.findall(rb"\d{5,19}", content)):
                found.append(str(path))
        return found

    # ------------------------------------------------------------------ REST
    def login(self) -> str:
        response = self.request("POST", "/auth/token", json={"username": "admin", "password": self.password})
        assert response.status_code == 201, (
            f"POST /auth/token: HTTP {response.status_code}: {response.text[:500]}"
        )
        jwt = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {jwt}"
        return jwt

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        """Call the REST API; the decoded JSON answer, or AssertionError on another status.
        GETs are repeated on a 5xx or a refused connection (e.g. while the API server restarts)."""
        tries = 10 if method == "GET" else 1
        for attempt in range(tries):
            try:
                response = self.request(method, path, **kwargs)
            except requests.ConnectionError:
                if attempt == tries - 1:
                    raise
                time.sleep(1)
                continue
            if response.status_code < 500:
                break
            time.sleep(1)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, (
            f"{method} {path}: HTTP {response.status_code} (expected {expect}): {response.text[:2000]}"
        )
        return response.json() if response.content else None

    def variables(self) -> dict[str, Any]:
        """The Airflow Variables, by key, as the REST API shows them (secret ones masked)."""
        listed = self.api("GET", "/api/v2/variables", params={"limit": 1000})
        return {v["key"]: v.get("value") for v in listed["variables"]}

    def wait_parsed(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.request("GET", f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if time.monotonic() > deadline:
                errors = self.request("GET", "/api/v2/importErrors").text[:3000]
                raise AssertionError(
                    f"DAG {dag_id} not parsed after {timeout} s; import errors: {errors}\n"
                    f"{self.tail('dag-processor')}"
                )
            self.assert_alive()
            time.sleep(1)

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        *,
        unpause: bool = True,
    ) -> str:
        """Unpause (by default) and trigger ``dag_id`` with ``conf``, as the UI's Trigger dialog
        does; the run id."""
        self.wait_parsed(dag_id)
        if unpause:
            self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run_id = run_id or f"manual__{uuid.uuid4().hex[:10]}"
        self.api(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})},
        )
        return run_id

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait_runs(
        self,
        runs: Iterable[tuple[str, str]],
        timeout: float = 300,
        watch: Callable[[], None] | None = None,
        interval: float = 1.0,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Poll DAG runs ``(dag_id, run_id)`` until every one ended; ``watch()`` runs on every round."""
        pending = list(runs)
        done: dict[tuple[str, str], dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            if watch is not None:
                watch()
            for key in list(pending):
                run = self.run(*key)
                if run["state"] in ("success", "failed"):
                    done[key] = run
                    pending.remove(key)
            if not pending:
                break
            if time.monotonic() > deadline:
                states = {key: self.task_states(*key) for key in pending}
                raise AssertionError(f"runs still going after {timeout} s: {states}\n{self.tails()}")
            time.sleep(interval)
        return done

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        value = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        )["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[dict[str, Any]]:
        """The task's log records as the API serves them (task, and trigger, logs merged)."""
        log = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        return [r for r in log["content"] if isinstance(r, dict)]

    # ------------------------------------------------------------------ metadata DB
    def sql(self, query: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query on the Airflow database, as dicts."""
        import psycopg2
        import psycopg2.extras

        pg = self.postgres
        conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=self.database)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(query, params)
                return [dict(row) for row in cursor.fetchall()]
        finally:
            conn.close()

    # ------------------------------------------------------------------ processes and output
    def processes(self) -> dict[int, str]:
        """``{pid: component name}`` of every live process of the cluster's components: those in
        the session or process group of a running component, their descendants, and any other
        process carrying the cluster's ``XC_CLUSTER`` variable (name ``"?"``). The environment is
        not enough alone: ``setproctitle`` (the API server, the task supervisors) overwrites the
        memory /proc/<pid>/environ shows."""
        leaders = {c.pid: c.name for c in self.components.values() if c.alive()}
        found = _tree(leaders, process_table())
        for pid in processes_with_env("XC_CLUSTER", self.cluster_id):
            found.setdefault(pid, "?")
        return found

    def pids(self, name: str | None = None) -> list[int]:
        """Live processes of the component ``name`` (all components when None)."""
        return sorted(pid for pid, owner in self.processes().items() if name is None or owner == name)

    def listening(self) -> list[tuple[int, str, int]]:
        """(pid, address, port) of every listening socket of the cluster's processes and servers."""
        pids = [*self.pids(), self.redis.proc.pid]
        if self.seaweed is not None and self.seaweed.proc is not None:
            pids.append(self.seaweed.proc.pid)
        with contextlib.suppress(OSError, ValueError, IndexError):  # the postmaster
            pids.append(int((self.postgres.data_dir / "postmaster.pid").read_text().split()[0]))
        return listening_sockets(pids)

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return f"(no {path.name})"
        return f"--- {path.name} (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def tails(self, lines: int = 40) -> str:
        return "\n".join(self.tail(name, lines) for name in self.components)

    def task_log_files(self, dag_id: str, run_id: str) -> list[Path]:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []

    def __repr__(self) -> str:
        where = self.base_url or "(not started)"
        return f"<CeleryCluster {where} workers={list(self.worker_names)} at {self.workdir}>"


@contextlib.contextmanager
def celery_cluster(workdir: str | os.PathLike[str], **options: Any) -> Iterator[CeleryCluster]:
    """``with celery_cluster(tmp_path, seaweed=..., postgres=...) as cluster:``; see
    :class:`CeleryCluster`."""
    with CeleryCluster(workdir, **options) as cluster:
        yield cluster
