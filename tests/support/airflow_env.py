"""A throw-away Airflow installation (AIRFLOW_HOME + SQLite) driven through real subprocesses.

Nothing here imports Airflow: every Airflow action runs as ``<venv>/bin/airflow`` or
``<venv>/bin/python`` in a subprocess whose environment :meth:`AirflowEnv.env` builds, and the
results are read straight from the SQLite metadata DB with :mod:`sqlite3` (read-only).

Facts this relies on (checked on Airflow 3.3.2):

* ``airflow dags test`` runs every task in-process (tasks talk to an in-process Execution API)
  and runs triggers inline, so deferral works with no triggerer. It exits 0 when the run
  succeeds and 1 when it fails ("DagRun failed"); the ``dag_run`` row's state agrees.
* The run id is ``manual__<ISO timestamp of run_after>``; the logical date is "now".
* Task logs go to the process's stdout/stderr only (nothing under ``$AIRFLOW_HOME/logs``).
* Every task state change is an event row in the ``log`` table (``running``, ``deferred``,
  ``success``, ``failed``, ...), with ``try_number``; a deferral leaves ``task_instance.trigger_id``
  set after the task resumes. ``task_instance_history`` only gets rows for earlier tries.
* XCom values are stored as JSON text in ``xcom.value``; objects that are not plain JSON are
  stored in Airflow's serde shape (``{"__classname__": ..., "__version__": ..., "__data__": ...}``).
"""

from __future__ import annotations

import glob
import json
import os
import sqlite3
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import die_with_parent, stop_process, venv_bin

__all__ = [
    "AirflowEnv",
    "DagRunResult",
    "DagsTestTimeout",
    "connection_env",
]

_MISSING: Any = object()

# Variables from the caller's environment that would leak into the test Airflow.
_STRIP_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AWS_")
_STRIP_NAMES = {"AIRFLOW_HOME", "AIRFLOW_CONFIG", "PYTHONDONTWRITEBYTECODE"}


# ---------------------------------------------------------------------------- connections
def connection_json(
    conn_type: str,
    *,
    host: str | None = None,
    login: str | None = None,
    password: str | None = None,
    schema: str | None = None,
    port: int | None = None,
    extra: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> str:
    """JSON form of an Airflow connection, as accepted in ``AIRFLOW_CONN_<ID>``."""
    doc: dict[str, Any] = {"conn_type": conn_type}
    for key, value in (
        ("host", host),
        ("login", login),
        ("password", password),
        ("schema", schema),
        ("port", port),
        ("description", description),
    ):
        if value is not None:
            doc[key] = value
    if extra is not None:
        doc["extra"] = dict(extra)
    return json.dumps(doc)


def connection_env(conn_id: str, conn_type: str, **fields: Any) -> dict[str, str]:
    """``{"AIRFLOW_CONN_<CONN_ID>": <json>}``; ``fields`` as in :func:`connection_json`.

    Example: ``connection_env("x_compliance_default", "xcompliance", host=url, password=token)``.
    """
    return {f"AIRFLOW_CONN_{conn_id.upper()}": connection_json(conn_type, **fields)}


# ---------------------------------------------------------------------------- results
class DagsTestTimeout(AssertionError):
    """``airflow dags test`` did not finish in time (it was killed); carries the output tail."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def _decode_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass
class DagRunResult:
    """What one ``airflow dags test`` run left behind: its output and its rows in the metadata DB."""

    dag_id: str
    run_id: str | None
    returncode: int
    output: str
    home: Path
    output_path: Path | None = None

    # -- DB access
    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    def _query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()

    # -- the run
    def dag_run(self) -> dict[str, Any] | None:
        """The ``dag_run`` row (``conf`` decoded), or None when no run was created."""
        if self.run_id is None:
            return None
        rows = self._query(
            "SELECT * FROM dag_run WHERE dag_id = ? AND run_id = ?", (self.dag_id, self.run_id)
        )
        if not rows:
            return None
        row = rows[0]
        row["conf"] = _decode_json(row.get("conf"))
        return row

    @property
    def state(self) -> str | None:
        """``dag_run.state``: ``"success"``, ``"failed"``, ... (None when no run was created)."""
        row = self.dag_run()
        return row["state"] if row else None

    @property
    def succeeded(self) -> bool:
        """Exit code 0 and the run's state is ``success``."""
        return self.returncode == 0 and self.state == "success"

    @property
    def failed(self) -> bool:
        return not self.succeeded

    def assert_success(self) -> DagRunResult:
        """Raise AssertionError with task states and the output's tail unless the run succeeded."""
        if not self.succeeded:
            raise AssertionError(
                f"dags test {self.dag_id} did not succeed: returncode={self.returncode} "
                f"state={self.state} tasks={self.task_states() if self.run_id else {}}\n"
                f"--- output (tail) ---\n{self.tail()}"
            )
        return self

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    # -- tasks
    def task_instances(self) -> list[dict[str, Any]]:
        """All ``task_instance`` rows of this run (every map index), ``next_kwargs`` decoded."""
        if self.run_id is None:
            return []
        rows = self._query(
            "SELECT * FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
            (self.dag_id, self.run_id),
        )
        for r in rows:
            r["next_kwargs"] = _decode_json(r.get("next_kwargs"))
            r["executor_config"] = None if r.get("executor_config") is None else "<binary>"
        return rows

    def task_states(self) -> dict[str, str | None]:
        """``{task_id: state}`` for the unmapped task instances (map_index -1)."""
        return {r["task_id"]: r["state"] for r in self.task_instances() if r["map_index"] == -1}

    def task_events(self, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """This task's rows of the ``log`` (audit) table in time order: ``dttm``, ``event``,
        ``try_number``, ``extra``."""
        if self.run_id is None:
            return []
        return self._query(
            "SELECT dttm, event, try_number, extra FROM log "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ? ORDER BY id",
            (self.dag_id, self.run_id, task_id, map_index),
        )

    def task_state_history(self, task_id: str, map_index: int = -1) -> list[str]:
        """The states the task went through, e.g. ``["running", "deferred", "running", "success"]``.

        Airflow 3.1 writes no such events to the ``log`` table: there, the final state of each
        earlier try (``task_instance_history``), then the current state."""
        events = [e["event"] for e in self.task_events(task_id, map_index)]
        if events or self.run_id is None:
            return events
        key = (self.dag_id, self.run_id, task_id, map_index)
        where = "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?"
        tries = self._query(f"SELECT state FROM task_instance_history {where} ORDER BY try_number", key)
        now = self._query(f"SELECT state FROM task_instance {where}", key)
        return [r["state"] for r in tries + now]

    def was_deferred(self, task_id: str, map_index: int = -1) -> bool:
        """True if the task deferred at least once in this run.

        Primary signal: a ``deferred`` event in the ``log`` table. Secondary: a ``trigger_id`` left
        on the task instance (Airflow keeps it after the task resumes).
        """
        if "deferred" in self.task_state_history(task_id, map_index):
            return True
        return any(
            r["trigger_id"] is not None
            for r in self.task_instances()
            if r["task_id"] == task_id and r["map_index"] == map_index
        )

    def triggers(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """``trigger`` rows (``kwargs`` decoded, in serde form) referenced by this run's task instances."""
        ids = [
            r["trigger_id"]
            for r in self.task_instances()
            if r["trigger_id"] is not None and (task_id is None or r["task_id"] == task_id)
        ]
        out = []
        for tid in ids:
            for row in self._query("SELECT * FROM trigger WHERE id = ?", (tid,)):
                row["kwargs"] = _decode_json(row.get("kwargs"))
                out.append(row)
        return out

    def rendered_fields(self, task_id: str, map_index: int = -1) -> dict[str, Any] | None:
        """The task's rendered template fields (``rendered_task_instance_fields.rendered_fields``)."""
        if self.run_id is None:
            return None
        rows = self._query(
            "SELECT rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?",
            (self.dag_id, self.run_id, task_id, map_index),
        )
        return _decode_json(rows[0]["rendered_fields"]) if rows else None

    # -- XCom
    def xcoms(self) -> list[dict[str, Any]]:
        """All XCom rows of this run, ``value`` decoded from JSON."""
        if self.run_id is None:
            return []
        rows = self._query(
            "SELECT task_id, map_index, key, value, timestamp FROM xcom "
            "WHERE dag_id = ? AND run_id = ? ORDER BY timestamp",
            (self.dag_id, self.run_id),
        )
        for r in rows:
            r["value"] = _decode_json(r["value"])
        return rows

    def xcom(
        self, task_id: str, key: str = "return_value", map_index: int = -1, default: Any = _MISSING
    ) -> Any:
        """The decoded XCom value; KeyError (or ``default``) when the task pushed none."""
        if self.run_id is not None:
            rows = self._query(
                "SELECT value FROM xcom "
                "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ? AND map_index = ?",
                (self.dag_id, self.run_id, task_id, key, map_index),
            )
            if rows:
                return _decode_json(rows[0]["value"])
        if default is not _MISSING:
            return default
        raise KeyError(f"no XCom {key!r} for {self.dag_id}.{task_id}[{map_index}] in run {self.run_id}")

    # -- assets
    def asset_events(self, uri_or_name: str | None = None) -> list[dict[str, Any]]:
        """Asset events emitted by this run: ``asset_event`` joined with ``asset``, ``extra`` decoded.

        Keys: ``id, asset_id, asset_name, asset_uri, asset_group, extra, source_task_id,
        source_dag_id, source_run_id, source_map_index, timestamp``.
        Filter by asset URI or name with ``uri_or_name``.
        """
        if self.run_id is None:
            return []
        sql = (
            'SELECT e.id, e.asset_id, a.name AS asset_name, a.uri AS asset_uri, a."group" AS asset_group, '
            "e.extra, e.source_task_id, e.source_dag_id, e.source_run_id, e.source_map_index, e.timestamp "
            "FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.source_dag_id = ? AND e.source_run_id = ?"
        )
        params: tuple = (self.dag_id, self.run_id)
        if uri_or_name is not None:
            sql += " AND (a.uri = ? OR a.name = ?)"
            params += (uri_or_name, uri_or_name)
        rows = self._query(sql + " ORDER BY e.id", params)
        for r in rows:
            r["extra"] = _decode_json(r["extra"])
        return rows

    # -- logs
    def log_files(self) -> list[Path]:
        """Task log files of this run under ``$AIRFLOW_HOME/logs`` (``dags test`` writes none on 3.3.2)."""
        files: set[Path] = set()
        if self.run_id is None:
            return []
        for p in glob.glob(str(self.home / "logs" / "**" / "*"), recursive=True):
            path = Path(p)
            if path.is_file() and f"dag_id={self.dag_id}" in p and self.run_id in p:
                files.add(path)
        return sorted(files)

    def logs_text(self) -> str:
        """Everything the run logged: the subprocess output plus this run's task log files."""
        parts = [self.output]
        for f in self.log_files():
            parts.append(f"\n--- {f} ---\n")
            parts.append(f.read_text(errors="replace"))
        return "".join(parts)


# ---------------------------------------------------------------------------- environment
class AirflowEnv:
    """A temp AIRFLOW_HOME with a migrated SQLite DB, and helpers to run Airflow in it.

    :param home: the AIRFLOW_HOME directory (created if missing); ``[core] dags_folder`` is its
        ``dags`` folder unless a call names another. ``airflow`` and ``python`` are those of the
        venv running the tests.
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder = self.home / "dags"
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.bin = Path(venv_bin())
        # Bytecode cache for the subprocesses (the calling environment may set
        # PYTHONDONTWRITEBYTECODE, and compiling Airflow from source costs ~5 s per process).
        self.pycache_prefix = Path(os.environ.get("PYTHONPYCACHEPREFIX") or (self.bin.parent / ".pycache"))
        self.migrated = False
        self._runs = 0

    # -- paths
    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    @property
    def airflow_bin(self) -> str:
        return str(self.bin / "airflow")

    @property
    def python_bin(self) -> str:
        return str(self.bin / "python")

    # -- environment
    def env(
        self, extra: Mapping[str, str] | None = None, *, dags_folder: str | os.PathLike[str] | None = None
    ) -> dict[str, str]:
        """Environment for an Airflow subprocess.

        Starts from ``os.environ`` minus anything that could point Airflow or AWS elsewhere
        (``AIRFLOW__*``, ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*``, ``AIRFLOW_HOME``, ``AWS_*``), puts the
        venv's ``bin`` first on PATH, then applies ``extra`` last (so it wins).
        """
        env = {
            k: v for k, v in os.environ.items() if k not in _STRIP_NAMES and not k.startswith(_STRIP_PREFIXES)
        }
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")]).rstrip(os.pathsep)
        env["VIRTUAL_ENV"] = str(self.bin.parent)
        env["PYTHONPYCACHEPREFIX"] = str(self.pycache_prefix)
        no_proxy = ",".join(x for x in ("127.0.0.1,localhost", env.get("NO_PROXY"), env.get("no_proxy")) if x)
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(
                    Path(dags_folder).resolve() if dags_folder else self.dags_folder
                ),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # unit_test_mode would load Airflow's own unit_tests.cfg (its test DAG folder, a
                # random fernet key per process, examples on): not wanted here.
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                # as the README advises: the operators and factories defer unless told otherwise
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                # no ~/.aws files, no EC2 metadata probing when a connection lacks credentials
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(self.home / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "no-aws-credentials"),
            }
        )
        if extra:
            env.update({k: str(v) for k, v in extra.items()})
        return env

    # -- running things
    def run(
        self,
        args: list[str],
        *,
        env: Mapping[str, str] | None = None,
        dags_folder: str | os.PathLike[str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this Airflow environment; stdout and stderr merged into ``stdout``.

        On timeout the process group is killed and :class:`DagsTestTimeout` is raised.
        """
        proc = subprocess.Popen(
            args,
            env=self.env(env, dags_folder=dags_folder),
            cwd=str(self.home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, 5, group=True)
            out, _ = proc.communicate()
            tail = "\n".join((out or "").splitlines()[-80:])
            raise DagsTestTimeout(
                f"{' '.join(args[:4])} ... timed out after {timeout} s\n--- output (tail) ---\n{tail}",
                out or "",
            ) from None
        finally:
            if proc.poll() is None:  # e.g. KeyboardInterrupt while waiting
                stop_process(proc, 5, group=True)
        return subprocess.CompletedProcess(args, proc.returncode, out, None)

    def airflow(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``<venv>/bin/airflow *args``."""
        return self.run([self.airflow_bin, *args], env=env, timeout=timeout, **kw)

    def python(
        self, code: str, *, env: Mapping[str, str] | None = None, timeout: float = 300, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``<venv>/bin/python -c code`` in this Airflow environment (e.g. to use ObjectStoragePath)."""
        return self.run([self.python_bin, "-c", code], env=env, timeout=timeout, **kw)

    def migrate(self, timeout: float = 300) -> None:
        """``airflow db migrate`` (once; later calls do nothing)."""
        if self.migrated:
            return
        cp = self.airflow("db", "migrate", timeout=timeout)
        if cp.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed ({cp.returncode}):\n{cp.stdout[-5000:]}")
        self.migrated = True

    def _max_run_pk(self, dag_id: str) -> int:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM dag_run WHERE dag_id = ?", (dag_id,)
            ).fetchone()
            return int(row[0])
        finally:
            conn.close()

    def dags_test(
        self,
        dag_id: str,
        dags_folder: str | os.PathLike[str] | None = None,
        conf: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
        *,
        dag_file: str | os.PathLike[str] | None = None,
    ) -> DagRunResult:
        """Run ``airflow dags test <dag_id> [-c <conf json>] [-f <dag_file>]`` and return the result.

        ``dags_folder`` becomes ``[core] dags_folder`` (Airflow only runs DAGs from there);
        ``dag_file`` limits parsing to one file of it. The output is also saved to
        ``$AIRFLOW_HOME/dags-test-output/``. Raises :class:`DagsTestTimeout` after ``timeout`` s.
        """
        self.migrate()
        folder = Path(dags_folder).resolve() if dags_folder else self.dags_folder
        args = [self.airflow_bin, "dags", "test", dag_id]
        if conf is not None:
            args += ["-c", json.dumps(conf)]
        if dag_file is not None:
            args += ["-f", str(Path(dag_file).resolve())]
        before = self._max_run_pk(dag_id)
        cp = self.run(args, env=env, dags_folder=folder, timeout=timeout)
        self._runs += 1
        out_dir = self.home / "dags-test-output"
        out_dir.mkdir(exist_ok=True)
        out_path = out_dir / f"{self._runs:03d}-{dag_id}.log"
        out_path.write_text(cp.stdout)
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            runs = [
                r[0]
                for r in conn.execute(
                    "SELECT run_id FROM dag_run WHERE dag_id = ? AND id > ? ORDER BY id", (dag_id, before)
                )
            ]
        finally:
            conn.close()
        run_id = None
        if runs:
            mentioned = [r for r in runs if r in cp.stdout]
            run_id = (mentioned or runs)[-1]
        return DagRunResult(
            dag_id=dag_id,
            run_id=run_id,
            returncode=cp.returncode,
            output=cp.stdout,
            home=self.home,
            output_path=out_path,
        )

    def __repr__(self) -> str:
        return f"<AirflowEnv home={self.home} migrated={self.migrated}>"
