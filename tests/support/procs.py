"""Helpers for child processes that must never outlive the test run."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

__all__ = ["die_with_parent", "stop_process", "venv_bin"]

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
