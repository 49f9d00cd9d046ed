"""Job lifecycle on the emulator's clock: created -> in_progress -> complete | failed, expired."""

from __future__ import annotations

import calendar
import time

import requests

from .helpers import (
    TIMESTAMP,
    api_session,
    create_job,
    get_job,
    jsonl,
    put_ids,
    query_params,
    tweet_ids,
    wait_status,
    xml_error,
)


def test_created_in_progress_complete(make_emulator):
    # processing lasts 100 emulated seconds = 0.5 real seconds
    emu = make_emulator(
        speed=200, processing_seconds=100, upload_window_seconds=100_000, estimated_completion=True
    )  # the pre-release API's field
    s = api_session(emu)
    job = create_job(s, emu)
    r = put_ids(job["upload_url"], "\n".join(tweet_ids(100)))
    assert r.status_code == 200 and r.content == b""
    uploaded = time.time()
    job = get_job(s, emu, job["id"])
    assert job["status"] == "in_progress"
    assert TIMESTAMP.match(job["estimated_completion"])
    eta = calendar.timegm(time.strptime(job["estimated_completion"], "%Y-%m-%dT%H:%M:%S.000Z"))
    assert uploaded - 1 <= eta <= uploaded + 2
    listed = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets&status=in_progress").json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    done = wait_status(s, emu, job["id"])
    assert time.time() - uploaded >= 0.45  # not before the processing time
    assert done["status"] == "complete"
    assert "estimated_completion" not in done and "error" not in done
    listed = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets&status=complete").json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    assert emu.submission_path(job["id"]).read_text() == "\n".join(tweet_ids(100))
    assert emu.results_path(job["id"]).exists()


def test_no_estimated_completion_by_default(make_emulator):
    emu = make_emulator(speed=100, processing_seconds=300)
    s = api_session(emu)
    job = create_job(s, emu)
    assert put_ids(job["upload_url"], "1\n2\n").status_code == 200
    job = get_job(s, emu, job["id"])
    assert job["status"] == "in_progress"
    assert "estimated_completion" not in job


def test_expired_after_upload_window(make_emulator):
    emu = make_emulator(speed=1000, upload_window_seconds=900)  # 0.9 s
    s = api_session(emu)
    job = create_job(s, emu)
    assert get_job(s, emu, job["id"])["status"] == "created"
    params = query_params(job["upload_url"])
    signed_until = calendar.timegm(time.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ")) + int(
        params["X-Goog-Expires"]
    )
    time.sleep(1.0)
    expired = get_job(s, emu, job["id"])
    assert expired["status"] == "expired"
    # the job window is over even while the URL's own signature is still valid ...
    r = put_ids(job["upload_url"], "1\n")
    assert r.status_code == 400
    assert xml_error(r)["Code"] == "ExpiredToken"
    # ... and once the signature has expired too, GCS's own answer
    time.sleep(max(0.0, signed_until - time.time()) + 0.05)
    r = put_ids(job["upload_url"], "1\n")
    assert r.status_code == 400
    error = xml_error(r)
    assert error == {
        "Code": "ExpiredToken",
        "Message": "The provided token has expired.",
        "Details": "Request signature expired at: "
        + time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(signed_until)),
    }
    assert get_job(s, emu, job["id"])["status"] == "expired"
    listed = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").json()
    assert listed["data"][0]["status"] == "expired"


def test_failed_on_invalid_content(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    assert (
        put_ids(job["upload_url"], "1265324480517361664\n1263926741774581761\nabc\n42\n").status_code == 200
    )
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "failed"
    assert done["error"] == "Invalid ID at line 3: 'abc'"
    r = requests.get(done["download_url"])
    assert r.status_code == 404 and xml_error(r)["Code"] == "NoSuchKey"
    listed = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets&status=failed").json()
    assert listed["meta"]["result_count"] == 1


def test_failed_on_too_long_id_with_truncated_value(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    body = "1\n\n" + "9" * 60 + "\n"
    assert put_ids(job["upload_url"], body).status_code == 200
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "failed"
    assert done["error"] == "Invalid ID at line 3: '" + "9" * 40 + "...'"


def test_multipart_upload_fails(emu):
    """The trap of wrapping the file in form data: the boundary lines are not IDs."""
    s = api_session(emu)
    job = create_job(s, emu)
    prepared = requests.Request("PUT", job["upload_url"], files={"file": ("ids.txt", b"1\n2\n")}).prepare()
    prepared.headers["Content-Type"] = "text/plain"
    r = requests.Session().send(prepared)
    assert r.status_code == 200
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "failed"
    assert done["error"].startswith("Invalid ID at line 1: '--")


def test_crlf_blank_lines_and_empty_upload_complete(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    assert (
        put_ids(job["upload_url"], "1400000000000000015\r\n\r\n\n1400000000000000100\r\n").status_code == 200
    )
    assert wait_status(s, emu, job["id"])["status"] == "complete"
    empty = create_job(s, emu)
    assert put_ids(empty["upload_url"], b"").status_code == 200
    done = wait_status(s, emu, empty["id"])
    assert done["status"] == "complete"
    r = requests.get(done["download_url"])
    assert r.status_code == 200 and r.content == b""


def test_second_upload_replaces_while_created(make_emulator):
    # the job stays 'created' for 200 emulated seconds (0.2 s) after an upload
    emu = make_emulator(speed=1000, pickup_seconds=200, processing_seconds=20, upload_window_seconds=100_000)
    s = api_session(emu)
    job = create_job(s, emu)
    assert put_ids(job["upload_url"], "1400000000000000001\n").status_code == 200
    assert get_job(s, emu, job["id"])["status"] == "created"
    second = "1400000000000000015\n1400000000000000016\n"
    r = put_ids(job["upload_url"], second)
    assert r.status_code == 200  # GCS replaces the object
    assert emu.submission_path(job["id"]).read_text() == second
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "complete"
    assert [x["id"] for x in jsonl(requests.get(done["download_url"]).text)] == [
        "1400000000000000015",
        "1400000000000000016",
    ]


def test_second_upload_after_pickup_is_accepted_but_changes_nothing(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    assert put_ids(job["upload_url"], "1400000000000000015\n").status_code == 200
    assert get_job(s, emu, job["id"])["status"] in ("in_progress", "complete")
    r = put_ids(job["upload_url"], "2\n")
    assert r.status_code == 200  # not refused: GCS semantics
    assert emu.submission_path(job["id"]).read_text() == "1400000000000000015\n"
    done = wait_status(s, emu, job["id"])
    assert [x["id"] for x in jsonl(requests.get(done["download_url"]).text)] == ["1400000000000000015"]
