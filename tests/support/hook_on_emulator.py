"""The provider's hook on an X API emulator, for the tests that drive it directly (no Airflow run):
the bearer token of the ``emulator`` fixture, a hook on a connection to an emulator, and what the
emulator's request log and jobs say."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

__all__ = ["TOKEN", "connect", "count_requests", "wait_until_done"]

TOKEN = "hook-test-token-5f1c9a"


def connect(
    monkeypatch: Any, emulator: Any, conn_id: str = "x_compliance_default", token: str = TOKEN, **extra: Any
):
    """An ``XComplianceHook`` on the connection ``conn_id`` (an ``AIRFLOW_CONN_`` variable set through
    ``monkeypatch``) to ``emulator``; ``extra`` goes into the connection's extra."""
    from airflow_provider_xcompliance.hooks.compliance import XComplianceHook

    extra = {"timeout": 10, "max_retries": 3, **extra}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {"conn_type": "x_compliance", "host": emulator.base_url, "password": token, "extra": extra}
        ),
    )
    return XComplianceHook(x_conn_id=conn_id)


def wait_until_done(hook: Any, job_id: str, timeout: float = 30.0):
    """The job once it is neither created nor in progress (AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if job.status not in ("created", "in_progress"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status}")


def count_requests(emulator: Any, endpoint: str) -> Counter:
    """``Counter({status: requests})`` of the requests to ``endpoint`` in the emulator's log."""
    return Counter(status for _, name, status in emulator.request_log if name == endpoint)
