"""A throw-away Redis server for tests (the Celery broker of tests/support/celery_cluster.py).

``redis-server`` comes from Debian's ``redis-server`` package (``.ci/run`` installs it). Each
server listens on a free 127.0.0.1 port only, keeps nothing on disk (no RDB snapshots, no AOF)
and has its own working directory; the package's system service, if any, is left alone.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port
from .procs import die_with_parent, stop_process

__all__ = ["RedisServer", "RedisStartError", "redis_server_binary", "running_redis"]


class RedisStartError(RuntimeError):
    """redis-server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``, e.g. for ``[celery] broker_url``."""
        return f"redis://{self.host}:{self.port}/{db}"

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise FileNotFoundError(
            "redis-server not found: install Debian's 'redis-server' package, as .ci/run does "
            "(apt-get install --no-install-recommends redis-server)"
        )
    return found


@contextmanager
def running_redis(*, timeout: float = 30.0) -> Iterator[RedisServer]:
    """Run ``redis-server`` on a free 127.0.0.1 port for the ``with`` block; SIGTERM (then
    SIGKILL) and remove its directory on the way out, also when start-up failed halfway."""
    base = Path(tempfile.mkdtemp(prefix="redis-"))
    log_path = base / "redis.log"
    host, port = "127.0.0.1", free_port()
    cmd = [
        redis_server_binary(),
        "--bind",
        host,
        "--port",
        str(port),
        "--unixsocket",
        "",  # none
        "--protected-mode",
        "yes",
        "--save",
        "",  # no RDB snapshots
        "--appendonly",
        "no",
        "--dir",
        str(base),
        "--daemonize",
        "no",
        "--logfile",
        str(log_path),
        "--databases",
        "4",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=base,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only a prctl call
    )
    server = RedisServer(host=host, port=port, proc=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout
        while not server.ping():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else "(no log)"
                raise RedisStartError(
                    f"redis-server on {host}:{port} not up (exit code {proc.poll()})\n{tail}"
                )
            time.sleep(0.1)
        yield server
    finally:
        stop_process(proc, 10, group=True)
        shutil.rmtree(base, ignore_errors=True)
