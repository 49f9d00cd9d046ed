"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket
import threading

__all__ = ["free_port", "free_ports"]

_lock = threading.Lock()
_handed_out: set[int] = set()


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``n`` distinct TCP ports that are free on ``host`` right now.

    All ``n`` sockets are held open while choosing, so the ports are distinct from each
    other; ports already returned by this module in this process are never returned again
    (the kernel may hand a just-closed port out twice in a row otherwise).
    """
    with _lock:
        held: list[socket.socket] = []
        ports: list[int] = []
        try:
            while len(ports) < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((host, 0))
                held.append(s)
                port = s.getsockname()[1]
                if port in _handed_out:
                    continue
                ports.append(port)
        finally:
            for s in held:
                s.close()
        _handed_out.update(ports)
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    """Return one TCP port that is free on ``host`` (127.0.0.1 by default)."""
    return free_ports(1, host)[0]
