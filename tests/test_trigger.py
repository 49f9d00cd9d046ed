"""The trigger on its own, as the triggerer runs it: an asyncio loop, against the emulator."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging

import pytest
import requests

from airflow_provider_xcompliance.emulator import XComplianceEmulator
from airflow_provider_xcompliance.triggers.compliance import XComplianceJobTrigger

TOKEN = "trigger-test-token-0b7c2f"


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path, speed=100, processing_seconds=300) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT",
            json.dumps(
                {
                    "conn_type": "x_compliance",
                    "host": emu.base_url,
                    "password": TOKEN,
                    "extra": {"max_retries": 2},
                }
            ),
        )
        yield emu


def submit(emulator, ids=b"1\n2\n20\n") -> dict:
    job = requests.post(
        f"{emulator.base_url}/2/compliance/jobs",
        json={"type": "tweets"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()["data"]
    requests.put(job["upload_url"], data=ids, headers={"Content-Type": "text/plain"}).raise_for_status()
    return job


def rebuild(trigger: XComplianceJobTrigger) -> XComplianceJobTrigger:
    """What the triggerer does with the stored state: import the class path, call it with kwargs."""
    path, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON only
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**kwargs)


async def first_event(trigger: XComplianceJobTrigger, timeout: float = 30) -> dict:
    async def run():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(run(), timeout)


async def test_fires_once_the_job_completes_without_urls(emulator):
    job = submit(emulator)
    event = await first_event(rebuild(XComplianceJobTrigger(job["id"], poll_interval=1)))
    assert event["status"] == "complete" and event["job"]["id"] == job["id"]
    assert "X-Goog" not in json.dumps(event) and TOKEN not in json.dumps(event)
    # the released API gives no estimated_completion: polled every poll_interval (the job takes 3 s)
    assert [name for _, name, _ in emulator.request_log].count("get_job") >= 3


async def test_pre_release_estimated_completion_paces_the_polls(tmp_path, monkeypatch):
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path, speed=100, processing_seconds=300, estimated_completion=True
    ) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT",
            json.dumps({"conn_type": "x_compliance", "host": emu.base_url, "password": TOKEN}),
        )
        job = submit(emu)
        event = await first_event(rebuild(XComplianceJobTrigger(job["id"], poll_interval=60)))
        assert event["status"] == "complete"
        # paced by estimated_completion (3 s away), not by the 60 s poll interval
        assert [name for _, name, _ in emu.request_log].count("get_job") == 2


async def test_transient_errors_are_waited_out(emulator):
    job = submit(emulator)
    emulator.inject_fault("get_job", kind="status", status=503, times=5)  # more than max_retries
    emulator.inject_fault("get_job", kind="drop", times=1)
    emulator.inject_fault("get_job", kind="status", status=429, times=1)
    event = await first_event(XComplianceJobTrigger(job["id"], poll_interval=0.5))
    assert event["status"] == "complete"
    statuses = [status for _, name, status in emulator.request_log if name == "get_job"]
    assert statuses.count(503) == 5 and statuses.count(429) == 1 and statuses[-1] == 200


async def test_a_fresh_trigger_picks_up_after_a_restart(emulator):
    job = submit(emulator)
    first = XComplianceJobTrigger(job["id"], poll_interval=0.2)
    with pytest.raises(asyncio.TimeoutError):  # the triggerer dies while the job runs
        await first_event(first, timeout=0.5)
    event = await first_event(rebuild(first))
    assert event["status"] == "complete" and event["job"]["id"] == job["id"]


async def test_failed_and_unknown_jobs_fire_at_once(emulator):
    failed = submit(emulator, ids=b"1\nbad\n")
    emulator.wait_processed(failed["id"])
    event = await first_event(XComplianceJobTrigger(failed["id"], poll_interval=0.2))
    assert event["status"] == "failed" and "line 2" in event["message"]
    event = await first_event(XComplianceJobTrigger("1234567890123456789"))
    assert event["status"] == "error" and "404" in event["message"]


async def test_never_blocks_the_event_loop(emulator, caplog):
    job = submit(emulator)
    emulator.inject_fault("get_job", kind="delay", seconds=2.0, times=2)
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 1.0  # a blocking 2 s HTTP call would be reported
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.05)

    counting = asyncio.create_task(ticker())
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        event = await first_event(XComplianceJobTrigger(job["id"], poll_interval=0.2))
    counting.cancel()
    loop.set_debug(False)
    assert event["status"] == "complete"
    assert not [r for r in caplog.records if "took" in r.getMessage()], caplog.text
    assert ticks > 20  # the loop kept running other work during the 4 s of slow answers
