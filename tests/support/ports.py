"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import fcntl
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .parallel import run_dir

__all__ = ["free_port", "free_ports"]

_lock = threading.Lock()
_handed_out: set[int] = set()


@contextmanager
def _registry() -> Iterator[set[int]]:
    """The ports any process of this test run was handed, locked; the ones added to it are kept.

    The pytest-xdist workers run side by side: a port one of them was handed, and has not bound
    yet, is free to the kernel. Outside a run's folder (tests/support/parallel.py), the ports are
    this process's alone.
    """
    folder = run_dir()
    if folder is None:
        yield set()
        return
    path = folder / "ports"
    with open(path, "a+") as registry:
        fcntl.flock(registry, fcntl.LOCK_EX)  # released when the file is closed
        registry.seek(0)
        taken = {int(line) for line in registry.read().split()}
        handed = set(taken)
        yield handed
        registry.write("".join(f"{port}\n" for port in sorted(handed - taken)))


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``n`` distinct TCP ports that are free on ``host`` right now.

    All ``n`` sockets are held open while choosing, so the ports are distinct from each
    other; ports already returned by this module in this process, or in another process of the
    same test run, are never returned again (the kernel may hand a just-closed port out twice in
    a row otherwise).
    """
    with _lock, _registry() as elsewhere:
        held: list[socket.socket] = []
        ports: list[int] = []
        try:
            while len(ports) < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((host, 0))
                held.append(s)
                port = s.getsockname()[1]
                if port in _handed_out or port in elsewhere:
                    continue
                ports.append(port)
        finally:
            for s in held:
                s.close()
        _handed_out.update(ports)
        elsewhere.update(ports)
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    """Return one TCP port that is free on ``host`` (127.0.0.1 by default)."""
    return free_ports(1, host)[0]
