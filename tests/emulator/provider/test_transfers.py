"""The signed-URL transfers against the emulator with each real-service behaviour switched on:
what Google Cloud Storage and X do to uploads and downloads, and what the client must do back."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import time
from urllib.parse import urlsplit

import pytest

from airflow_provider_xcompliance.client.signed_urls import GRANULE
from airflow_provider_xcompliance.client.upload_sessions import VariableSessionKeeper, source_version
from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results
from airflow_provider_xcompliance.exceptions import (
    InvalidIdError,
    XComplianceStorageError,
    XComplianceUsageCapped,
)
from airflow_provider_xcompliance.object_storage import to_path
from tests.support.hook_on_emulator import TOKEN, connect, count_requests, wait_until_done
from tests.support.variables import variables_in_a_dict

ID_LINES = b"".join(b"%d\n" % (1_200_000_000_000_000_000 + i * 7919) for i in range(60_000))  # 1.2 MB


def requests_to(emulator, *endpoints):
    return [(name, status) for _, name, status in emulator.request_log if name in endpoints]


def land(hook, job_id, path):
    summary = hook.download_results(job_id, path)
    return summary, path.read_bytes()


def expected_bytes(ids: bytes, job_type="tweets") -> bytes:
    return b"".join(
        json.dumps(line, separators=(",", ":")).encode() + b"\n"
        for line in expected_results(ids.decode().split(), job_type)
    )


def test_simple_upload_sends_its_length(hook, emulator, tmp_path):
    """GCS refuses a chunked PUT (411 MissingContentLength): the simple upload sends a length."""
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbf" + ID_LINES.replace(b"\n", b"\r\n"))  # normalised while spooled
    job = hook.create_job("tweets", resumable=False)
    report = hook.upload_ids(job, ids)
    assert report["bytes"] == len(ID_LINES) and report["ids"] == 60_000
    assert emulator.submission_path(job.id).read_bytes() == ID_LINES
    assert requests_to(emulator, "upload") == [("upload", 200)]


BIG_ID_LINES = b"".join(b"%d\n" % (1_200_000_000_000_000_000 + i * 7919) for i in range(300_000))  # 6 MB


def no_spool(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the IDs were spooled")

    monkeypatch.setattr("airflow_provider_xcompliance.hooks.compliance.tempfile.TemporaryFile", refuse)


def test_a_canonical_id_file_streams_into_one_put_without_a_spool(hook, emulator, tmp_path, monkeypatch):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(BIG_ID_LINES)  # two read blocks: the second is held until the file has ended
    no_spool(monkeypatch)
    job = hook.create_job("tweets", resumable=False)
    report = hook.upload_ids(job, ids)
    assert (report["ids"], report["bytes"]) == (300_000, len(BIG_ID_LINES))
    assert emulator.submission_path(job.id).read_bytes() == BIG_ID_LINES
    assert requests_to(emulator, "upload") == [("upload", 200)]


def upload_statuses(emulator, count):
    """The statuses of the first ``count`` simple uploads, once the emulator has logged them (a
    PUT the client broke off is logged when the emulator notices, maybe after the client's error)."""
    deadline = time.monotonic() + 30
    while len(statuses := [status for _, status in requests_to(emulator, "upload")]) < count:
        assert time.monotonic() < deadline, statuses
        time.sleep(0.05)
    return statuses


def test_a_file_normalised_past_its_head_stops_its_stream_and_is_spooled(hook, emulator, tmp_path, capsys):
    """The first 64 KiB look canonical, so the file streams; a CRLF line in its second block
    stops the PUT short of its length (no object), and the spooled, normalised file follows."""
    cut = BIG_ID_LINES.index(b"\n", 5_000_000) + 1
    ids = tmp_path / "ids.txt"
    ids.write_bytes(BIG_ID_LINES[:cut] + b"1200000000000000001\r\n" + BIG_ID_LINES[cut:])
    job = hook.create_job("tweets", resumable=False)
    report = hook.upload_ids(job, ids)
    assert report["ids"] == 300_001
    expected = BIG_ID_LINES[:cut] + b"1200000000000000001\n" + BIG_ID_LINES[cut:]
    assert emulator.submission_path(job.id).read_bytes() == expected
    assert upload_statuses(emulator, 2) == [0, 200]  # broken off, then whole
    assert "cannot be sent as it is (normalising changed one of its first" in capsys.readouterr().out


def test_a_bad_line_deep_in_a_streamed_file_leaves_the_job_without_ids(hook, emulator, tmp_path):
    lines = BIG_ID_LINES.split(b"\n")
    lines[279_999] = b"12a"  # line 280,000, in the second read block
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\n".join(lines))
    job = hook.create_job("tweets", resumable=False)
    with pytest.raises(InvalidIdError, match=r"ids\.txt, line 280000: '12a'"):
        hook.upload_ids(job, ids)
    assert upload_statuses(emulator, 1) == [0]  # started, never finished
    assert hook.get_job(job.id).status == "created" and not emulator.submission_path(job.id).exists()


@pytest.mark.parametrize("resumable", [False, True], ids=["simple", "resumable"])
def test_signed_url_408_429_5xx_and_drops_are_retried(monkeypatch, tmp_path, resumable):
    # The backoff of four failures in a row (about 15 s) must fit in the upload window.
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=10, processing_seconds=5
    ) as emulator:
        _retried_both_ways(connect(monkeypatch, emulator, max_retries=4), emulator, tmp_path, resumable)


def _retried_both_ways(hook, emulator, tmp_path, resumable):
    job = hook.create_job("tweets", resumable=resumable)
    for status in (408, 429, 503):
        emulator.inject_fault("upload", kind="status", status=status)
    emulator.inject_fault("upload", kind="drop")
    hook.upload_ids(job, (line.decode() for line in ID_LINES.split()), chunk_size=4 * GRANULE)
    assert emulator.submission_path(job.id).read_bytes() == ID_LINES
    wait_until_done(hook, job.id)

    for status in (408, 429, 502):
        emulator.inject_fault("download", kind="status", status=status)
    emulator.inject_fault("download", kind="drop", after_bytes=1000)  # a truncated body
    summary, landed = land(hook, job.id, tmp_path / "results.jsonl")
    assert landed == expected_bytes(ID_LINES) and summary["lines"] == landed.count(b"\n")
    assert [status for _, status in requests_to(emulator, "download")][:3] == [408, 429, 502]


def test_a_partial_308_gets_the_rest_of_its_chunk(hook, emulator):
    """GCS keeps whole 256 KiB units: a 308 may report fewer bytes than a chunk held."""
    job = hook.create_job("tweets", resumable=True)
    emulator.inject_fault("upload_session", kind="partial_chunk", times=2)
    hook.upload_ids(job, (line.decode() for line in ID_LINES.split()), chunk_size=2 * GRANULE)
    assert emulator.submission_path(job.id).read_bytes() == ID_LINES
    chunks = [status for name, status in requests_to(emulator, "upload_session")]
    # 1.2 MB in 512 KiB chunks: 3 requests, plus at least one resend for each partial answer
    assert chunks.count(308) >= 4 and chunks[-1] in (200, 201)


def test_a_lost_answer_to_the_last_chunk_is_asked_for(hook, emulator):
    job = hook.create_job("tweets", resumable=True)
    emulator.inject_fault("upload_session", kind="lose_final_answer")
    hook.upload_ids(job, (line.decode() for line in ID_LINES.split()), chunk_size=2 * GRANULE)
    assert emulator.submission_path(job.id).read_bytes() == ID_LINES
    # the final chunk once (stored, its answer lost: logged as 0), then a status query: "complete"
    assert [status for _, status in requests_to(emulator, "upload_session")][-2:] == [0, 200]
    assert wait_until_done(hook, job.id).status == "complete"


def test_a_session_outlives_the_upload_window(monkeypatch, tmp_path):
    """Only the session's start must fall inside the 15 minutes; its chunks may come later."""
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path, speed=200, processing_seconds=1) as emulator:
        hook = connect(monkeypatch, emulator)
        job = hook.create_job("tweets", resumable=True)  # a 4.5 s upload window at this speed

        def slow_ids():
            for number, line in enumerate(ID_LINES.split()):
                if number == 30_000:
                    time.sleep(5)  # the window closes in the middle of the upload
                yield line.decode()

        hook.upload_ids(job, slow_ids(), chunk_size=GRANULE)
        assert emulator.submission_path(job.id).read_bytes() == ID_LINES
        assert wait_until_done(hook, job.id).status == "complete"


@pytest.mark.parametrize("resumable", [False, True], ids=["simple", "resumable"])
def test_an_id_above_int64_is_refused_by_line_and_the_job_receives_nothing(
    hook, emulator, tmp_path, resumable
):
    lines = [b"%d" % (10**18 + i) for i in range(1, 1001)]
    lines[776] = b"9223372036854775808"  # line 777
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\n".join(lines) + b"\n")
    job = hook.create_job("tweets", resumable=resumable)
    with pytest.raises(InvalidIdError, match=r"ids\.txt, line 777: '9223372036854775808' .*larger than"):
        hook.upload_ids(job, ids)
    assert requests_to(emulator, "upload_session") == []  # no byte of a chunk went out
    if not resumable:
        assert requests_to(emulator, "upload") == []  # simple: not even the PUT started
    assert hook.get_job(job.id).status == "created" and not emulator.submission_path(job.id).exists()


def test_a_usage_capped_app_fails_at_once_and_says_so(monkeypatch, tmp_path):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path, usage_capped=True) as emulator:
        hook = connect(monkeypatch, emulator, max_retries=5)
        started = time.monotonic()
        with pytest.raises(XComplianceUsageCapped, match="usage cap is spent.*Monthly product cap"):
            hook.create_job("tweets")
        assert count_requests(emulator, "create_job") == {429: 1}  # not retried, not waited for
        assert time.monotonic() - started < 60  # generous: it is one request, no reset wait


def test_no_such_key_right_after_completion_is_retried_then_reported(hook, emulator, tmp_path):
    job = hook.create_job("tweets")
    hook.upload_ids(job, ["1200000000000000005", "1200000000000000020"])
    wait_until_done(hook, job.id)
    emulator.inject_fault("download", kind="no_such_key", times=2)
    summary, landed = land(hook, job.id, tmp_path / "r.jsonl")
    assert landed == expected_bytes(b"1200000000000000005\n1200000000000000020\n") and summary["lines"] == 2

    emulator.inject_fault("download", kind="no_such_key", times=10)  # more than max_retries (3)
    with pytest.raises(
        XComplianceStorageError, match="NoSuchKey: the results object is still missing"
    ) as caught:
        hook.download_results(job.id, tmp_path / "again.jsonl")
    assert "http" not in str(caught.value) and not (tmp_path / "again.jsonl").exists()


def test_an_expired_download_url_is_signed_afresh(hook, emulator, tmp_path, monkeypatch):
    job = hook.create_job("tweets")
    hook.upload_ids(job, ["1200000000000000020"])
    wait_until_done(hook, job.id)
    fresh = hook.get_job(job.id)
    url = urlsplit(fresh.download_url)
    # The same object, signed a week and a day ago for a week: what a stale job would hold.
    stale_query = emulator._state.signer.sign("GET", url.path, int(time.time()) - 8 * 86400, 604800)
    stale = dataclasses.replace(fresh, download_url=f"{url.scheme}://{url.netloc}{url.path}?{stale_query}")
    answers = iter([stale])
    real_get_job = hook.get_job
    monkeypatch.setattr(hook, "get_job", lambda job_id: next(answers, None) or real_get_job(job_id))
    summary, landed = land(hook, job.id, tmp_path / "r.jsonl")
    assert summary["lines"] == 1 and landed == expected_bytes(b"1200000000000000020\n")
    assert [status for _, status in requests_to(emulator, "download")] == [
        400,
        200,
    ]  # ExpiredToken, then fresh


@pytest.mark.parametrize("gzip_results", [True, False], ids=["gzip-stored", "plain-stored"])
def test_results_land_decompressed_whatever_the_encoding(monkeypatch, tmp_path, gzip_results):
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emu", speed=100, gzip_results=gzip_results
    ) as emulator:
        hook = connect(monkeypatch, emulator)
        job = hook.create_job("tweets")
        hook.upload_ids(job, (line.decode() for line in ID_LINES.split()))
        wait_until_done(hook, job.id)
        summary, landed = land(hook, job.id, tmp_path / "r.jsonl")
        assert landed == expected_bytes(ID_LINES) and summary["lines"] > 3000
        assert not landed.startswith(gzip.compress(b"")[:2])

        nothing = hook.create_job("tweets")  # no ID needs action: an empty object
        hook.upload_ids(nothing, ["1200000000000000999"])
        wait_until_done(hook, nothing.id)
        summary, landed = land(hook, nothing.id, tmp_path / "empty.jsonl")
        assert landed == b"" and summary["lines"] == 0


def test_a_refused_signed_url_shows_code_and_details_not_the_url(hook):
    job = hook.create_job("tweets", resumable=False)
    forged = dataclasses.replace(
        job, upload_url=re.sub(r"X-Goog-Expires=(\d+)", r"X-Goog-Expires=\g<1>1", job.upload_url)
    )
    with pytest.raises(
        XComplianceStorageError, match="HTTP 403 SignatureDoesNotMatch: .*X-Goog-Expires"
    ) as caught:
        hook.upload_ids(forged, ["1"])
    assert "X-Goog-Signature" not in str(caught.value) and "http" not in str(caught.value)


# --------------------------------------------------------------- a session kept between tries
@pytest.fixture
def variables(monkeypatch):
    """Airflow's Variables, kept in a dict (tests/support/variables.py)."""
    return variables_in_a_dict(monkeypatch)


def _first_try_dies_after_one_chunk(monkeypatch, emulator, ids, variables):
    """The first try stores one 512 KiB chunk, then its connection drops and it gives up (as a
    killed worker would); the session stays kept. Returns the job and the kept Variable."""
    hook = connect(monkeypatch, emulator, max_retries=0)
    job = hook.create_job("tweets", resumable=True)
    emulator.inject_fault("upload_session", "drop", skip=1)
    with pytest.raises(Exception, match="request failed"):
        hook.upload_ids(job, ids, chunk_size=2 * GRANULE, keep_session=True)
    assert list(variables) == [f"x_compliance_resume_secret_{job.id}"]
    return job, next(iter(variables.values()))


def test_a_later_try_resumes_the_session_an_earlier_one_kept(monkeypatch, emulator, tmp_path, variables):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(ID_LINES)
    job, kept = _first_try_dies_after_one_chunk(monkeypatch, emulator, ids, variables)
    assert "upload_id" not in kept and emulator.base_url not in kept  # encrypted
    starts_before = len(requests_to(emulator, "upload"))
    chunks_before = len(requests_to(emulator, "upload_session"))

    report = connect(monkeypatch, emulator).upload_ids(job.id, ids, chunk_size=2 * GRANULE, keep_session=True)
    assert report["bytes"] == len(ID_LINES) and report["ids"] == 60_000
    assert emulator.submission_path(job.id).read_bytes() == ID_LINES
    assert len(requests_to(emulator, "upload")) == starts_before  # no new session was opened
    # one status query, then the 1.2 MB less the 512 KiB held, in 512 KiB chunks: two requests
    assert [s for _, s in requests_to(emulator, "upload_session")][chunks_before:] == [308, 308, 200]
    assert variables == {}  # forgotten once complete


def test_a_session_is_not_resumed_into_a_changed_ids_file(monkeypatch, emulator, tmp_path, variables):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(ID_LINES)
    job, _ = _first_try_dies_after_one_chunk(monkeypatch, emulator, ids, variables)
    changed = ID_LINES[: len(ID_LINES) // 2]
    ids.write_bytes(changed)
    starts_before = len(requests_to(emulator, "upload"))
    connect(monkeypatch, emulator).upload_ids(job.id, ids, chunk_size=2 * GRANULE, keep_session=True)
    assert len(requests_to(emulator, "upload")) == starts_before + 1  # a new session
    assert emulator.submission_path(job.id).read_bytes() == changed
    assert variables == {}


def test_a_kept_session_that_is_gone_is_replaced(monkeypatch, emulator, tmp_path, variables):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(ID_LINES)
    hook = connect(monkeypatch, emulator)
    job = hook.create_job("tweets", resumable=True)
    # the job's own upload URL with a session id the storage server never gave out
    gone = job.upload_url.split("?")[0] + "?upload_id=never-existed"
    VariableSessionKeeper(job.id, TOKEN, source_version(to_path(ids)), hook.log).save(gone)
    hook.upload_ids(job, ids, chunk_size=2 * GRANULE, keep_session=True)
    assert emulator.submission_path(job.id).read_bytes() == ID_LINES
    assert ("upload_session", 404) in requests_to(emulator, "upload_session")
    assert variables == {}
