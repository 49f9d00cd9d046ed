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
    # the released API gives no estimated_completion: looked up once, then listed every
    # poll_interval (the job takes 3 s)
    names = [name for _, name, _ in emulator.request_log]
    assert names.count("get_job") == 1 and names.count("list_jobs") >= 2


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
        # paced by estimated_completion (3 s away), not by the 60 s poll interval: looked up,
        # then listed once, when it is estimated to be done
        names = [name for _, name, _ in emu.request_log]
        assert names.count("get_job") == 1 and names.count("list_jobs") == 1


@pytest.mark.parametrize("endpoint", ["get_job", "list_jobs"], ids=["first lookup", "watch"])
async def test_transient_errors_are_waited_out(emulator, endpoint):
    job = submit(emulator)
    emulator.inject_fault(endpoint, kind="status", status=503, times=5)  # more than max_retries
    emulator.inject_fault(endpoint, kind="drop", times=1)
    emulator.inject_fault(endpoint, kind="status", status=429, times=1)
    event = await first_event(XComplianceJobTrigger(job["id"], poll_interval=0.5))
    assert event["status"] == "complete"
    statuses = [status for _, name, status in emulator.request_log if name == endpoint]
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


async def test_triggers_of_one_type_share_one_list_request_a_round(tmp_path, monkeypatch):
    """Ten jobs waited on at once: one lookup each, then one list request a round for all of
    them (ten triggers polling on their own every second would send ten a second)."""
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path, speed=100, processing_seconds=300, one_active_job="none"
    ) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT",
            json.dumps({"conn_type": "x_compliance", "host": emu.base_url, "password": TOKEN}),
        )
        jobs = [submit(emu, ids=b"%d\n" % (20 + i)) for i in range(10)]
        events = await asyncio.gather(
            *(first_event(XComplianceJobTrigger(j["id"], poll_interval=1)) for j in jobs)
        )
        assert [(e["status"], e["job"]["id"]) for e in events] == [("complete", j["id"]) for j in jobs]
        names = [name for _, name, _ in emu.request_log]
        assert names.count("get_job") == 10
        # the jobs take 3 s: about 3 rounds, each one request whatever the number of triggers
        assert 1 <= names.count("list_jobs") <= 8, names


async def test_a_permanent_error_while_watching_reaches_every_trigger(emulator):
    jobs = [submit(emulator)]
    waiting = [asyncio.create_task(first_event(XComplianceJobTrigger(jobs[0]["id"], poll_interval=0.3)))]
    waiting.append(asyncio.create_task(first_event(XComplianceJobTrigger(jobs[0]["id"], poll_interval=0.3))))
    emulator.inject_fault("list_jobs", kind="status", status=401)
    events = await asyncio.gather(*waiting)
    assert [e["status"] for e in events] == ["error", "error"]
    assert all("401" in e["message"] for e in events), events


async def test_a_fault_in_the_shared_watch_reaches_its_triggers_instead_of_hanging(emulator, monkeypatch):
    from airflow_provider_xcompliance.hooks.compliance import XComplianceHook

    async def broken(self, job_type):
        raise RuntimeError("a bug in the listing")

    monkeypatch.setattr(XComplianceHook, "alist_jobs", broken)
    job = submit(emulator)
    event = await first_event(XComplianceJobTrigger(job["id"], poll_interval=0.2))
    assert event["status"] == "error" and "a bug in the listing" in event["message"], event
