"""The hook against the emulator, over real HTTP on loopback (the fixtures `emulator` and `hook` are
tests/conftest.py's; the S3 round trip is in tests/integration/test_hook_s3.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_xcompliance.client.signed_urls import GRANULE as RESUMABLE_GRANULE
from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from airflow_provider_xcompliance.exceptions import (
    InvalidIdError,
    JobEndedError,
    JobNotComplete,
    UploadWindowExpired,
    XComplianceAuthError,
    XComplianceConflict,
    XComplianceError,
    XComplianceInvalidRequest,
    XComplianceNotFound,
    XComplianceRateLimited,
    XComplianceServerError,
    XComplianceStorageError,
)
from airflow_provider_xcompliance.reports import DownloadSummary, UploadReport
from tests.support.hook_on_emulator import TOKEN, connect, count_requests, wait_until_done

# --- endpoints --------------------------------------------------------------------------


def test_create_get_list(hook, emulator):
    assert hook.list_jobs("tweets") == []
    job = hook.create_job("tweets", name="weekly-audit")
    assert job.id.isdigit() and len(job.id) == 19
    assert (job.type, job.name, job.status, job.resumable) == ("tweets", "weekly-audit", "created", True)
    assert job.upload_expires_at - job.created_at == timedelta(seconds=9)  # 900 s at speed 100
    assert job.upload_url and job.download_url
    again = hook.get_job(job.id)
    assert (again.id, again.name, again.status) == (job.id, "weekly-audit", "created")
    assert [j.id for j in hook.list_jobs("tweets")] == [job.id]
    assert [j.id for j in hook.list_jobs("tweets", status="created")] == [job.id]
    assert hook.list_jobs("tweets", status="complete") == []
    assert hook.list_jobs("users") == []
    unnamed = hook.create_job("users")
    assert unnamed.name is None and hook.find_job("tweets", "weekly-audit").id == job.id


def test_errors_are_typed(hook, emulator, monkeypatch):
    with pytest.raises(XComplianceNotFound, match="404"):
        hook.get_job("1234567890123456789")
    hook.create_job("tweets", name="first")
    with pytest.raises(XComplianceConflict, match="already in progress") as conflict:
        hook.create_job("tweets", name="second")
    assert conflict.value.status == 409 and conflict.value.type.endswith("/conflict")
    with pytest.raises(ValueError, match="64"):
        hook.create_job("users", name="n" * 65)
    bad = connect(monkeypatch, emulator, conn_id="x_bad", token="wrong-token")
    with pytest.raises(XComplianceAuthError) as auth:
        bad.list_jobs("tweets")
    assert auth.value.status == 401 and "wrong-token" not in str(auth.value)
    assert count_requests(emulator, "list_jobs")[401] == 1  # not retried


def test_retried_create_finds_its_own_job(hook):
    first = hook.create_job("tweets", name="run-42")
    assert hook.create_job("tweets", name="run-42").id == first.id  # conflict with itself: reused
    with pytest.raises(XComplianceConflict):
        hook.create_job("tweets", name="run-43")


def test_test_connection(hook, emulator, monkeypatch):
    ok, message = hook.test_connection()
    assert ok and emulator.base_url in message
    ok, message = connect(monkeypatch, emulator, conn_id="x_bad", token="nope").test_connection()
    assert not ok and "401" in message and "nope" not in message


# --- reliability --------------------------------------------------------------------------


def test_server_errors_and_dropped_connections_are_retried(hook, emulator):
    job = hook.create_job("tweets")
    emulator.inject_fault("get_job", kind="status", status=503, times=2)
    assert hook.get_job(job.id).id == job.id
    assert count_requests(emulator, "get_job") == Counter({503: 2, 200: 1})
    emulator.inject_fault("get_job", kind="drop", times=1)
    assert hook.get_job(job.id).id == job.id
    emulator.inject_fault("list_jobs", kind="status", status=500, times=10)
    with pytest.raises(XComplianceServerError):
        hook.list_jobs("tweets")
    assert count_requests(emulator, "list_jobs")[500] == 4  # 1 + max_retries


def test_rate_limit_waits_for_the_reset(monkeypatch, tmp_path):
    # 3 lookups per 900 s window, and the window passes 300 times faster: 3 s.
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path, speed=300, rate_limit=3) as emulator:
        hook = connect(monkeypatch, emulator)
        job = hook.create_job("tweets")
        for _ in range(3):
            hook.get_job(job.id)
        assert hook.last_rate_limit.remaining == 0
        hook.get_job(job.id)  # answered 429 first, then waited for x-rate-limit-reset
        statuses = [status for _, name, status in emulator.request_log if name == "get_job"]
        assert statuses[:4] == [200, 200, 200, 429] and statuses[-1] == 200
        assert statuses.count(429) <= 2

        impatient = connect(monkeypatch, emulator, conn_id="x_impatient", max_rate_limit_wait=0)
        for _ in range(4):
            try:
                impatient.get_job(job.id)
            except XComplianceRateLimited as error:
                assert error.reset_at > datetime.now(UTC) - timedelta(seconds=1)
                break
        else:
            pytest.fail("no 429 reached the caller")


# --- upload and download ------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path):
    ids, truth = tmp_path / "ids.txt", tmp_path / "truth.csv"
    generate_dataset(100_000, "tweets", ids, truth, seed=7)
    return ids, truth


def test_round_trip_of_100k_ids_matches_the_ground_truth(monkeypatch, tmp_path, dataset):
    ids, truth = dataset
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=100, ground_truth=truth
    ) as emulator:
        hook = connect(monkeypatch, emulator)
        job = hook.create_job("tweets", name="round-trip")
        report = hook.upload_ids(job, ids)
        assert report["ids"] == 100_000 and report["bytes"] == ids.stat().st_size
        assert set(report) == set(UploadReport.__annotations__) and report["already_uploaded"] is False
        assert emulator.submission_path(job.id).read_bytes() == ids.read_bytes()
        assert wait_until_done(hook, job.id).status == "complete"

        summary = hook.download_results(job.id, tmp_path / "out" / "results.jsonl")
        assert set(summary) == set(DownloadSummary.__annotations__)
        landed = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
        expected = list(expected_results(ids.read_text().split(), "tweets", ground_truth=truth))
        assert [json.loads(line) for line in landed] == expected
        assert summary["lines"] == len(expected) > 3000
        assert summary["by_reason"] == dict(sorted(Counter(e["reason"] for e in expected).items()))
        assert summary["path"] == f"file://{tmp_path}/out/results.jsonl"
        assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "results.jsonl"]


def test_resumable_upload_survives_dropped_chunks(hook, emulator, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbf" + b"".join(b"%d\r\n" % (10**17 + i) for i in range(60_000)))
    job = hook.create_job("users", resumable=True)
    emulator.inject_fault("upload", kind="drop", times=2, after_bytes=100_000)
    report = hook.upload_ids(job, ids, chunk_size=RESUMABLE_GRANULE)
    assert report["ids"] == 60_000 and report["resumable"] is True
    stored = emulator.submission_path(job.id).read_bytes()
    assert stored == b"".join(b"%d\n" % (10**17 + i) for i in range(60_000))
    assert count_requests(emulator, "upload_session")[200] == 1
    assert wait_until_done(hook, job.id).status == "complete"


def test_resumable_upload_of_nothing(hook, emulator):
    job = hook.create_job("tweets", resumable=True)
    assert hook.upload_ids(job, [])["ids"] == 0
    assert wait_until_done(hook, job.id).status == "complete"
    assert hook.download_results(job.id, emulator.data_dir / "none.jsonl")["lines"] == 0


def test_simple_upload_from_an_iterable(hook, emulator):
    job = hook.create_job("tweets")
    report = hook.upload_ids(job.id, (str(10**18 + i) for i in range(1000)))
    assert report["ids"] == 1000 and report["source"] == "the given IDs"
    assert emulator.submission_path(job.id).read_text().split() == [str(10**18 + i) for i in range(1000)]


@pytest.mark.parametrize("resumable", [False, True])
def test_bad_line_stops_the_upload_before_it_completes(hook, emulator, tmp_path, resumable):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"".join(b"%d\n" % i for i in range(1, 200_001)) + b"12x\n" + b"5\n" * 10)
    job = hook.create_job("tweets", resumable=resumable)
    with pytest.raises(InvalidIdError, match=r"ids\.txt, line 200001: '12x'"):
        hook.upload_ids(job, ids, chunk_size=RESUMABLE_GRANULE)
    time.sleep(0.2)
    assert hook.get_job(job.id).status == "created"
    assert not emulator.submission_path(job.id).exists()


def test_expired_upload_url_is_refused(hook, emulator, tmp_path):
    job = hook.create_job("tweets")
    past = dataclasses.replace(job, upload_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(UploadWindowExpired, match=f"upload URL of compliance job {job.id} expired"):
        hook.upload_ids(past, ["1"])
    time.sleep(9.5)  # the 900 s window at speed 100
    lying = dataclasses.replace(job, upload_expires_at=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(UploadWindowExpired, match="ExpiredToken") as caught:
        hook.upload_ids(lying, ["1"])
    assert "X-Goog-Signature" not in str(caught.value) and "http" not in str(caught.value)
    assert hook.get_job(job.id).status == "expired"


def test_forged_upload_url_is_refused(hook):
    job = hook.create_job("tweets")
    forged = dataclasses.replace(
        job, upload_url=job.upload_url.replace("X-Goog-Expires=", "X-Goog-Expires=9")
    )
    with pytest.raises(XComplianceStorageError, match="SignatureDoesNotMatch") as caught:
        hook.upload_ids(forged, ["1"])
    assert caught.value.status == 403


def test_download_refuses_unfinished_and_failed_jobs(hook, emulator, tmp_path):
    job = hook.create_job("tweets", resumable=False)
    with pytest.raises(JobNotComplete, match=f"{job.id} is created"):
        hook.download_results(job.id, tmp_path / "r.jsonl")
    # The client validates IDs, so send a bad file straight to the signed URL, as a careless
    # client would, to make the job fail.
    import requests

    requests.put(
        job.upload_url, data=b"1\nnot-an-id\n", headers={"Content-Type": "text/plain"}
    ).raise_for_status()
    failed = wait_until_done(hook, job.id)
    assert failed.status == "failed" and failed.error
    with pytest.raises(JobEndedError, match=f"{job.id} is failed: .*line 2"):
        hook.download_results(job.id, tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()


def test_download_is_atomic_and_retried(hook, emulator, tmp_path):
    job = hook.create_job("tweets")
    hook.upload_ids(job, (str(i) for i in range(1, 300_001)))
    wait_until_done(hook, job.id)
    target = tmp_path / "results" / "tweets.jsonl"
    emulator.inject_fault("download", kind="drop", times=1)
    summary = hook.download_results(job.id, target)
    assert summary["lines"] == len(target.read_text().splitlines()) > 0
    assert count_requests(emulator, "download")  # the drop and the successful retry were both seen

    first = target.read_bytes()
    emulator.inject_fault("download", kind="drop", times=10)
    with pytest.raises(XComplianceError):
        hook.download_results(job.id, target)
    assert target.read_bytes() == first  # the failed download left the old object whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["tweets.jsonl"]  # and no partial file


def test_download_into_a_folder_names_the_file(hook, emulator, tmp_path):
    job = hook.create_job("users")
    hook.upload_ids(job, ["12", "13"])
    wait_until_done(hook, job.id)
    summary = hook.download_results(job.id, f"file://{tmp_path}/landing/")
    assert summary["path"] == f"file://{tmp_path}/landing/users-{job.id}.jsonl"
    assert (tmp_path / "landing" / f"users-{job.id}.jsonl").exists()


# --- async path -----------------------------------------------------------------------------


def test_async_get_job_shares_parsing_and_retries(hook, emulator):
    job = hook.create_job("tweets", name="async")
    emulator.inject_fault("get_job", kind="status", status=502, times=1)
    emulator.inject_fault("get_job", kind="drop", times=1)
    fetched = asyncio.run(hook.aget_job(job.id))
    assert (fetched.id, fetched.name, fetched.status) == (job.id, "async", "created")
    assert hook.last_rate_limit.limit == 150
    with pytest.raises(XComplianceNotFound):
        asyncio.run(hook.aget_job("42"))
    with pytest.raises(XComplianceInvalidRequest):
        emulator.inject_fault("get_job", kind="status", status=400, times=1)
        asyncio.run(hook.aget_job(job.id))


# --- memory --------------------------------------------------------------------------------------


def _traced_peak_upload(hook, ids, resumable):
    import tracemalloc

    job = hook.create_job("tweets", resumable=resumable)
    tracemalloc.start()
    try:
        report = hook.upload_ids(job, ids)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["bytes"] == ids.stat().st_size
    return peak


@pytest.mark.parametrize("resumable", [False, True])
def test_upload_memory_stays_flat(hook, emulator, tmp_path, resumable):
    """Python's peak allocations while uploading do not grow with the file: 60 MB and 140 MB
    files (both beyond what the read-ahead and a chunk hold) peak within 16 MiB of each other
    (how full the read-ahead queue runs depends on thread timing), far below either file's size."""

    def ids_file(name, count):
        path = tmp_path / name
        with path.open("wb") as out:
            for start in range(0, count, 100_000):
                out.write(b"".join(b"%d\n" % (10**18 + i) for i in range(start, start + 100_000)))
        return path

    _traced_peak_upload(hook, ids_file("warm-up.txt", 100_000), resumable)  # lazy imports, first use
    wait_until_done(hook, hook.list_jobs("tweets")[0].id)
    small = _traced_peak_upload(hook, ids_file("small.txt", 3_000_000), resumable)
    wait_until_done(hook, hook.list_jobs("tweets")[0].id)
    large = _traced_peak_upload(hook, ids_file("large.txt", 7_000_000), resumable)
    assert abs(large - small) < 16 * 2**20, f"peaks {small / 2**20:.1f} and {large / 2**20:.1f} MiB"
    assert max(small, large) < 48 * 2**20, f"peaks {small / 2**20:.1f} and {large / 2**20:.1f} MiB"


def test_download_memory_stays_flat(monkeypatch, tmp_path):
    """Python's peak allocations while landing results do not grow with them: 15 MB and 75 MB
    of results peak within 16 MiB of each other."""
    import tracemalloc

    peaks = []
    for count in (100_000, 500_000):
        ids, truth = tmp_path / f"ids-{count}.txt", tmp_path / f"truth-{count}.csv"
        generate_dataset(count, "tweets", ids, truth, seed=11, flagged_fraction=1.0)  # every ID flagged
        with XComplianceEmulator(
            token=TOKEN, data_dir=tmp_path / f"emu-{count}", speed=100, ground_truth=truth
        ) as emulator:
            hook = connect(monkeypatch, emulator)
            job = hook.create_job("tweets")
            hook.upload_ids(job, ids)
            wait_until_done(hook, job.id, timeout=120)
            hook.download_results(job.id, tmp_path / "warm-up.jsonl")  # lazy imports, first use
            tracemalloc.start()
            try:
                summary = hook.download_results(job.id, tmp_path / f"results-{count}.jsonl")
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            assert summary["bytes"] > count * 100
    small, large = peaks
    assert abs(large - small) < 16 * 2**20, f"peaks {small / 2**20:.1f} and {large / 2**20:.1f} MiB"
