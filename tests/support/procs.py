"""Helpers for child processes that must never outlive the test run."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable

__all__ = ["die_with_parent", "listening_sockets", "stop_process", "venv_bin"]

_PR_SET_PDEATHSIG = 1


def venv_bin() -> str:
    """The ``bin`` directory of the interpreter running the tests (the project's venv)."""
    return os.path.dirname(os.path.abspath(sys.executable))


def die_with_parent() -> None:
    """``preexec_fn``: ask Linux to SIGKILL the child when the test process dies.

    Covers the case where pytest itself is killed and no fixture teardown runs.
    Does nothing where prctl is unavailable.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # pragma: no cover - not Linux
        pass


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, *, group: bool = False) -> int | None:
    """SIGTERM ``proc`` (its process group if ``group``), wait ``timeout`` s, then SIGKILL.

    Returns the exit code. Only ever signals the process (group) it was given.
    """
    if proc.poll() is not None:
        return proc.returncode

    def _send(sig: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    _send(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _send(signal.SIGKILL)
        return proc.wait(timeout=30)


def listening_sockets(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket those processes hold (/proc/net/tcp{,6})."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/net/{table}") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in owner:  # 0A: LISTEN
                    continue
                address, port = local.split(":")
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                found.append((owner[inode], socket.inet_ntop(family, raw), int(port, 16)))
    return found
