"""Transport details over raw sockets, the access log, and starting/stopping the emulator."""

from __future__ import annotations

import io
import logging
import socket
from email.message import Message
from pathlib import Path

import pytest
import requests

from airflow_provider_xcompliance.emulator import XComplianceEmulator
from airflow_provider_xcompliance.emulator.httpio import BodyError, BodyReader, IncompleteBody, accepts_gzip
from airflow_provider_xcompliance.emulator.signing import SignatureExpired, SignatureMismatch, UrlSigner

from .helpers import api_session, create_job, get_job, put_ids, wait_status


def _exchange(emu, raw: bytes, read_until_close: bool = False) -> bytes:
    host, port = emu.base_url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(raw)
        if read_until_close:
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
            return b"".join(chunks)
        sock.settimeout(1)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except TimeoutError:
            pass
        return data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _upload_target(emu, job) -> tuple[str, str]:
    host = emu.base_url.split("//")[1]
    return host, job["upload_url"].split(host, 1)[1]


def test_chunked_upload_with_extensions_and_trailers(emu):
    s = api_session(emu)
    job = create_job(s, emu)
    host, target = _upload_target(emu, job)
    body = b"5;name=value\r\n1\n22\n\r\nA\r\n333\n4444\n5\r\n0\r\nX-Trailer: yes\r\n\r\n"
    raw = (
        f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
        "x-amz-decoded-content-length: 15\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + body
    answer = _exchange(emu, raw)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert emu.submission_path(job["id"]).read_bytes() == b"1\n22\n333\n4444\n5"


@pytest.mark.parametrize(
    "body", [b"zz\r\n1\r\n0\r\n\r\n", b"3\r\n1\n2XX0\r\n\r\n", b"+3\r\n1\n2\r\n0\r\n\r\n"]
)
def test_malformed_chunked_upload_is_refused(emu, body):
    s = api_session(emu)
    job = create_job(s, emu)
    host, target = _upload_target(emu, job)
    raw = (
        f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
        "x-amz-decoded-content-length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + body
    answer = _exchange(emu, raw, read_until_close=True)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in answer
    assert get_job(s, emu, job["id"])["status"] == "created"


def test_unsupported_transfer_encoding(emu):
    raw = (
        b"POST /2/compliance/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
        b"Authorization: Bearer emulator-token\r\n\r\n"
    )
    answer = _exchange(emu, raw, read_until_close=True)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"invalid-request" in answer


def test_two_requests_pipelined_on_one_connection(emu):
    one = (
        f"GET /2/compliance/jobs?type=tweets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {emu.token}\r\n\r\n"
    ).encode()
    two = (
        f"GET /2/compliance/jobs?type=users HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {emu.token}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = _exchange(emu, one + two, read_until_close=True)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert answer.count(b'{"meta":{"result_count":0}}') == 2


def test_access_log_has_no_secrets(emu, caplog):
    caplog.set_level(logging.DEBUG, logger="airflow_provider_xcompliance.emulator")
    s = api_session(emu)
    job = create_job(s, emu)
    put_ids(job["upload_url"] + "&junk=1", "1\n")  # 403
    put_ids(job["upload_url"], "1\n")
    done = wait_status(s, emu, job["id"])
    requests.get(done["download_url"])
    text = caplog.text
    assert "POST create_job 200" in text and "PUT upload 403" in text and "GET download 200" in text
    for secret in ("X-Goog-Signature", "Goog", "?", emu.token):
        assert secret not in text


def test_start_stop_without_context_manager(tmp_path):
    emu = XComplianceEmulator(data_dir=tmp_path / "kept", speed=1000, processing_seconds=10)
    emu.start()
    try:
        assert emu.running
        s = api_session(emu)
        job = create_job(s, emu)
        put_ids(job["upload_url"], "1\n")
        wait_status(s, emu, job["id"])
        # an idle keep-alive connection must not hold the stop up
        assert s.get(f"{emu.base_url}/2/compliance/jobs?type=tweets").status_code == 200
    finally:
        emu.stop()
    assert not emu.running
    assert (tmp_path / "kept" / job["id"] / "submission.txt").read_text() == "1\n"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emu.base_url}/2/compliance/jobs?type=tweets", timeout=2)
    emu.stop()  # idempotent


def test_temporary_data_dir_is_removed():
    with XComplianceEmulator() as emu:
        data_dir = emu.data_dir
        assert data_dir.is_dir()
        assert emu.base_url.startswith("http://127.0.0.1:") and not emu.base_url.endswith("/")
    assert not Path(data_dir).exists()


def test_constructor_validation():
    for kwargs in (
        {"speed": 0},
        {"one_active_job": "some"},
        {"rate_limit": {"upload": 3}},
        {"upload_window_seconds": 0},
        {"token": ""},
    ):
        with pytest.raises(ValueError):
            XComplianceEmulator(**kwargs)


def _headers(**values) -> Message:
    m = Message()
    for k, v in values.items():
        m[k.replace("_", "-")] = v
    return m


def test_body_reader_units():
    r = BodyReader(io.BytesIO(b"4\r\nabcd\r\n0\r\n\r\nNEXT"), _headers(Transfer_Encoding="chunked"))
    assert r.read(2) == b"ab" and r.read() == b"cd" and r.read() == b"" and r.done
    r = BodyReader(io.BytesIO(b"abc"), _headers(Content_Length="5"))
    with pytest.raises(IncompleteBody):
        r.read()
    with pytest.raises(BodyError):
        BodyReader(io.BytesIO(b""), _headers(Content_Length="-1"))
    r = BodyReader(io.BytesIO(b"0123456789"), _headers(Content_Length="10"))
    assert r.read_all(5) is None
    assert BodyReader(io.BytesIO(b""), _headers()).read() == b""


def test_accepts_gzip_units():
    assert accepts_gzip("gzip, deflate")
    assert accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("identity")
    assert accepts_gzip("*")
    assert not accepts_gzip(None)


def test_signer_units():
    signer = UrlSigner(b"k" * 32, "127.0.0.1:1")
    query = signer.sign("PUT", "/b/1/submission/2_1", 1_633_592_478, 900, {"content-type": "text/plain"})
    headers = {"host": "127.0.0.1:1", "content-type": "text/plain"}
    assert (
        signer.verify("PUT", "/b/1/submission/2_1", query, headers.get, 1_633_592_478 + 900)
        == 1_633_592_478 + 900
    )
    with pytest.raises(SignatureExpired) as info:
        signer.verify("PUT", "/b/1/submission/2_1", query, headers.get, 1_633_592_478 + 901)
    assert info.value.expired_at == 1_633_592_478 + 900
    with pytest.raises(SignatureMismatch):
        UrlSigner(b"x" * 32, "127.0.0.1:1").verify(
            "PUT", "/b/1/submission/2_1", query, headers.get, 1_633_592_478
        )
    with pytest.raises(SignatureMismatch):
        signer.verify("PUT", "/b/1/submission/2_1", query + "&X-Goog-Date=x", headers.get, 1_633_592_478)
