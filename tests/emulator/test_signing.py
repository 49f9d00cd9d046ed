"""Signed URLs: what GCS refuses, the emulator refuses the same way."""

from __future__ import annotations

import urllib.parse

import pytest
import requests

from .helpers import (
    api_session,
    create_job,
    get_job,
    put_ids,
    query_params,
    wait_status,
    with_query,
    xml_error,
)

MISMATCH = {
    "Code": "SignatureDoesNotMatch",
    "Message": "The request signature we calculated does not match the signature you provided. "
    "Check your Google secret key and signing method.",
}


def _mismatch(r, *details: str) -> None:
    """A SignatureDoesNotMatch whose Details mention every one of ``details``."""
    assert r.status_code == 403
    error = xml_error(r)
    assert {k: error[k] for k in ("Code", "Message")} == MISMATCH
    for text in details:
        assert text in error["Details"], error["Details"]


@pytest.fixture
def job(emu):
    return create_job(api_session(emu), emu)


def _flip(hexdigits: str) -> str:
    return ("1" if hexdigits[0] != "1" else "2") + hexdigits[1:]


@pytest.mark.parametrize(
    "change,details",
    [
        ({"X-Goog-Signature": "flip"}, "X-Goog-Signature was changed"),
        ({"X-Goog-Expires": "999999"}, "X-Goog-Expires was changed"),
        ({"X-Goog-Expires": "901"}, "X-Goog-Expires was changed"),
        ({"X-Goog-Date": "20301007T074118Z"}, "X-Goog-Date was changed"),
        ({"X-Goog-SignedHeaders": "host"}, "X-Goog-SignedHeaders was changed"),
        ({"X-Goog-Algorithm": "GOOG4-RSA-SHA256"}, "X-Goog-Algorithm was changed"),
        (
            {"X-Goog-Credential": "someone%2F20211007%2Fauto%2Fstorage%2Fgoog4_request"},
            "X-Goog-Credential was changed",
        ),
        ({"X-Goog-Signature": None}, "X-Goog-Signature is missing"),
        ({"extra": "1"}, "extra was added"),
    ],
)
def test_altered_upload_url_is_refused(emu, job, change, details):
    if change.get("X-Goog-Signature") == "flip":
        change = {"X-Goog-Signature": _flip(query_params(job["upload_url"])["X-Goog-Signature"])}
    r = put_ids(with_query(job["upload_url"], **change), "1\n")
    _mismatch(r, details)
    assert "X-Goog-Signature=" not in xml_error(r)["Details"]
    assert get_job(api_session(emu), emu, job["id"])["status"] == "created"


def test_altered_path_is_refused(emu, job):
    other = create_job(api_session(emu), emu, "users")
    # the same query on another job's path
    url = job["upload_url"].replace(job["id"], other["id"])
    r = put_ids(url, "1\n")
    _mismatch(r, "No URL was signed for the path", "belongs to another object")


@pytest.mark.parametrize(
    "headers,details",
    [
        (
            {"Content-Type": "application/octet-stream"},
            "The signed header content-type was 'application/octet-stream', signed value 'text/plain'",
        ),
        (
            {"Content-Type": "text/plain; charset=utf-8"},
            "The signed header content-type was 'text/plain; charset=utf-8'",
        ),
        ({"Content-Type": None}, "The signed header content-type is missing"),
        ({"Host": "localhost:1"}, "The signed header host was 'localhost:1'"),
    ],
)
def test_signed_headers_must_match(emu, job, headers, details):
    all_headers = {"Content-Type": "text/plain"}
    all_headers.update(headers)
    r = requests.put(job["upload_url"], data=b"1\n", headers=all_headers)
    _mismatch(r, details)


def test_wrong_method_is_refused(emu, job):
    r = requests.post(job["upload_url"], data=b"1\n", headers={"Content-Type": "text/plain"})
    _mismatch(r, "The URL is signed for PUT, the request used POST")
    r = requests.get(job["upload_url"])
    _mismatch(r, "signed for PUT, the request used GET")
    r = requests.put(job["download_url"], data=b"1\n")
    _mismatch(r, "signed for GET, the request used PUT")


def test_authorization_header_is_ignored(emu, job):
    r = put_ids(job["upload_url"], "1\n", Authorization="Bearer something-else")
    assert r.status_code == 200


def test_download_url_checks(emu, job):
    s = api_session(emu)
    # before completion the object does not exist
    r = requests.get(job["download_url"])
    assert r.status_code == 404
    path = urllib.parse.urlsplit(job["download_url"]).path
    assert xml_error(r) == {
        "Code": "NoSuchKey",
        "Message": "The specified key does not exist.",
        "Details": "No such object: " + path.lstrip("/"),
    }
    assert put_ids(job["upload_url"], "1400000000000000015\n").status_code == 200
    done = wait_status(s, emu, job["id"])
    assert requests.get(done["download_url"]).status_code == 200
    r = requests.get(with_query(done["download_url"], **{"X-Goog-Expires": "1"}))
    _mismatch(r, "X-Goog-Expires was changed")
    r = requests.get(done["download_url"], headers={"Host": "127.0.0.2"})
    _mismatch(r, "The signed header host was '127.0.0.2'")


def test_unknown_storage_paths(emu, job):
    for path in ("/", "/twttr-tweet-compliance/1/delivery/x", "/favicon.ico"):
        r = requests.get(emu.base_url + path)
        assert r.status_code == 404
        assert xml_error(r)["Code"] == "NoSuchKey"


def test_error_answer_keeps_connection_usable(emu, job):
    """A refused upload drains the body, so the keep-alive connection still works."""
    s = requests.Session()
    r = s.put(job["upload_url"], data=b"1\n" * 500_000, headers={"Content-Type": "text/html"})
    assert r.status_code == 403
    r = s.put(job["upload_url"], data=b"1\n", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200
    assert emu.submission_path(job["id"]).read_bytes() == b"1\n"
