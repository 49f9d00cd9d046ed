"""Helpers for child processes that must never outlive the test run."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = [
    "ProcStat",
    "die_with_parent",
    "listening_sockets",
    "open_files",
    "process_table",
    "stop_process",
    "venv_bin",
]

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


def open_files(pids: Iterable[int]) -> Iterator[tuple[int, str, str]]:
    """(pid, /proc path of the descriptor, what it points to) of every descriptor those processes
    hold open; processes and descriptors that vanish meanwhile are skipped."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                yield pid, f"/proc/{pid}/fd/{fd}", os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue


def listening_sockets(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket those processes hold (/proc/net/tcp{,6})."""
    owner = {target[8:-1]: pid for pid, _, target in open_files(pids) if target.startswith("socket:[")}
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


class ProcStat(NamedTuple):
    """What ``/proc/<pid>/stat`` says of a process that the tests use."""

    state: bytes
    ppid: int
    pgid: int
    sid: int
    started: int  # clock ticks after boot: with the pid, tells a process from a later one of that pid

    @property
    def zombie(self) -> bool:
        return self.state in (b"Z", b"X")


def process_table() -> dict[int, ProcStat]:
    """``{pid: ProcStat}`` of every process there is now, zombies included."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        state, ppid, pgid, sid, *rest = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
        table[int(entry)] = ProcStat(state, int(ppid), int(pgid), int(sid), int(rest[15]))  # field 22
    return table
