"""Defaults taken from the reference page: signed resumable starts, URL lifetimes, fields,
usage caps, estimated_completion, resumable as a JSON boolean."""

from __future__ import annotations

import calendar
import time

import pytest
import requests

from airflow_provider_xcompliance.emulator.signing import SignatureExpired, SignatureMismatch, UrlSigner

from .helpers import api_session, create_job, get_job, put_ids, query_params, xml_error

USAGE_CAPPED = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.x.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
    "status": 429,
}
START = {"Content-Type": "text/plain", "x-goog-resumable": "start"}


def test_resumable_upload_url_signs_the_start_headers(emu):
    s = api_session(emu)
    simple = create_job(s, emu, "tweets")
    resumable = create_job(s, emu, "users", resumable=True)
    assert query_params(simple["upload_url"])["X-Goog-SignedHeaders"] == "content-type;host"
    assert (
        query_params(resumable["upload_url"])["X-Goog-SignedHeaders"]
        == "content-length;content-type;host;x-goog-resumable"
    )
    assert query_params(resumable["download_url"])["X-Goog-SignedHeaders"] == "host"


@pytest.mark.parametrize(
    "headers,data,details",
    [
        (
            {"Content-Type": "application/octet-stream", "x-goog-resumable": "start"},
            None,
            "The signed header content-type was 'application/octet-stream', signed value 'text/plain'",
        ),
        ({"x-goog-resumable": "start"}, None, "The signed header content-type is missing"),
        (
            {"Content-Type": "text/plain"},
            None,
            "The signed header x-goog-resumable is missing (signed value 'start')",
        ),
        (
            {"Content-Type": "text/plain", "x-goog-resumable": "START"},
            None,
            "The signed header x-goog-resumable was 'START'",
        ),
        (START, b"1\n", "The signed header content-length was '2', signed value '0'"),
        (START, iter([b""]), "The signed header content-length is missing"),
    ],
)
def test_resumable_start_must_send_the_signed_headers(emu, headers, data, details):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    r = requests.post(job["upload_url"], headers=headers, data=data)
    assert r.status_code == 403
    error = xml_error(r)
    assert error["Code"] == "SignatureDoesNotMatch"
    assert details in error["Details"], error["Details"]
    ok = requests.post(job["upload_url"], headers=START)
    assert ok.request.headers["Content-Length"] == "0"
    assert ok.status_code == 201 and "upload_id=" in ok.headers["Location"]


def test_signed_url_lifetimes_never_exceed_a_week(make_emulator):
    emu = make_emulator(download_window_seconds=10 * 604800)
    job = create_job(api_session(emu), emu)
    assert query_params(job["download_url"])["X-Goog-Expires"] == "604800"
    assert query_params(job["upload_url"])["X-Goog-Expires"] == "900"


def test_url_valid_for_exactly_its_expires():
    signer = UrlSigner(b"k" * 32, "127.0.0.1:1")
    date = 1_633_592_478
    query = signer.sign("GET", "/b/1/delivery/2_1", date, 604800)
    headers = {"host": "127.0.0.1:1"}
    assert signer.verify("GET", "/b/1/delivery/2_1", query, headers.get, date) == date + 604800
    assert signer.verify("GET", "/b/1/delivery/2_1", query, headers.get, date + 604800.0)
    with pytest.raises(SignatureExpired):
        signer.verify("GET", "/b/1/delivery/2_1", query, headers.get, date + 604800.001)
    too_long = signer.sign("GET", "/b/1/delivery/2_1", date, 604801)
    with pytest.raises(SignatureMismatch, match="604800"):
        signer.verify("GET", "/b/1/delivery/2_1", too_long, headers.get, date)


def test_upload_url_expiry_matches_upload_expires_at(make_emulator):
    emu = make_emulator()  # real time
    job = create_job(api_session(emu), emu)
    params = query_params(job["upload_url"])
    signed_until = calendar.timegm(time.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ")) + int(
        params["X-Goog-Expires"]
    )
    assert signed_until == calendar.timegm(time.strptime(job["upload_expires_at"], "%Y-%m-%dT%H:%M:%S.000Z"))


def test_resumable_must_be_a_json_boolean(emu):
    s = api_session(emu)
    for value in ("true", 1, "false", 0):
        r = s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": "tweets", "resumable": value})
        assert r.status_code == 400
        body = r.json()
        assert body["type"] == "https://api.x.com/2/problems/invalid-request"
        assert [e for e in body["errors"] if "resumable" in e["parameters"]], body
    assert emu.jobs() == []
    assert create_job(s, emu, resumable=True)["resumable"] is True


FIELDS = (
    "created_at,download_expires_at,download_url,id,name,resumable,status,type,upload_expires_at,upload_url"
)


def test_compliance_job_fields_on_every_endpoint(emu):
    s = api_session(emu)
    params = {"compliance_job.fields": FIELDS}
    r = s.post(f"{emu.base_url}/2/compliance/jobs", params=params, json={"type": "tweets"})
    assert r.status_code == 200
    job = r.json()["data"]
    r = s.get(f"{emu.base_url}/2/compliance/jobs", params={"type": "tweets", **params})
    assert r.status_code == 200 and r.json()["data"] == [job]
    r = s.get(f"{emu.base_url}/2/compliance/jobs/{job['id']}", params=params)
    assert r.status_code == 200 and r.json()["data"] == job
    r = s.get(
        f"{emu.base_url}/2/compliance/jobs", params={"type": "tweets", "compliance_job.fields": "id,bogus"}
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["parameters"] == {"compliance_job.fields": ["id,bogus"]}
    r = s.get(f"{emu.base_url}/2/compliance/jobs/{job['id']}", params={"expansions": "x"})
    assert r.status_code == 400 and "expansions" in r.json()["errors"][0]["parameters"]


def test_usage_capped_constructor_and_switch(make_emulator):
    emu = make_emulator(usage_capped=True)
    s = api_session(emu)
    for method, path in (
        ("POST", "/2/compliance/jobs"),
        ("GET", "/2/compliance/jobs?type=tweets"),
        ("GET", "/2/compliance/jobs/1"),
    ):
        r = s.request(method, emu.base_url + path, json={"type": "tweets"})
        assert r.status_code == 429
        assert r.json() == USAGE_CAPPED
        assert r.headers["x-rate-limit-limit"] == "150"
        assert r.headers["x-rate-limit-remaining"] == "150"  # not counted
        assert int(r.headers["x-rate-limit-reset"]) > time.time()
    # the bearer token is still checked first
    assert requests.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 401
    assert emu.usage_capped is True
    emu.usage_capped = False
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 200
    emu.usage_capped = True
    assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 429


def test_usage_cap_fault(emu):
    s = api_session(emu)
    emu.inject_fault("create_job", "usage_cap", times=2)
    url = f"{emu.base_url}/2/compliance/jobs"
    first = s.post(url, json={"type": "tweets"})
    assert first.status_code == 429 and first.json() == USAGE_CAPPED
    assert "x-rate-limit-reset" in first.headers
    assert s.post(url, json={"type": "tweets"}).status_code == 429
    assert s.post(url, json={"type": "tweets"}).status_code == 200
    with pytest.raises(ValueError):
        emu.inject_fault("download", "usage_cap")


def test_estimated_completion_only_in_pre_release_mode(make_emulator):
    for mode, present in ((None, False), (True, True)):
        kwargs = {} if mode is None else {"estimated_completion": mode}
        emu = make_emulator(speed=100, processing_seconds=300, **kwargs)
        s = api_session(emu)
        job = create_job(s, emu)
        assert put_ids(job["upload_url"], "1\n").status_code == 200
        job = get_job(s, emu, job["id"])
        assert job["status"] == "in_progress"
        assert ("estimated_completion" in job) is present


def test_session_lives_its_own_window(make_emulator):
    emu = make_emulator(speed=1000, upload_window_seconds=900, session_window_seconds=1500)
    assert emu.config.session_window_seconds == 1500
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = requests.post(job["upload_url"], headers=START).headers["Location"]
    time.sleep(1.0)  # past the upload window: the session still works
    r = requests.put(session, data=b"", headers={"Content-Range": "bytes */*"})
    assert r.status_code == 308
    assert get_job(s, emu, job["id"])["status"] == "created"  # the session keeps it open
    # but a new start request is refused, even with a live session
    r = requests.post(job["upload_url"], headers=START)
    assert r.status_code == 400 and xml_error(r)["Code"] == "ExpiredToken"
    time.sleep(0.6)  # past the session's lifetime
    r = requests.put(session, data=b"", headers={"Content-Range": "bytes */*"})
    assert r.status_code == 404 and xml_error(r)["Code"] == "NoSuchUpload"
    assert "expired" in xml_error(r)["Details"]
    assert get_job(s, emu, job["id"])["status"] == "expired"


def test_default_config():
    from airflow_provider_xcompliance.emulator import XComplianceEmulator

    cfg = XComplianceEmulator().config
    assert cfg.estimated_completion is False
    assert cfg.sessions_outlive_upload_window is True
    assert cfg.session_window_seconds == 604800
    assert cfg.unknown_job_status == 200
    assert cfg.usage_capped is False
    assert cfg.fault_profile == "none"
    assert cfg.gzip_results is True
    assert cfg.pickup_seconds == 0


def test_every_storage_error_has_details(emu):
    s = api_session(emu)
    job = create_job(s, emu, resumable=True)
    session = requests.post(job["upload_url"], headers=START).headers["Location"]
    answers = [
        requests.put(session, data=b"x", headers={"Content-Range": "bytes 0-0/zz"}),
        requests.put(session, data=b"12", headers={"Content-Range": "bytes */2"}),
        requests.put(
            session.replace("upload_id=", "upload_id=x"), data=b"", headers={"Content-Range": "bytes */*"}
        ),
        requests.post(session),
        requests.put(session, data=b"x" * 10, headers={"Content-Range": "bytes 5-14/*"}),
        requests.get(emu.base_url + "/nothing"),
        requests.put(job["upload_url"], data=b"1\n"),
    ]
    for r in answers:
        assert r.status_code >= 400
        details = xml_error(r).get("Details")
        assert details and len(details) > 20, (r.status_code, r.text)
