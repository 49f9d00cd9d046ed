"""The three API endpoints: answer shapes, validation, auth, conflicts, rate limits."""

from __future__ import annotations

import calendar
import http.client
import threading
import time
import urllib.parse

import pytest
import requests

from .helpers import TIMESTAMP, api_session, create_job, get_job, query_params

JOB_KEYS = [
    "id",
    "type",
    "name",
    "resumable",
    "status",
    "created_at",
    "upload_url",
    "upload_expires_at",
    "download_url",
    "download_expires_at",
]


def _epoch(ts: str) -> int:
    return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%S.000Z"))


def test_create_job_shape_and_headers(make_emulator):
    emu = make_emulator()  # real time: the windows are X's 15 minutes and 7 days
    s = api_session(emu)
    before = time.time()
    r = s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets", "name": "weekly-audit"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["api-version"] == "2.167"
    assert r.headers["x-rate-limit-limit"] == "150"
    assert r.headers["x-rate-limit-remaining"] == "149"
    assert before + 899 <= int(r.headers["x-rate-limit-reset"]) <= time.time() + 901
    job = r.json()["data"]
    assert list(job) == JOB_KEYS
    assert len(job["id"]) == 19 and job["id"].isdigit()
    assert job["type"] == "tweets" and job["name"] == "weekly-audit"
    assert job["resumable"] is False and job["status"] == "created"
    for key in ("created_at", "upload_expires_at", "download_expires_at"):
        assert TIMESTAMP.match(job[key]), job[key]
    created = _epoch(job["created_at"])
    assert int(before) <= created <= time.time()
    assert _epoch(job["upload_expires_at"]) - created in (899, 900)
    assert _epoch(job["download_expires_at"]) - created in (604799, 604800)
    up = urllib.parse.urlsplit(job["upload_url"])
    assert f"{up.scheme}://{up.netloc}" == emu.base_url
    assert up.path == f"/twttr-tweet-compliance/{job['id']}/submission/{up.path.rsplit('/', 1)[1]}"
    assert up.path.endswith("_" + job["id"])
    params = query_params(job["upload_url"])
    assert params["X-Goog-Algorithm"] == "GOOG4-HMAC-SHA256"
    assert params["X-Goog-SignedHeaders"] == "content-type;host"
    assert params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Credential"].endswith("/auto/storage/goog4_request")
    assert params["X-Goog-Date"] == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))
    assert len(params["X-Goog-Signature"]) == 64
    down = query_params(job["download_url"])
    assert down["X-Goog-SignedHeaders"] == "host"
    assert down["X-Goog-Expires"] == "604800"
    assert "/delivery/" in job["download_url"]


def test_create_job_without_name_and_users_bucket(emu):
    s = api_session(emu)
    job = create_job(s, emu, "users", resumable=True)
    assert "name" not in job
    assert job["resumable"] is True
    assert "/twttr-user-compliance/" in job["upload_url"]
    assert "/twttr-user-compliance/" in job["download_url"]


def test_job_ids_increase_and_list_newest_first(make_emulator):
    emu = make_emulator(one_active_job="none")
    s = api_session(emu)
    ids = [create_job(s, emu)["id"] for _ in range(3)]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids) and len(set(ids)) == 3
    r = s.get(f"{emu.base_url}/2/compliance/jobs", params={"type": "tweets"})
    body = r.json()
    assert body["meta"] == {"result_count": 3}
    assert [j["id"] for j in body["data"]] == ids[::-1]


def test_empty_list_has_no_data_key(emu):
    r = api_session(emu).get(f"{emu.base_url}/2/compliance/jobs?type=users")
    assert r.status_code == 200
    assert r.json() == {"meta": {"result_count": 0}}


def test_list_filters_type_and_status(emu):
    s = api_session(emu)
    tweets = create_job(s, emu, "tweets")
    users = create_job(s, emu, "users")
    listed = s.get(f"{emu.base_url}/2/compliance/jobs?type=users").json()
    assert [j["id"] for j in listed["data"]] == [users["id"]]
    created = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets&status=created").json()
    assert [j["id"] for j in created["data"]] == [tweets["id"]]
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets&status=complete").json() == {
        "meta": {"result_count": 0}
    }


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic ZW11bGF0b3I=", "emulator-token"])
@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/2/compliance/jobs"),
        ("GET", "/2/compliance/jobs?type=tweets"),
        ("GET", "/2/compliance/jobs/1"),
    ],
)
def test_unauthorized(emu, auth, method, path):
    headers = {"Authorization": auth} if auth else {}
    r = requests.request(method, emu.base_url + path, headers=headers, json={"type": "tweets"})
    assert r.status_code == 401
    assert r.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }
    assert r.headers["x-rate-limit-remaining"] == "150"  # not counted
    assert emu.jobs() == []


def _invalid(r) -> list[dict]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "https://api.x.com/2/problems/invalid-request"
    assert body["title"] == "Invalid Request"
    assert r.headers["x-rate-limit-limit"] == "150"
    for error in body["errors"]:
        assert isinstance(error["message"], str) and isinstance(error["parameters"], dict)
    return body["errors"]


@pytest.mark.parametrize(
    "payload,param",
    [
        ({"type": "tweets", "foo": 1}, "foo"),
        ({"type": "videos"}, "type"),
        ({}, "type"),
        ({"name": "x"}, "type"),
        ({"type": "tweets", "name": "n" * 65}, "name"),
        ({"type": "tweets", "name": 7}, "name"),
        ({"type": "tweets", "resumable": "yes"}, "resumable"),
        ({"type": "tweets", "resumable": "true"}, "resumable"),
        ({"type": "tweets", "resumable": 1}, "resumable"),
        ({"type": "tweets", "resumable": None}, "resumable"),
    ],
)
def test_create_job_invalid(emu, payload, param):
    errors = _invalid(api_session(emu).post(f"{emu.base_url}/2/compliance/jobs", json=payload))
    assert any(param in e["parameters"] for e in errors), errors
    assert emu.jobs() == []


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[]", b'"tweets"', b"\xff\xfe"])
def test_create_job_bad_body(emu, raw):
    r = api_session(emu).post(
        f"{emu.base_url}/2/compliance/jobs", data=raw, headers={"Content-Type": "application/json"}
    )
    _invalid(r)


def test_create_job_name_of_64_characters_is_fine(emu):
    job = create_job(api_session(emu), emu, name="n" * 64)
    assert job["name"] == "n" * 64


@pytest.mark.parametrize(
    "query,param",
    [
        ("", "type"),
        ("type=", "type"),
        ("type=videos", "type"),
        ("type=tweets&status=expired", "status"),
        ("type=tweets&status=done", "status"),
        ("type=tweets&foo=bar", "foo"),
        ("type=tweets&type=users", "type"),
    ],
)
def test_list_invalid(emu, query, param):
    errors = _invalid(api_session(emu).get(f"{emu.base_url}/2/compliance/jobs?{query}"))
    assert any(param in e["parameters"] for e in errors), errors


@pytest.mark.parametrize("job_id", ["abc", "12345678901234567890", "-1", "1.5"])
def test_get_job_invalid_id(emu, job_id):
    errors = _invalid(api_session(emu).get(f"{emu.base_url}/2/compliance/jobs/{job_id}"))
    assert errors[0]["parameters"] == {"id": [job_id]}


NOT_FOUND_PROBLEM = {
    "value": "1446017776678801409",
    "detail": "Could not find compliance job with id: [1446017776678801409].",
    "title": "Not Found Error",
    "resource_type": "compliance_job",
    "parameter": "id",
    "resource_id": "1446017776678801409",
    "type": "https://api.x.com/2/problems/resource-not-found",
}


def test_get_job_not_found_is_200_with_errors(emu):
    r = api_session(emu).get(f"{emu.base_url}/2/compliance/jobs/1446017776678801409")
    assert r.status_code == 200
    assert r.json() == {"errors": [NOT_FOUND_PROBLEM]}
    assert r.headers["x-rate-limit-limit"] == "150"


def test_get_job_not_found_404_option(make_emulator):
    emu = make_emulator(unknown_job_status=404)
    r = api_session(emu).get(f"{emu.base_url}/2/compliance/jobs/1446017776678801409")
    assert r.status_code == 404
    body = r.json()
    assert body["type"] == "https://api.x.com/2/problems/resource-not-found"
    assert body["title"] == "Not Found Error"
    assert body["detail"] == "Could not find compliance job with id: [1446017776678801409]."
    assert body["status"] == 404
    assert body["errors"] == [NOT_FOUND_PROBLEM]
    assert "data" not in body
    with pytest.raises(ValueError):
        make_emulator(unknown_job_status=410)


def test_get_job_found(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    again = get_job(s, emu, job["id"])
    assert again == job  # URLs are signed deterministically
    assert emu.job(job["id"]) == job
    assert emu.job("1") is None


CONFLICT = {
    "type": "https://api.x.com/2/problems/conflict",
    "title": "Conflict",
    "detail": "You cannot create a new job if one is already in progress",
    "status": 409,
}


@pytest.mark.parametrize(
    "mode,second_same,second_other", [("per_type", 409, 200), ("global", 409, 409), ("none", 200, 200)]
)
def test_one_active_job_rule(make_emulator, mode, second_same, second_other):
    emu = make_emulator(one_active_job=mode)
    s = api_session(emu)
    create_job(s, emu, "tweets")
    url = f"{emu.base_url}/2/compliance/jobs"
    r = s.post(url, json={"type": "tweets"})
    assert r.status_code == second_same
    if second_same == 409:
        assert r.json() == CONFLICT
    r = s.post(url, json={"type": "users"})
    assert r.status_code == second_other
    if second_other == 409:
        assert r.json() == CONFLICT


def test_expired_job_is_not_active(make_emulator):
    emu = make_emulator(speed=1000, upload_window_seconds=900)  # 0.9 s
    s = api_session(emu)
    first = create_job(s, emu)
    assert s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"}).status_code == 409
    time.sleep(1.0)
    assert get_job(s, emu, first["id"])["status"] == "expired"
    assert s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"}).status_code == 200


def test_rate_limit_per_endpoint(make_emulator):
    emu = make_emulator(rate_limit={"get_job": 3, "list_jobs": 5})
    s = api_session(emu)
    job = create_job(s, emu)
    url = f"{emu.base_url}/2/compliance/jobs/{job['id']}"
    seen = [s.get(url) for _ in range(3)]
    assert [r.status_code for r in seen] == [200, 200, 200]
    assert [r.headers["x-rate-limit-remaining"] for r in seen] == ["2", "1", "0"]
    assert {r.headers["x-rate-limit-limit"] for r in seen} == {"3"}
    reset = seen[0].headers["x-rate-limit-reset"]
    assert time.time() + 890 < int(reset) < time.time() + 902
    r = s.get(url)
    assert r.status_code == 429
    assert r.json() == {
        "title": "Too Many Requests",
        "detail": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
    }
    assert r.headers["x-rate-limit-remaining"] == "0"
    assert r.headers["x-rate-limit-limit"] == "3"
    assert r.headers["x-rate-limit-reset"] == reset
    assert r.headers["api-version"] == "2.167"
    # the other endpoints have their own counters
    listed = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets")
    assert listed.status_code == 200
    assert listed.headers["x-rate-limit-limit"] == "5"
    assert listed.headers["x-rate-limit-remaining"] == "4"
    assert (
        s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "users"}).headers["x-rate-limit-remaining"]
        == "148"
    )


def test_rate_limit_window_resets(make_emulator):
    emu = make_emulator(rate_limit=2, speed=900, rate_window_seconds=900)  # 1 s windows
    s = api_session(emu)
    url = f"{emu.base_url}/2/compliance/jobs?type=tweets"
    assert [s.get(url).status_code for _ in range(3)] == [200, 200, 429]
    reset = int(s.get(url).headers["x-rate-limit-reset"])
    assert reset <= time.time() + 2
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    r = s.get(url)
    assert r.status_code == 200
    assert r.headers["x-rate-limit-remaining"] == "1"


def test_download_window_drops_jobs(make_emulator):
    emu = make_emulator(speed=10000, download_window_seconds=8000, upload_window_seconds=900)
    s = api_session(emu)
    job = create_job(s, emu)
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").json()["meta"]["result_count"] == 1
    time.sleep(0.9)
    gone = s.get(f"{emu.base_url}/2/compliance/jobs/{job['id']}")
    assert gone.status_code == 200 and "data" not in gone.json()
    assert gone.json()["errors"][0]["resource_id"] == job["id"]
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").json() == {"meta": {"result_count": 0}}
    assert emu.jobs() == []


def test_gzip_api_answers(make_emulator):
    emu = make_emulator()
    s = api_session(emu)  # requests sends Accept-Encoding: gzip, deflate
    r = s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.json()["data"]["type"] == "tweets"
    r = s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in r.headers
    assert r.json()["meta"]["result_count"] == 1
    plain = make_emulator(gzip=False)
    r = api_session(plain).get(f"{plain.base_url}/2/compliance/jobs?type=tweets")
    assert "Content-Encoding" not in r.headers
    assert r.json() == {"meta": {"result_count": 0}}


def test_unknown_api_path_and_method(emu):
    s = api_session(emu)
    r = s.get(f"{emu.base_url}/2/compliance/nothing")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == 34
    r = s.delete(f"{emu.base_url}/2/compliance/jobs")
    assert r.status_code == 405


def test_keep_alive(emu):
    conn = http.client.HTTPConnection(emu.base_url.split("//")[1], timeout=5)
    headers = {"Authorization": f"Bearer {emu.token}"}
    conn.request("GET", "/2/compliance/jobs?type=tweets", headers=headers)
    first = conn.getresponse()
    assert first.status == 200 and first.read()
    sock = conn.sock
    assert sock is not None
    conn.request("POST", "/2/compliance/jobs", body=b'{"type": "users"}', headers=headers)
    second = conn.getresponse()
    assert second.status == 200 and b'"users"' in second.read()
    assert conn.sock is sock  # same connection
    conn.close()


def test_concurrent_requests_are_counted_exactly(make_emulator):
    emu = make_emulator(rate_limit=1000)
    s0 = api_session(emu)
    job = create_job(s0, emu)
    remaining = []
    lock = threading.Lock()

    def worker():
        s = api_session(emu)
        for _ in range(10):
            r = s.get(f"{emu.base_url}/2/compliance/jobs/{job['id']}")
            assert r.status_code == 200
            with lock:
                remaining.append(int(r.headers["x-rate-limit-remaining"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(remaining) == list(range(920, 1000))
    assert sum(1 for entry in emu.request_log if entry == ("GET", "get_job", 200)) == 80
