"""Uploads: simple PUT (Content-Length and chunked) and the GCS resumable protocol."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import requests

from airflow_provider_xcompliance.emulator import expected_results

from .helpers import api_session, create_job, get_job, jsonl, put_ids, tweet_ids, wait_status, xml_error

CHUNK = 256 * 1024


def _ids_blob(count: int) -> bytes:
    return ("\n".join(tweet_ids(count)) + "\n").encode()


def test_simple_put_with_content_length(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    data = _ids_blob(5000)
    r = put_ids(job["upload_url"], data)
    assert r.status_code == 200
    assert int(r.request.headers["Content-Length"]) == len(data)
    assert emu.submission_path(job["id"]).read_bytes() == data
    assert get_job(s, emu, job["id"])["status"] in ("in_progress", "complete")


def test_simple_put_chunked_is_refused_411(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    data = _ids_blob(70000)

    def pieces():
        for i in range(0, len(data), 100_003):
            yield data[i : i + 100_003]

    session = requests.Session()
    r = session.put(job["upload_url"], data=pieces(), headers={"Content-Type": "text/plain"})
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 411
    assert xml_error(r) == {
        "Code": "MissingContentLength",
        "Message": "Length Required.",
        "Details": "You must provide the Content-Length HTTP header.",
    }
    assert get_job(s, emu, job["id"])["status"] == "created"
    assert not emu.submission_path(job["id"]).exists()
    # the refused body was drained: the same connection still works
    assert (
        session.put(job["upload_url"], data=data, headers={"Content-Type": "text/plain"}).status_code == 200
    )


def test_simple_put_chunked_with_decoded_length(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    data = _ids_blob(70000)  # 1.4 MB, sent in uneven pieces

    def pieces():
        for i in range(0, len(data), 100_003):
            yield data[i : i + 100_003]

    r = put_ids(job["upload_url"], iter([data[:10]]), **{"x-amz-decoded-content-length": str(len(data))})
    assert r.status_code == 400 and "x-amz-decoded-content-length" in xml_error(r)["Details"]
    r = put_ids(job["upload_url"], pieces(), **{"x-amz-decoded-content-length": str(len(data))})
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert r.status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "complete"
    got = jsonl(requests.get(done["download_url"]).text)
    assert got == list(expected_results(tweet_ids(70000), "tweets"))


def test_upload_streams_with_flat_memory(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    line = b"1400000000000000123\n"
    block = line * (1 << 16)  # 1.25 MiB
    blocks = 48  # 60 MiB in all

    def body():
        for _ in range(blocks):
            yield block

    tracemalloc.start()
    try:
        r = put_ids(job["upload_url"], body(), **{"x-amz-decoded-content-length": str(len(block) * blocks)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200
    assert emu.submission_path(job["id"]).stat().st_size == len(block) * blocks
    assert peak < 16 * 1024 * 1024, peak


def test_interrupted_simple_put_keeps_job_created(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    data = _ids_blob(100_000)  # 2 MB
    emu.inject_fault("upload", kind="drop", after_bytes=300_000)
    with pytest.raises(requests.ConnectionError):
        put_ids(job["upload_url"], data)
    assert get_job(s, emu, job["id"])["status"] == "created"
    assert not emu.submission_path(job["id"]).exists()
    assert not list(emu.submission_path(job["id"]).parent.glob("*.part"))
    assert put_ids(job["upload_url"], data).status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data


def _start(job) -> requests.Response:
    r = requests.post(job["upload_url"], headers={"Content-Type": "text/plain", "x-goog-resumable": "start"})
    assert r.request.headers["Content-Length"] == "0"
    return r


def _chunk(session_url, data, first, total="*") -> requests.Response:
    last = first + len(data) - 1
    return requests.put(session_url, data=data, headers={"Content-Range": f"bytes {first}-{last}/{total}"})


def _query(session_url, total="*") -> requests.Response:
    return requests.put(session_url, data=b"", headers={"Content-Range": f"bytes */{total}"})


def test_resumable_protocol(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _ids_blob(40_000)  # 800000 bytes: chunks of 256 KiB, 256 KiB, rest
    total = len(data)
    # the URL is signed for POST: a simple PUT is refused
    r = put_ids(job["upload_url"], data)
    assert r.status_code == 403 and xml_error(r)["Code"] == "SignatureDoesNotMatch"
    r = requests.post(job["upload_url"], headers={"Content-Type": "text/plain"})
    assert r.status_code == 403  # x-goog-resumable: start is signed
    assert "x-goog-resumable is missing" in xml_error(r)["Details"]
    r = _start(job)
    assert r.status_code == 201
    session = r.headers["Location"]
    assert session.startswith(emu.base_url + "/twttr-tweet-compliance/")
    assert "upload_id=" in session and "X-Goog-Signature" not in session
    # nothing stored yet: 308 without Range
    r = _query(session)
    assert r.status_code == 308 and "Range" not in r.headers
    r = _chunk(session, data[:CHUNK], 0)
    assert r.status_code == 308
    assert r.headers["Range"] == f"bytes=0-{CHUNK - 1}"
    # a non-final chunk that is not a multiple of 256 KiB
    r = _chunk(session, data[CHUNK : CHUNK + 1000], CHUNK)
    assert r.status_code == 400 and xml_error(r)["Code"] == "InvalidArgument"
    # a chunk after a gap
    r = _chunk(session, data[2 * CHUNK : 3 * CHUNK], 2 * CHUNK)
    assert r.status_code == 400
    # an overlapping chunk: the overlap is skipped
    r = _chunk(session, data[: 2 * CHUNK], 0)
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{2 * CHUNK - 1}"
    r = _query(session, total)
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{2 * CHUNK - 1}"
    assert get_job(s, emu, job["id"])["status"] == "created"
    # the last chunk, with the total
    r = _chunk(session, data[2 * CHUNK :], 2 * CHUNK, total)
    assert r.status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data
    assert get_job(s, emu, job["id"])["status"] in ("in_progress", "complete")
    assert _query(session, total).status_code == 200  # complete
    done = wait_status(s, emu, job["id"])
    assert jsonl(requests.get(done["download_url"]).text) == list(
        expected_results(tweet_ids(40_000), "tweets")
    )
    names = [e[1] for e in emu.request_log]
    assert "upload" in names and "upload_session" in names


def test_resumable_total_known_upfront_and_finalize_by_query(emu):
    s = api_session(emu)
    data = b"7\n" * CHUNK  # exactly 2 chunks
    # the total, once given, is remembered: the last chunk may then say '*'
    job = create_job(s, emu, resumable=True)
    session = _start(job).headers["Location"]
    assert _chunk(session, data[:CHUNK], 0, len(data)).status_code == 308
    assert _chunk(session, data[CHUNK:], CHUNK).status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data
    assert wait_status(s, emu, job["id"])["status"] == "complete"
    # every chunk sent with an unknown total; the status query with the total finalizes
    job = create_job(s, emu, resumable=True)
    session = _start(job).headers["Location"]
    assert _chunk(session, data[:CHUNK], 0).status_code == 308
    r = _chunk(session, data[CHUNK:], CHUNK)
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{len(data) - 1}"
    assert get_job(s, emu, job["id"])["status"] == "created"
    assert _query(session, len(data)).status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data


def test_resumable_empty_upload(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = _start(job).headers["Location"]
    assert _query(session, 0).status_code == 200
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "complete"
    assert requests.get(done["download_url"]).content == b""


def test_resumable_resume_after_dropped_chunk(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _ids_blob(50_000)  # 1000000 bytes
    session = _start(job).headers["Location"]
    assert _chunk(session, data[:CHUNK], 0).status_code == 308
    emu.inject_fault("upload", kind="drop", after_bytes=100_000)
    with pytest.raises(requests.ConnectionError):
        _chunk(session, data[CHUNK : 3 * CHUNK], CHUNK)
    # nothing of the dropped chunk was kept
    r = _query(session, len(data))
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{CHUNK - 1}"
    resume_at = int(r.headers["Range"].split("-")[1]) + 1
    assert _chunk(session, data[resume_at : 3 * CHUNK], resume_at).status_code == 308
    r = _chunk(session, data[3 * CHUNK :], 3 * CHUNK, len(data))
    assert r.status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data
    assert ("PUT", "upload_session", 0) in emu.request_log


def test_resumable_chunk_sent_chunked(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    data = _ids_blob(20_000)  # 400000 bytes
    session = _start(job).headers["Location"]
    first = data[:CHUNK]
    r = requests.put(
        session, data=iter([first[:1000], first[1000:]]), headers={"Content-Range": f"bytes 0-{CHUNK - 1}/*"}
    )
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{CHUNK - 1}"
    # a chunked body shorter than its Content-Range is refused and not stored
    r = requests.put(
        session,
        data=iter([data[CHUNK : CHUNK + 10]]),
        headers={"Content-Range": f"bytes {CHUNK}-{len(data) - 1}/{len(data)}"},
    )
    assert r.status_code == 400
    r = _chunk(session, data[CHUNK:], CHUNK, len(data))
    assert r.status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == data


def test_resumable_bad_requests(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = _start(job).headers["Location"]
    r = requests.put(session, data=b"x" * 10, headers={"Content-Range": "bytes 0-19/*"})
    assert r.status_code == 400  # Content-Length does not match
    r = requests.put(session, data=b"x", headers={"Content-Range": "bytes 0-0/zz"})
    assert r.status_code == 400
    r = requests.put(session, data=b"12", headers={"Content-Range": "bytes */2"})
    assert r.status_code == 400  # a status query has no body
    r = requests.put(
        session.replace("upload_id=", "upload_id=x"), data=b"", headers={"Content-Range": "bytes */*"}
    )
    assert r.status_code == 404 and xml_error(r)["Code"] == "NoSuchUpload"
    r = requests.put(session, data=b"1", headers={"Content-Range": "bytes 5-5/3"})
    assert r.status_code == 400  # ends after the total
    assert get_job(s, emu, job["id"])["status"] == "created"


def test_resumable_session_bounded_by_upload_window_option(make_emulator):
    emu = make_emulator(
        speed=1000,
        upload_window_seconds=900,  # 0.9 s
        sessions_outlive_upload_window=False,
    )
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = _start(job).headers["Location"]
    assert _chunk(session, b"1\n" * (CHUNK // 2), 0).status_code == 308
    time.sleep(1.0)
    r = _chunk(session, b"2\n", CHUNK, CHUNK + 2)
    assert r.status_code == 400 and xml_error(r)["Code"] == "ExpiredToken"
    assert get_job(s, emu, job["id"])["status"] == "expired"


def test_resumable_session_outlives_upload_window_by_default(make_emulator):
    emu = make_emulator(speed=1000, upload_window_seconds=900)
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = _start(job).headers["Location"]
    assert _chunk(session, b"1\n" * (CHUNK // 2), 0).status_code == 308
    time.sleep(1.0)
    assert get_job(s, emu, job["id"])["status"] == "created"
    assert _chunk(session, b"2\n", CHUNK, CHUNK + 2).status_code == 200
    assert wait_status(s, emu, job["id"])["status"] == "complete"


def test_upload_without_length_is_refused(emu):
    import http.client

    s = api_session(emu)
    job = create_job(s, emu)
    host = emu.base_url.split("//")[1]
    path = job["upload_url"].split(host, 1)[1]
    conn = http.client.HTTPConnection(host, timeout=5)
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    conn.putheader("Content-Type", "text/plain")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 411
    assert b"MissingContentLength" in r.read()
    conn.close()
