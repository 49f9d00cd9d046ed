"""Result files: the documented rule, ground truth, expected_results, download transport."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
import requests

from airflow_provider_xcompliance.emulator import expected_results
from airflow_provider_xcompliance.emulator.rules import process_file, rules_for

from .helpers import api_session, create_job, jsonl, put_ids, tweet_ids, wait_status

UTC = dt.UTC


def _snowflake_time(n: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(((n >> 22) + 1288834974657) // 1000, tz=UTC)


def _run_job(emu, job_type: str, body: bytes | str) -> tuple[dict, requests.Response]:
    s = api_session(emu)
    job = create_job(s, emu, job_type)
    assert put_ids(job["upload_url"], body).status_code == 200
    done = wait_status(s, emu, job["id"])
    assert done["status"] == "complete", done
    return done, requests.get(done["download_url"])


def test_rule_by_hand():
    """The rule from the rules module docstring, checked on hand-picked IDs."""
    base = 1234567890123456000  # q = 56: plain lines
    normal = base + 15  # h = 15: deleted
    created = _snowflake_time(normal)
    redacted = created + dt.timedelta(days=1 + (normal // 7) % 365)
    got = list(expected_results([str(normal)], "tweets"))
    assert got == [
        {
            "id": str(normal),
            "action": "delete",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "redacted_at": redacted.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "reason": "deleted",
        }
    ]
    reasons = {
        h: [r["reason"] for r in expected_results([str(base + h)], "tweets")]
        for h in (0, 19, 20, 29, 30, 39, 40, 44, 45, 54, 55, 999)
    }
    assert reasons == {
        0: ["deleted"],
        19: ["deleted"],
        20: ["suspended"],
        29: ["suspended"],
        30: ["protected"],
        39: ["protected"],
        40: ["bounced"],
        44: ["bounced"],
        45: ["scrub_geo"],
        54: ["scrub_geo"],
        55: [],
        999: [],
    }
    geo = list(expected_results([str(base + 50)], "tweets"))[0]
    assert geo["reason"] == "scrub_geo" and geo["action"] == "delete"  # as in X's samples
    users = {
        h: [r["reason"] for r in expected_results([str(base + h)], "users")] for h in (5, 25, 35, 45, 49, 50)
    }
    assert users == {
        5: ["deleted"],
        25: ["suspended"],
        35: ["protected"],
        45: ["deactivated"],
        49: ["deactivated"],
        50: [],
    }


def test_rule_quirks_by_hand():
    no_redacted = 1234567890123405015  # q = 5
    offset_form = 1234567890123415015  # q = 15
    twice = 1234567890123421015  # q = 21
    [a] = expected_results([str(no_redacted)], "tweets")
    assert "redacted_at" not in a and list(a) == ["id", "action", "created_at", "reason"]
    [b] = expected_results([str(offset_form)], "tweets")
    assert b["created_at"].endswith(".000+00:00") and b["redacted_at"].endswith(".000+00:00")
    assert b["created_at"] == _snowflake_time(offset_form).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    c = list(expected_results([str(twice)], "tweets"))
    assert len(c) == 2 and c[0] == c[1]


def test_small_legacy_ids():
    [r] = expected_results(["7"], "users")  # h = 7: deleted; pre-snowflake date
    created = dt.datetime(2006, 3, 21, tzinfo=UTC) + dt.timedelta(seconds=7)
    assert r["reason"] == "deleted"
    assert r["created_at"] == created.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert list(expected_results(["0042", "  ", "100"], "users"))[0]["id"] == "0042"
    with pytest.raises(ValueError):
        list(expected_results(["12a"], "tweets"))
    with pytest.raises(ValueError):
        list(expected_results(["1" * 20], "tweets"))
    with pytest.raises(ValueError):
        list(expected_results(["1"], "videos"))


def test_download_matches_expected_results_rule(emu):
    ids = tweet_ids(30_000) + ["15", "0000000000000000020"]
    done, r = _run_job(emu, "tweets", "\n".join(ids))
    got = jsonl(r.text)
    expected = list(expected_results(ids, "tweets"))
    assert got == expected
    assert 0.04 * len(ids) < len(got) < 0.08 * len(ids)
    assert {g["reason"] for g in got} == {"deleted", "suspended", "protected", "bounced", "scrub_geo"}
    assert any("redacted_at" not in g for g in got)
    assert any(g["created_at"].endswith("+00:00") for g in got)
    assert len({g["id"] for g in got}) < len(got)  # some IDs twice
    # compact JSON lines, exactly
    assert r.text.splitlines()[0] == json.dumps(expected[0], separators=(",", ":"))


def test_download_matches_expected_results_users(emu):
    ids = [str(i * 7919) for i in range(1, 20_000)]
    _, r = _run_job(emu, "users", "\n".join(ids) + "\n")
    got = jsonl(r.text)
    assert got == list(expected_results(ids, "users"))
    assert {g["reason"] for g in got} == {"deleted", "suspended", "protected", "deactivated"}


def _truth(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text(
        "id,reason\n"
        "# comment line\n"
        "1400000000000000001,deleted\n"
        "\n"
        "1400000000000000002,scrub_geo\n"
        "1400000000000000003,suspended\n"
        "1400000000000000003,suspended\n"
        "1400000000000000004,protected,custom_action\n"
        "1400000000000000005,some_new_reason\n"
        "0000000000000000006,deleted\n"
    )
    return path


def test_ground_truth(make_emulator, tmp_path):
    truth = _truth(tmp_path)
    emu = make_emulator(speed=1000, ground_truth=truth, upload_window_seconds=100_000, processing_seconds=10)
    ids = [str(1400000000000000000 + i) for i in range(10)] + ["6", "1400000000000000015"]
    _, r = _run_job(emu, "tweets", "\n".join(ids))
    got = jsonl(r.text)
    assert got == list(expected_results(ids, "tweets", ground_truth=truth))
    assert [(g["id"], g["reason"], g["action"]) for g in got] == [
        ("1400000000000000001", "deleted", "delete"),
        ("1400000000000000002", "scrub_geo", "delete"),
        ("1400000000000000003", "suspended", "delete"),
        ("1400000000000000003", "suspended", "delete"),
        ("1400000000000000004", "protected", "custom_action"),
        ("1400000000000000005", "some_new_reason", "delete"),
        ("6", "deleted", "delete"),
    ]  # ...15 would be 'deleted' by the rule, but the ground truth replaces the rule


def test_ground_truth_per_type(make_emulator, tmp_path):
    truth = _truth(tmp_path)
    emu = make_emulator(
        speed=1000, ground_truth={"users": truth}, upload_window_seconds=100_000, processing_seconds=10
    )
    body = "1400000000000000004\n1400000000000000100\n"
    _, r = _run_job(emu, "tweets", body)
    assert [(g["id"], g["reason"]) for g in jsonl(r.text)] == [("1400000000000000004", "deleted")]  # the rule
    _, r = _run_job(emu, "users", body)
    assert [(g["id"], g["reason"], g["action"]) for g in jsonl(r.text)] == [
        ("1400000000000000004", "protected", "custom_action")
    ]  # the truth


def test_bad_ground_truth_fails_at_start(make_emulator, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1400000000000000001,deleted\nnot-an-id,deleted\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        make_emulator(ground_truth=bad)
    missing_reason = tmp_path / "missing.csv"
    missing_reason.write_text("1400000000000000001\n")
    with pytest.raises(ValueError, match="missing reason"):
        make_emulator(ground_truth=missing_reason)


def test_download_gzip_identity_and_range(emu):
    """Results are stored gzip-compressed and served with decompressive transcoding."""
    ids = tweet_ids(20_000)
    done, r = _run_job(emu, "tweets", "\n".join(ids))  # requests sends Accept-Encoding: gzip
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["x-goog-stored-content-encoding"] == "gzip"
    full = r.content  # decompressed by requests
    assert full == emu.results_path(done["id"]).read_bytes()
    stored = emu.stored_results_path(done["id"]).read_bytes()
    assert stored[:2] == b"\x1f\x8b" and gzip.decompress(stored) == full
    raw = requests.get(done["download_url"], stream=True)
    compressed = raw.raw.read(decode_content=False)
    assert compressed == stored
    assert int(raw.headers["Content-Length"]) == len(stored)
    assert int(raw.headers["x-goog-stored-content-length"]) == len(stored)
    # without Accept-Encoding: gzip, GCS decompresses: no Content-Length, chunked
    plain = requests.get(done["download_url"], headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert "Content-Length" not in plain.headers
    assert plain.headers["Transfer-Encoding"] == "chunked"
    assert plain.content == full
    # a transcoded answer ignores Range (GCS): the whole object, 200
    whole = requests.get(
        done["download_url"], headers={"Accept-Encoding": "identity", "Range": "bytes=100-199"}
    )
    assert whole.status_code == 200 and whole.content == full
    # with Accept-Encoding: gzip, ranges address the stored (compressed) bytes
    part = requests.get(
        done["download_url"], headers={"Accept-Encoding": "gzip", "Range": "bytes=100-199"}, stream=True
    )
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(stored)}"
    assert part.raw.read(decode_content=False) == stored[100:200]
    r = requests.get(done["download_url"], headers={"Range": f"bytes={len(stored)}-"})
    assert r.status_code == 416


def test_empty_results_are_an_empty_object(emu):
    done, r = _run_job(emu, "tweets", "1400000000000000100\n")  # compliant
    assert r.status_code == 200 and r.content == b""
    assert "Content-Encoding" not in r.headers
    assert r.headers["Content-Length"] == "0"
    assert r.headers["x-goog-stored-content-encoding"] == "identity"
    plain = requests.get(done["download_url"], headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and plain.content == b""


def test_download_without_gzip_results_option(make_emulator):
    emu = make_emulator(speed=1000, gzip_results=False, upload_window_seconds=100_000, processing_seconds=10)
    done, r = _run_job(emu, "tweets", "\n".join(tweet_ids(2000)))
    assert "Content-Encoding" not in r.headers
    assert r.headers["x-goog-stored-content-encoding"] == "identity"
    assert int(r.headers["Content-Length"]) == len(r.content) > 0
    part = requests.get(done["download_url"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == r.content[10:20]


def test_processing_a_million_ids(tmp_path):
    """Correct counts on a large file (its speed is measured by benchmarks/, not asserted here)."""
    src = tmp_path / "ids.txt"
    count = 1_000_000
    with open(src, "wb") as f:
        for start in range(0, count, 100_000):
            f.write(b"".join(b"%d\n" % (1400000000000000000 + i * 7) for i in range(start, start + 100_000)))
    outcome = process_file(src, tmp_path / "out.jsonl", rules_for("tweets"))
    assert outcome.error is None and outcome.ids == count
    assert outcome.results == sum(1 for _ in open(tmp_path / "out.jsonl"))
