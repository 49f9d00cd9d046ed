"""The fault switches added for the reference page: 408/429 on signed URLs, partial chunks,
lost final answers, NoSuchKey after completion, and the "all" fault profile with a correct,
retrying client."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_xcompliance.emulator import expected_results
from airflow_provider_xcompliance.emulator.faults import parse_fault_spec

from .helpers import api_session, create_job, get_job, jsonl, put_ids, tweet_ids, wait_status, xml_error

UNIT = 256 * 1024
START = {"Content-Type": "text/plain", "x-goog-resumable": "start"}


def _blob(count: int) -> bytes:
    return ("\n".join(tweet_ids(count)) + "\n").encode()


def _chunk(session, data, first, total="*"):
    return requests.put(
        session, data=data, headers={"Content-Range": f"bytes {first}-{first + len(data) - 1}/{total}"}
    )


def _query(session, total="*"):
    return requests.put(session, data=b"", headers={"Content-Range": f"bytes */{total}"})


def _stored(r) -> int:
    assert r.status_code == 308
    return int(r.headers["Range"].split("-")[1]) + 1 if "Range" in r.headers else 0


def _complete_job(emu, s, ids):
    job = create_job(s, emu)
    assert put_ids(job["upload_url"], "\n".join(ids)).status_code == 200
    return wait_status(s, emu, job["id"])


@pytest.mark.parametrize(
    "status,code", [(408, "RequestTimeout"), (429, "TooManyRequests"), (503, "ServiceUnavailable")]
)
def test_status_faults_on_every_signed_url_request(emu, status, code):
    s = api_session(emu)
    simple = create_job(s, emu, "tweets")
    resumable = create_job(s, emu, "users", resumable=True)

    def check(r):
        assert r.status_code == status
        error = xml_error(r)
        assert error["Code"] == code and "injected fault" in error["Details"]

    emu.inject_fault("upload", "status", status=status)
    check(put_ids(simple["upload_url"], b"1\n" * 1000))
    assert put_ids(simple["upload_url"], b"1400000000000000015\n").status_code == 200
    emu.inject_fault("upload", "status", status=status)
    check(requests.post(resumable["upload_url"], headers=START))
    session = requests.post(resumable["upload_url"], headers=START).headers["Location"]
    emu.inject_fault("upload_session", "status", status=status)
    check(_chunk(session, b"5\n", 0, 2))
    assert _query(session, 2).status_code == 308  # nothing was stored
    assert _chunk(session, b"5\n", 0, 2).status_code == 200
    done = wait_status(s, emu, simple["id"])
    emu.inject_fault("download", "status", status=status)
    check(requests.get(done["download_url"]))
    assert requests.get(done["download_url"]).status_code == 200


def test_partial_chunk_keeps_fewer_whole_units(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _blob(60_000)  # 1.2 MB
    total = len(data)
    session = requests.post(job["upload_url"], headers=START).headers["Location"]
    emu.inject_fault("upload_session", "partial_chunk")
    r = _chunk(session, data[:UNIT], 0, total)
    assert r.status_code == 308 and "Range" not in r.headers  # the only unit was dropped
    assert emu.pending_faults() == []
    emu.inject_fault("upload_session", "partial_chunk")
    r = _chunk(session, data[: 3 * UNIT], 0, total)
    assert _stored(r) == 2 * UNIT  # one unit fewer than sent
    assert _stored(_query(session, total)) == 2 * UNIT
    # the emulator really keeps only those bytes: a chunk after the reported offset is refused
    r = _chunk(session, data[3 * UNIT : 4 * UNIT], 3 * UNIT, total)
    assert r.status_code == 400 and "only 524288 bytes are stored" in xml_error(r)["Details"]
    # the final chunk is never cut: the fault waits for a non-final one
    emu.inject_fault("upload_session", "partial_chunk")
    r = _chunk(session, data[2 * UNIT :], 2 * UNIT, total)
    assert r.status_code == 200
    assert len(emu.pending_faults()) == 1
    emu.clear_faults()
    assert emu.submission_path(job["id"]).read_bytes() == data
    assert wait_status(s, emu, job["id"])["status"] == "complete"


def test_partial_chunk_of_an_unaligned_overlap(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _blob(60_000)
    session = requests.post(job["upload_url"], headers=START).headers["Location"]
    assert _stored(_chunk(session, data[:UNIT], 0)) == UNIT
    emu.inject_fault("upload_session", "partial_chunk")
    r = _chunk(session, data[1000 : 1000 + 2 * UNIT], 1000)  # ends at 2 units + 1000
    assert _stored(r) == 2 * UNIT  # the partial unit is gone, the rest is whole units
    assert emu.submission_path(job["id"]).exists() is False


def test_lose_final_answer(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _blob(20_000)
    total = len(data)
    session = requests.post(job["upload_url"], headers=START).headers["Location"]
    assert _stored(_chunk(session, data[:UNIT], 0, total)) == UNIT
    emu.inject_fault("upload_session", "lose_final_answer")
    with pytest.raises(requests.ConnectionError):
        _chunk(session, data[UNIT:], UNIT, total)
    assert ("PUT", "upload_session", 0) in emu.request_log
    assert emu.submission_path(job["id"]).read_bytes() == data  # stored completely
    assert get_job(s, emu, job["id"])["status"] in ("in_progress", "complete")
    assert _query(session, total).status_code == 200
    assert _query(session, "*").status_code == 200
    done = wait_status(s, emu, job["id"])
    assert jsonl(requests.get(done["download_url"]).text) == list(
        expected_results(tweet_ids(20_000), "tweets")
    )


def test_lose_final_answer_on_a_finalizing_query(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = requests.post(job["upload_url"], headers=START).headers["Location"]
    assert _stored(_chunk(session, b"7\n" * (UNIT // 2), 0)) == UNIT
    emu.inject_fault("upload_session", "lose_final_answer")
    with pytest.raises(requests.ConnectionError):
        _query(session, UNIT)
    assert _query(session, UNIT).status_code == 200
    assert wait_status(s, emu, job["id"])["status"] == "complete"


def test_no_such_key_after_completion(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    emu.inject_fault("download", "no_such_key", times=2)
    r = requests.get(job["download_url"])  # not complete: a real NoSuchKey, fault kept
    assert r.status_code == 404
    assert emu.pending_faults()[0].times == 2
    assert put_ids(job["upload_url"], "1400000000000000015\n").status_code == 200
    done = wait_status(s, emu, job["id"])
    for _ in range(2):
        r = requests.get(done["download_url"])
        assert r.status_code == 404
        error = xml_error(r)
        assert error["Code"] == "NoSuchKey"
        assert error["Message"] == "The specified key does not exist."
        assert error["Details"].startswith(f"No such object: twttr-tweet-compliance/{done['id']}/delivery/")
    r = requests.get(done["download_url"])
    assert r.status_code == 200 and jsonl(r.text)[0]["id"] == "1400000000000000015"


def test_parse_new_fault_specs():
    assert parse_fault_spec("upload_session:partial_chunk") == {
        "endpoint": "upload_session",
        "kind": "partial_chunk",
    }
    assert parse_fault_spec("upload_session:lose_final_answerx2") == {
        "endpoint": "upload_session",
        "kind": "lose_final_answer",
        "times": 2,
    }
    assert parse_fault_spec("download:no_such_keyx3") == {
        "endpoint": "download",
        "kind": "no_such_key",
        "times": 3,
    }
    assert parse_fault_spec("get_job:usage_cap") == {"endpoint": "get_job", "kind": "usage_cap"}
    assert parse_fault_spec("upload_session:delay:30x2@1") == {
        "endpoint": "upload_session",
        "kind": "delay",
        "seconds": 30.0,
        "times": 2,
        "skip": 1,
    }
    assert parse_fault_spec("download:status:408x2") == {
        "endpoint": "download",
        "kind": "status",
        "status": 408,
        "times": 2,
    }
    for bad in (
        "download:partial_chunk",
        "upload:lose_final_answer",
        "get_job:no_such_key",
        "upload:usage_cap",
        "download:no_such_key:3",
    ):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


def test_fault_profile_validation(make_emulator):
    with pytest.raises(ValueError):
        make_emulator(fault_profile="some")


# -- the "all" profile, against a correct client ----------------------------------------------


def _retrying(call, attempts: int = 12):
    """Retry 408, 429, 5xx and dropped connections with (tiny) exponential backoff."""
    for attempt in range(attempts):
        try:
            r = call()
        except requests.ConnectionError:
            r = None
        if r is not None and r.status_code not in (408, 429) and r.status_code < 500:
            return r
        time.sleep(0.005 * 2 ** min(attempt, 5))
    raise AssertionError("gave up")


def _get_job(s, emu, job_id):
    return _retrying(lambda: s.get(f"{emu.base_url}/2/compliance/jobs/{job_id}")).json()["data"]


def _wait(s, emu, job_id):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        job = _get_job(s, emu, job_id)
        if job["status"] in ("complete", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError("not complete")


def _resumable_upload(url, data, chunk=2 * UNIT):
    total = len(data)
    start = _retrying(lambda: requests.post(url, headers=START))
    assert start.status_code == 201
    session = start.headers["Location"]
    pos = 0
    while True:
        end = min(pos + chunk, total)
        try:
            r = _chunk(session, data[pos:end], pos, total)
        except requests.ConnectionError:
            r = None
        if r is not None and r.status_code in (200, 201):
            return
        if r is None or r.status_code != 308:
            r = _retrying(lambda: _query(session, total))
            if r.status_code in (200, 201):
                return
        pos = _stored(r)


def _download(s, emu, job_id, no_such_key_retries=3):
    for _ in range(no_such_key_retries + 1):
        job = _get_job(s, emu, job_id)  # a fresh URL each time
        r = _retrying(lambda url=job["download_url"]: requests.get(url))
        if r.status_code == 404 and xml_error(r)["Code"] == "NoSuchKey":
            time.sleep(0.01)
            continue
        assert r.status_code == 200
        return r.content
    raise AssertionError("NoSuchKey for good")


def _statuses(emu, endpoint):
    return [status for _, name, status in emu.request_log if name == endpoint]


def test_all_profile_simple_upload_and_download(make_emulator):
    emu = make_emulator(speed=1000, processing_seconds=20, upload_window_seconds=600_000, fault_profile="all")
    assert emu.fault_profile == "all"
    s = api_session(emu)
    ids = tweet_ids(50_000)
    r = s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"})
    assert r.status_code == 200  # create_job is never faulted
    job = r.json()["data"]
    data = ("\n".join(ids) + "\n").encode()
    assert _retrying(lambda: put_ids(job["upload_url"], data)).status_code == 200
    assert _statuses(emu, "upload") == [408, 200]
    _wait(s, emu, job["id"])
    got = _download(s, emu, job["id"])
    assert got == emu.results_path(job["id"]).read_bytes()
    assert jsonl(got.decode()) == list(expected_results(ids, "tweets"))
    # 408 (front), NoSuchKey twice, 429 (front), then the object
    assert _statuses(emu, "download") == [408, 404, 404, 429, 200]
    lookups = _statuses(emu, "get_job")
    assert all(st == 503 for st in lookups[3::4]) and 503 not in lookups[:3]
    assert all(st == 200 for i, st in enumerate(lookups) if i % 4 != 3)


def test_all_profile_resumable_upload(make_emulator):
    emu = make_emulator(speed=1000, processing_seconds=20, upload_window_seconds=600_000, fault_profile="all")
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _blob(75_000)[:1_500_000]
    data = data[: data.rfind(b"\n") + 1]
    _resumable_upload(job["upload_url"], data)
    assert emu.submission_path(job["id"]).read_bytes() == data
    assert _statuses(emu, "upload") == [408, 201]
    # 1 chunk0 408 | 2 query 308 | 3 chunk0 partial 308 | 4 chunk 429 | 5 query 308
    # 6 chunk 308 | 7 chunk 503 | 8 query 308 | 9 chunk 308 | 10 final chunk dropped
    # 11 query 308 | 12 final chunk stored, answer lost | 13 query 408 | 14 query 200
    assert _statuses(emu, "upload_session") == [
        408,
        308,
        308,
        429,
        308,
        308,
        503,
        308,
        308,
        0,
        308,
        0,
        408,
        200,
    ]
    done = _wait(s, emu, job["id"])
    assert done["status"] == "complete"
    got = _download(s, emu, job["id"])
    assert jsonl(got.decode()) == list(expected_results(data.decode().split(), "tweets"))


def test_all_profile_leaves_usage_and_create_alone(make_emulator):
    emu = make_emulator(fault_profile="all", one_active_job="none")
    s = api_session(emu)
    for _ in range(6):
        assert s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"}).status_code == 200
    codes = [s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code for _ in range(8)]
    assert codes == [200, 200, 200, 503, 200, 200, 200, 503]


def test_a_fault_may_let_requests_through_first(emu):
    """skip=1: the first session chunk is stored untouched, the second gets the fault."""
    s = api_session(emu)
    job = create_job(s, emu, "tweets", resumable=True)
    session = requests.post(job["upload_url"], data=b"", headers=START).headers["Location"]
    blob = _blob(30_000)
    emu.inject_fault("upload_session", "status", status=503, skip=1)
    assert _stored(_chunk(session, blob[:UNIT], 0)) == UNIT
    assert len(emu.pending_faults()) == 1  # still waiting for its request
    assert _chunk(session, blob[UNIT : 2 * UNIT], UNIT).status_code == 503
    assert emu.pending_faults() == []
    assert _stored(_query(session)) == UNIT  # the faulted chunk stored nothing
    last = _chunk(session, blob[UNIT:], UNIT, total=len(blob))
    assert last.status_code in (200, 201)
