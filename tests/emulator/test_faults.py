"""Fault injection: status answers, dropped connections, delays; counts and clearing."""

from __future__ import annotations

import time

import pytest
import requests
import urllib3

from airflow_provider_xcompliance.emulator.faults import parse_fault_spec

from .helpers import api_session, create_job, get_job, put_ids, tweet_ids, wait_status, xml_error


def test_status_fault_on_get_job_times(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    emu.inject_fault("get_job", kind="status", status=503, times=2)
    url = f"{emu.base_url}/2/compliance/jobs/{job['id']}"
    first, second, third = s.get(url), s.get(url), s.get(url)
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json() == {
        "title": "Service Unavailable",
        "detail": "Service Unavailable",
        "type": "about:blank",
        "status": 503,
    }
    assert first.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "x-rate-limit-reset" in first.headers
    assert third.json()["data"]["id"] == job["id"]
    assert [e for e in emu.request_log if e[1] == "get_job"] == [
        ("GET", "get_job", 503),
        ("GET", "get_job", 503),
        ("GET", "get_job", 200),
    ]
    assert emu.pending_faults() == []


def test_429_fault_has_rate_limit_headers(emu):
    s = api_session(emu)
    emu.inject_fault("list_jobs", kind="status", status=429, times=1)
    before = time.time()
    r = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets")
    assert r.status_code == 429
    assert r.json() == {
        "title": "Too Many Requests",
        "detail": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
    }
    assert r.headers["x-rate-limit-remaining"] == "0"
    assert r.headers["x-rate-limit-limit"] == "150"
    assert before < int(r.headers["x-rate-limit-reset"]) <= before + 3
    r = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets")
    assert r.status_code == 200 and r.headers["x-rate-limit-remaining"] == "149"


def test_fault_applies_to_its_endpoint_only(emu):
    s = api_session(emu)
    emu.inject_fault("create_job", kind="status", status=500)
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 200
    assert s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"}).status_code == 500
    assert emu.jobs() == []
    assert s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"}).status_code == 200


def test_delay_fault(emu):
    s = api_session(emu)
    emu.inject_fault("create_job", kind="delay", seconds=0.6, times=1)
    t = time.perf_counter()
    r = s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"})
    assert r.status_code == 200
    assert time.perf_counter() - t >= 0.6
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 200  # fault used up
    assert emu.pending_faults() == []


def test_delay_fault_causes_client_timeout(emu):
    s = api_session(emu)
    emu.inject_fault("list_jobs", kind="delay", seconds=1.0)
    with pytest.raises(requests.Timeout):
        s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets", timeout=0.3)


def test_drop_fault_on_api(emu):
    s = api_session(emu)
    emu.inject_fault("create_job", kind="drop")
    with pytest.raises(requests.ConnectionError):
        s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"})
    assert emu.jobs() == []
    assert ("POST", "create_job", 0) in emu.request_log
    assert s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"}).status_code == 200


def test_status_fault_on_upload(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    emu.inject_fault("upload", kind="status", status=503)
    session = requests.Session()
    r = session.put(job["upload_url"], data=b"1\n" * 100_000, headers={"Content-Type": "text/plain"})
    assert r.status_code == 503
    assert xml_error(r)["Code"] == "ServiceUnavailable"
    assert get_job(s, emu, job["id"])["status"] == "created"
    r = session.put(job["upload_url"], data=b"1\n", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200  # same connection still usable


def test_upload_session_fault_spares_the_start(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    emu.inject_fault("upload_session", kind="status", status=500)
    start = requests.post(
        job["upload_url"], headers={"Content-Type": "text/plain", "x-goog-resumable": "start"}
    )
    assert start.status_code == 201
    session = start.headers["Location"]
    r = requests.put(session, data=b"1\n", headers={"Content-Range": "bytes 0-1/2"})
    assert r.status_code == 500 and xml_error(r)["Code"] == "InternalError"
    r = requests.put(session, data=b"1\n", headers={"Content-Range": "bytes 0-1/2"})
    assert r.status_code == 200


def test_truncated_download_then_range_resume(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    assert put_ids(job["upload_url"], "\n".join(tweet_ids(20_000))).status_code == 200
    done = wait_status(s, emu, job["id"])
    gz = {"Accept-Encoding": "gzip"}
    with requests.get(done["download_url"], headers=gz, stream=True) as r:
        full = r.raw.read(decode_content=False)  # the stored gzip bytes
    assert len(full) > 3000
    emu.inject_fault("download", kind="drop", after_bytes=2000)
    got = bytearray()
    with (
        pytest.raises(urllib3.exceptions.ProtocolError),  # IncompleteRead
        requests.get(done["download_url"], headers=gz, stream=True) as r,
    ):
        assert r.status_code == 200
        for piece in r.raw.stream(1024, decode_content=False):
            got += piece
    assert 0 < len(got) <= 2000 and bytes(got) == full[: len(got)]
    with requests.get(
        done["download_url"], stream=True, headers={**gz, "Range": f"bytes={len(got)}-"}
    ) as rest:
        assert rest.status_code == 206
        assert bytes(got) + rest.raw.read(decode_content=False) == full
    # a transcoded (decompressed, chunked) download cut short
    emu.inject_fault("download", kind="drop", after_bytes=2000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _ = requests.get(done["download_url"], headers={"Accept-Encoding": "identity"}).content


def test_download_status_and_drop_faults(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    assert put_ids(job["upload_url"], "1400000000000000001\n").status_code == 200
    done = wait_status(s, emu, job["id"])
    emu.inject_fault("download", kind="status", status=502)
    emu.inject_fault("download", kind="drop")
    r = requests.get(done["download_url"])
    assert r.status_code == 502 and xml_error(r)["Code"] == "BadGateway"
    with pytest.raises(requests.ConnectionError):
        requests.get(done["download_url"])
    assert requests.get(done["download_url"]).status_code == 200


def test_clear_faults(emu):
    s = api_session(emu)
    emu.inject_fault("list_jobs", kind="status", status=500, times=5)
    assert len(emu.pending_faults()) == 1
    emu.clear_faults()
    assert emu.pending_faults() == []
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint": "nowhere", "kind": "status", "status": 500},
        {"endpoint": "get_job", "kind": "explode"},
        {"endpoint": "get_job", "kind": "status"},
        {"endpoint": "get_job", "kind": "status", "status": 200},
        {"endpoint": "get_job", "kind": "delay"},
        {"endpoint": "get_job", "kind": "drop", "times": 0},
    ],
)
def test_inject_fault_validation(emu, kwargs):
    kwargs = dict(kwargs)
    endpoint = kwargs.pop("endpoint")
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError):
        emu.inject_fault(endpoint, kind=kind, **kwargs)


def test_parse_fault_spec():
    assert parse_fault_spec("get_job:status:503x2") == {
        "endpoint": "get_job",
        "kind": "status",
        "status": 503,
        "times": 2,
    }
    assert parse_fault_spec("upload:drop:300000") == {
        "endpoint": "upload",
        "kind": "drop",
        "after_bytes": 300000,
    }
    assert parse_fault_spec("create_job:delay:2.5") == {
        "endpoint": "create_job",
        "kind": "delay",
        "seconds": 2.5,
    }
    assert parse_fault_spec("download:drop") == {"endpoint": "download", "kind": "drop"}
    for bad in (
        "get_job",
        "get_job:status",
        "get_job:status:abc",
        "x:status:503",
        "upload:drop:1.5",
        "get_job:status:503x",
    ):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)
