"""A real, throw-away PostgreSQL server for tests.

The binaries come from Debian's ``postgresql`` package (``.ci/run`` installs it), which puts
them in ``/usr/lib/postgresql/<major>/bin``, not on ``PATH``. Each server gets its own data
directory, unix socket directory and free 127.0.0.1 port, so it never clashes with a system
cluster (Debian's package may create and start one on 5432) or with another test run.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port

__all__ = ["PostgresServer", "PostgresStartError", "postgres_bin_dir", "running_postgres"]

_BIN_GLOB = "/usr/lib/postgresql/*/bin"

# Durability is worthless for throw-away data; these make initdb-to-ready and writes fast.
_TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}


class PostgresStartError(RuntimeError):
    """PostgreSQL could not be set up or started; the message carries the command's output."""


@dataclass(frozen=True)
class PostgresServer:
    """Where a running test server listens. ``uri`` is in Airflow connection-URI form."""

    host: str
    port: int
    user: str
    database: str
    socket_dir: Path
    data_dir: Path
    startup_seconds: float

    @property
    def uri(self) -> str:
        """``postgres://postgres@127.0.0.1:<port>/<database>`` (trust auth, no password)."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.database}"

    def conn_env(self, conn_id: str = "postgres_default") -> dict[str, str]:
        """``{"AIRFLOW_CONN_<CONN_ID>": uri}`` for an Airflow ``postgres`` connection."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.uri}


def postgres_bin_dir() -> Path:
    """``/usr/lib/postgresql/<newest major>/bin`` (the one holding ``initdb``)."""
    found = [Path(d) for d in glob.glob(_BIN_GLOB) if os.access(Path(d) / "initdb", os.X_OK)]
    if not found:
        raise FileNotFoundError(
            f"PostgreSQL server binaries not found ({_BIN_GLOB}/initdb): install Debian's "
            "'postgresql' package, as .ci/run does (apt-get install --no-install-recommends postgresql)"
        )

    def major(d: Path) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in d.parent.name.split("."))
        except ValueError:
            return (-1,)

    return max(found, key=major)


def _as_postgres() -> list[str]:
    """Command prefix: initdb and postgres refuse to run as root, so root drops to ``postgres``."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"  # util-linux, always on Debian
    return [runuser, "-u", "postgres", "--"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.run(
        _as_postgres() + cmd,
        cwd=cwd,  # the caller's cwd may be unreadable for the postgres user
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise PostgresStartError(
            f"{' '.join(cmd)} exited with code {proc.returncode}\n{proc.stdout.decode(errors='replace')}"
        )


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "--- postgres log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_postgres(database: str = "xc_test", *, timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Run a fresh PostgreSQL cluster on a free 127.0.0.1 port for the ``with`` block.

    Trust authentication, superuser ``postgres``, one extra database ``database``. On exit the
    server is stopped with ``-m immediate`` (no checkpoint: the data is thrown away) and its
    directory removed, also when start-up failed halfway.
    """
    bin_dir = postgres_bin_dir()
    base = Path(tempfile.mkdtemp(prefix="pg-"))  # short path: unix socket paths max 107 bytes
    data_dir, socket_dir, log_path = base / "data", base / "sock", base / "postgres.log"
    socket_dir.mkdir()
    log_path.touch()
    if os.geteuid() == 0:
        for p in (base, socket_dir, log_path):
            shutil.chown(p, "postgres", "postgres")
    # No PG* variables from the caller (PGHOST, PGPORT, PGDATA...) may redirect our commands.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"

    pg_ctl = str(bin_dir / "pg_ctl")
    started = False

    def stop() -> None:
        atexit.unregister(stop)
        if started:
            try:
                _run([pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"], base, env, 60)
            except (PostgresStartError, subprocess.TimeoutExpired):
                pass  # already gone; the directory goes anyway
        shutil.rmtree(base, ignore_errors=True)

    # pg_ctl detaches the server, so it would outlive an interpreter that exits without
    # closing this generator; atexit covers that (not SIGKILL of pytest, which nothing can).
    atexit.register(stop)
    try:
        t0 = time.monotonic()
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres"]
        initdb += ["-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"]
        _run(initdb, base, env, timeout)
        host, port = "127.0.0.1", free_port()
        settings = {
            **_TEST_SETTINGS,
            "listen_addresses": f"'{host}'",
            "port": str(port),
            "unix_socket_directories": f"'{socket_dir}'",
        }
        with open(data_dir / "postgresql.conf", "a") as conf:  # stays owned by postgres
            conf.write("\n# tests/support/postgres.py\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        started = True  # from here on a (half-)started server is stopped on the way out
        try:
            start = [pg_ctl, "-D", str(data_dir), "-l", str(log_path), "-w", "-t", str(int(timeout)), "start"]
            _run(start, base, env, timeout + 10)
        except PostgresStartError as e:
            raise PostgresStartError(f"{e}\n{_log_tail(log_path)}") from None
        createdb = [str(bin_dir / "createdb"), "-h", str(socket_dir), "-p", str(port), "-U", "postgres"]
        _run([*createdb, database], base, env, timeout)
        server = PostgresServer(
            host=host,
            port=port,
            user="postgres",
            database=database,
            socket_dir=socket_dir,
            data_dir=data_dir,
            startup_seconds=time.monotonic() - t0,
        )
        yield server
    finally:
        stop()
