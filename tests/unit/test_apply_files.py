"""Applying results to JSON Lines and Parquet data sets: real files, no mocks (in a real S3:
tests/integration/test_apply_files_s3.py)."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from airflow_provider_xcompliance.apply.audit import AUDIT_COLUMNS, AuditIdentity
from airflow_provider_xcompliance.apply.files import apply_to_files
from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.exceptions import (
    ApplyConfigError,
    ApplyRefused,
    DataFormatError,
    InvalidResultsError,
)
from tests.support.apply_files import (
    KEY,
    T_ABSENT,
    T_DELETED,
    T_NO_GEO,
    T_OTHER_DAY,
    T_PLAIN,
    T_PROTECTED,
    T_SCRUBBED,
    T_TWICE,
    apply,
    audit_rows,
    hmac_of,
    line,
    result,
    snapshot,
    tweet,
    write_parquet,
    write_results,
)

TWEETS_RESULTS = [
    result(T_DELETED, "deleted"),
    result(T_SCRUBBED, "scrub_geo"),
    result(T_PROTECTED, "protected"),
    result(T_TWICE, "scrub_geo"),
    result(T_TWICE, "deleted"),
    result(T_NO_GEO, "scrub_geo"),
    result(T_ABSENT, "suspended", "2020-01-02T00:00:00+00:00"),
]


@pytest.fixture
def jsonl_data(tmp_path: Path) -> Path:
    """date=2020-01-01 holds the flagged tweets (part-0, with a blank line, CRLF and no final
    line feed) and an unflagged object (part-1); date=2020-01-03 holds an object that is not
    JSON at all, which pruning must never read; hidden and non-data names are skipped."""
    data = tmp_path / "data"
    day = data / "date=2020-01-01"
    day.mkdir(parents=True)
    (day / "part-0.jsonl").write_bytes(
        line(tweet(T_PLAIN))
        + b"\n"
        + line(tweet(T_DELETED, as_string=False))
        + b"\n"
        + b"\n"
        + line(tweet(T_SCRUBBED, lang="en"))
        + b"\r\n"
        + line(tweet(T_PROTECTED))
        + b"\n"
        + line(tweet(T_TWICE))
        + b"\n"
        + line(tweet(T_NO_GEO, geo=False))
        + b"\n"
        + b'{"text": "spaces kept", "id":  "1265324480517361610" ,"geo":null}\n'
        + line(tweet(T_SCRUBBED + 100))
        + b"\n"
        + line(tweet(T_SCRUBBED, as_string=False))  # the same tweet stored twice, no final line feed
    )
    (day / "part-1.jsonl").write_bytes(line(tweet(T_PLAIN + 50)) + b"\n")
    (day / "_SUCCESS").write_bytes(b"")
    (day / ".part-0.jsonl.crc").write_bytes(b"\x00 not json")
    (data / "date=2020-01-02").mkdir()
    (data / "date=2020-01-02" / "part-0.jsonl").write_bytes(line(tweet(T_OTHER_DAY)) + b"\n")
    (data / "date=2020-01-03").mkdir()
    (data / "date=2020-01-03" / "part-0.jsonl").write_bytes(b"this is not JSON\n")
    (data / "_temporary").mkdir()
    (data / "_temporary" / "part-9.jsonl").write_bytes(b"{broken\n")
    return data


# --- JSON Lines ------------------------------------------------------------------------------


def test_tweets_jsonl_record_for_record(tmp_path, jsonl_data, caplog):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    part0 = jsonl_data / "date=2020-01-01" / "part-0.jsonl"
    part0.chmod(0o640)
    original = part0.read_bytes().split(b"\n")
    before = snapshot(jsonl_data)
    audit_dir = tmp_path / "audit"

    with caplog.at_level(logging.INFO, logger="airflow_provider_xcompliance.apply"):
        report = apply(results, jsonl_data, audit=AuditIdentity("hmac", KEY), audit_path=audit_dir)

    lines = part0.read_bytes().split(b"\n")
    # untouched lines are byte-identical: the blank line, the odd spacing, the CRLF-free lines
    assert lines[0] == original[0]
    assert b"\n".join(lines).count(str(T_DELETED).encode()) == 0
    assert b"\n".join(lines).count(str(T_TWICE).encode()) == 0
    assert lines[1] == b""  # the blank line
    scrubbed = json.loads(lines[2])
    assert lines[2].endswith(b"\r")
    assert scrubbed == {**tweet(T_SCRUBBED, lang="en"), "geo": None, "coordinates": None}
    assert list(scrubbed) == ["id", "text", "author_id", "geo", "coordinates", "lang"]  # order kept
    assert lines[3] == original[4]  # protected: kept by the override
    assert lines[4] == original[6]  # no geo data: nothing to scrub
    assert lines[5:7] == original[7:9]
    assert json.loads(lines[7]) == {**tweet(T_SCRUBBED, as_string=False), "geo": None, "coordinates": None}
    assert len(lines) == 8  # and still no final line feed
    assert stat.S_IMODE(part0.stat().st_mode) == 0o640

    after = snapshot(jsonl_data)
    assert set(after) == set(before)  # no leftover partial or hidden object
    for name in before:
        if name != "date=2020-01-01/part-0.jsonl":
            assert after[name] == before[name], name  # same bytes, inode and mtime: not rewritten
    assert after["date=2020-01-01/part-0.jsonl"][1] != before["date=2020-01-01/part-0.jsonl"][1]

    target = str(jsonl_data / "date=2020-01-01" / "part-0.jsonl")
    assert report["target"] == f"file://{jsonl_data}"
    assert report["result_lines"] == 7
    assert report["kept"] == {"protected": 1}
    assert report["deleted"] == {"deleted": 2}
    assert report["updated"] == {"scrub_geo": 2}
    assert list(report["targets"]) == [f"file://{target}"]
    assert report["targets"][f"file://{target}"] == {"deleted": 2, "updated": 2}
    assert report["changed"] is True and report["dry_run"] is False and report["seconds"] >= 0
    assert "Partition pruning: reading 2 partitions" in caplog.text

    body, rows = audit_rows(audit_dir)
    assert all(tuple(row) == AUDIT_COLUMNS for row in rows)
    assert sorted((row["record_key"], row["change"], row["reason"]) for row in rows) == sorted(
        [
            (hmac_of(T_DELETED), "delete", "deleted"),
            (hmac_of(T_TWICE), "delete", "deleted"),
            (hmac_of(T_SCRUBBED), "scrub_geo", "scrub_geo"),
            (hmac_of(T_SCRUBBED), "scrub_geo", "scrub_geo"),
        ]
    )
    assert {(row["record_type"], row["target"], row["job_id"], row["run_id"]) for row in rows} == {
        ("tweet", f"file://{target}", "1500000000000000001", "manual__1")
    }
    assert all(row["applied_at"].endswith("Z") for row in rows)
    for record_id in (T_DELETED, T_SCRUBBED, T_TWICE, T_PROTECTED, T_NO_GEO):
        assert str(record_id).encode() not in body
    (audit_file,) = audit_dir.iterdir()
    assert audit_file.name.startswith("1500000000000000001-") and audit_file.suffix == ".jsonl"


def test_second_run_changes_nothing(tmp_path, jsonl_data, caplog):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    audit_dir = tmp_path / "audit"
    first = apply(results, jsonl_data, audit=AuditIdentity("hmac", KEY), audit_path=audit_dir)
    assert first["changed"]
    before = snapshot(jsonl_data)
    with caplog.at_level(logging.INFO, logger="airflow_provider_xcompliance.apply"):
        second = apply(results, jsonl_data, audit=AuditIdentity("hmac", KEY), audit_path=audit_dir)
    assert second["changed"] is False
    assert (second["targets"], second["deleted"], second["updated"]) == ({}, {}, {})
    assert second["result_lines"] == 7 and second["kept"] == {"protected": 1}
    assert snapshot(jsonl_data) == before
    assert len(list(audit_dir.iterdir())) == 1  # no audit object for a run that changed nothing
    assert "Nothing to change" in caplog.text


def test_dry_run_reports_and_writes_nothing(tmp_path, jsonl_data):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    before = snapshot(jsonl_data)
    report = apply(
        results, jsonl_data, dry_run=True, audit=AuditIdentity("hmac", KEY), audit_path=tmp_path / "audit"
    )
    assert snapshot(jsonl_data) == before
    assert not (tmp_path / "audit").exists()
    target = f"file://{jsonl_data}/date=2020-01-01/part-0.jsonl"
    assert report["dry_run"] is True and report["changed"] is True
    assert report["targets"] == {target: {"deleted": 2, "updated": 2}}
    assert (report["deleted"], report["updated"]) == ({"deleted": 2}, {"scrub_geo": 2})


def test_max_delete_fraction_refuses_and_changes_nothing(tmp_path, jsonl_data):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    before = snapshot(jsonl_data)
    # 2 of the 11 records in the flagged partitions: 18 %
    with pytest.raises(ApplyRefused, match=r"delete 2 of 11 records .* max_delete_fraction=0.1"):
        apply(
            results,
            jsonl_data,
            max_delete_fraction=0.1,
            audit=AuditIdentity("hmac", KEY),
            audit_path=tmp_path / "a",
        )
    assert snapshot(jsonl_data) == before
    assert not (tmp_path / "a").exists()
    assert apply(results, jsonl_data, max_delete_fraction=0.2)["deleted"] == {"deleted": 2}


def test_bad_results_line_fails_before_any_object_is_touched(tmp_path, jsonl_data):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    with results.open("ab") as file:
        file.write(b'{"id": "12", "reason": "deleted"}\n{"id": "oops"\n')
    before = snapshot(jsonl_data)
    with pytest.raises(InvalidResultsError, match=r"results\.jsonl, line 9: "):
        apply(results, jsonl_data)
    assert snapshot(jsonl_data) == before


def test_unknown_created_at_reads_every_object_and_names_the_broken_line(tmp_path, jsonl_data, caplog):
    """Without a date the partition is unknown, so every object is read: the one that is not
    JSON (never read when pruning works) now fails the scan, before anything is written."""
    results = write_results(
        tmp_path / "results.jsonl", [*TWEETS_RESULTS, result(T_OTHER_DAY, "deleted", None)]
    )
    before = snapshot(jsonl_data)
    broken = r"date=2020-01-03/part-0\.jsonl, line 1: 'this is not JSON'"
    with (
        caplog.at_level(logging.INFO, logger="airflow_provider_xcompliance.apply"),
        pytest.raises(DataFormatError, match=broken),
    ):
        apply(results, jsonl_data)
    assert "1 flagged records have no readable created_at" in caplog.text
    assert snapshot(jsonl_data) == before


def test_without_template_every_data_object_is_read(tmp_path, jsonl_data):
    (jsonl_data / "date=2020-01-03" / "part-0.jsonl").unlink()
    results = write_results(tmp_path / "results.jsonl", [result(T_OTHER_DAY, "deleted")])
    report = apply(results, jsonl_data, partition_template=None)
    assert list(report["targets"]) == [f"file://{jsonl_data}/date=2020-01-02/part-0.jsonl"]
    assert (jsonl_data / "date=2020-01-02" / "part-0.jsonl").read_bytes() == b""


def test_users_job_deletes_every_tweet_of_the_user(tmp_path):
    data = tmp_path / "tweets.jsonl"  # a single object, numbers and strings as author IDs
    rows = [
        tweet(1, author=7),
        tweet(2, author=8),
        tweet(3, author="7"),
        tweet(4, author=9),
        tweet(5, author=10),
    ]
    data.write_bytes(b"".join(line(row) + b"\n" for row in rows))
    results = write_results(
        tmp_path / "results.jsonl",
        [
            result(7, "suspended", None),
            result(9, "protected", None),
            result(10, "deactivated", None),
        ],
    )
    audit_dir = tmp_path / "audit"
    report = apply_to_files(
        results,
        ChangeRules("users", {"protected": "keep"}),
        data,
        author_id_field="author_id",
        partition_template="date={created_at:%Y-%m-%d}",
        audit=AuditIdentity("plain"),
        audit_path=audit_dir,
    )
    assert [json.loads(x)["id"] for x in data.read_bytes().splitlines()] == ["2", "4"]
    assert data.read_bytes().splitlines() == [line(rows[1]), line(rows[3])]
    assert report["deleted"] == {"deactivated": 1, "suspended": 2}
    assert report["kept"] == {"protected": 1}
    _, audit = audit_rows(audit_dir)
    # plain IDs, on request: the deleted tweets' own IDs, not the user's
    assert sorted(row["record_key"] for row in audit) == ["1", "3", "5"]
    assert {row["record_type"] for row in audit} == {"tweet"}


def test_users_job_needs_the_author_field(tmp_path, jsonl_data):
    results = write_results(tmp_path / "results.jsonl", [result(7, "suspended")])
    with pytest.raises(ApplyConfigError, match="author_id_field"):
        apply_to_files(results, ChangeRules("users"), jsonl_data)


def test_missing_id_field_names_the_object_and_line(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_bytes(line(tweet(1)) + b"\n" + b'{"tweet_id": "2"}\n')
    results = write_results(tmp_path / "results.jsonl", [result(1, "deleted")])
    with pytest.raises(DataFormatError, match=r"data\.jsonl, line 2: .* has no 'id' field"):
        apply(results, data)
    assert data.read_bytes().count(b"\n") == 2


def test_scrub_geo_without_geo_fields_is_refused(tmp_path, jsonl_data):
    results = write_results(tmp_path / "results.jsonl", [result(T_SCRUBBED, "scrub_geo")])
    with pytest.raises(ApplyConfigError, match="geo_fields is empty"):
        apply(results, jsonl_data, geo_fields=())
    # an override that keeps scrub_geo records makes it a no-op instead
    report = apply(results, jsonl_data, geo_fields=(), rules=ChangeRules("tweets", {"scrub_geo": "keep"}))
    assert report["kept"] == {"scrub_geo": 1} and not report["changed"]


def test_audit_inside_the_data_set_is_refused(tmp_path, jsonl_data):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    with pytest.raises(ApplyConfigError, match="inside data_path"):
        apply(results, jsonl_data, audit=AuditIdentity("hmac", KEY), audit_path=jsonl_data / "audit")


# --- Parquet ---------------------------------------------------------------------------------


@pytest.mark.parametrize("string_ids", [False, True], ids=["int64-ids", "string-ids"])
def test_parquet_tweets(tmp_path, string_ids):
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    day = data / "date=2020-01-01"
    day.mkdir(parents=True)
    base = 1265324480517361000
    ids = [base + n for n in range(1000)]
    write_parquet(day / "part-0.parquet", ids, rows_per_group=300, string_ids=string_ids)
    write_parquet(day / "part-1.parquet", [base + 5000 + n for n in range(10)], rows_per_group=300)
    (data / "date=2020-01-05").mkdir()
    (data / "date=2020-01-05" / "part-0.parquet").write_bytes(b"not parquet")  # pruned, never read
    part0 = day / "part-0.parquet"
    part0.chmod(0o600)
    old_schema = pq.read_schema(part0)
    untouched = snapshot(data)["date=2020-01-01/part-1.parquet"]

    deleted = {ids[0], ids[299], ids[300], ids[999]}
    scrubbed = {ids[10], ids[650]}
    results = write_results(
        tmp_path / "results.jsonl",
        [
            *(result(i, "deleted") for i in sorted(deleted)),
            *(result(i, "scrub_geo") for i in sorted(scrubbed)),
            result(ids[999], "scrub_geo"),  # also deleted: delete wins
            result(ids[500], "protected"),
            result(base + 10**6, "deleted"),  # not in the data
        ],
    )
    audit_dir = tmp_path / "audit"
    report = apply(results, data, format="parquet", audit=AuditIdentity("hmac", KEY), audit_path=audit_dir)

    table = pq.read_table(part0)
    assert pq.read_schema(part0).equals(old_schema, check_metadata=True)
    assert pq.read_schema(part0).metadata[b"origin"] == b"test data set"
    kept_ids = [int(i) for i in table.column("id").to_pylist()]
    assert kept_ids == [i for i in ids if i not in deleted]
    geo = dict(zip(kept_ids, table.column("geo").to_pylist(), strict=True))
    coordinates = dict(zip(kept_ids, table.column("coordinates").to_pylist(), strict=True))
    texts = dict(zip(kept_ids, table.column("text").to_pylist(), strict=True))
    for i in kept_ids:
        assert (geo[i] is None) == (i in scrubbed) and (coordinates[i] is None) == (i in scrubbed)
        assert texts[i] == f"tweet {i}"
    assert pq.ParquetFile(part0).metadata.num_row_groups == 4
    assert pq.ParquetFile(part0).metadata.row_group(0).column(0).compression == "ZSTD"
    assert stat.S_IMODE(part0.stat().st_mode) == 0o600
    assert snapshot(data)["date=2020-01-01/part-1.parquet"] == untouched
    assert sorted(p.name for p in day.iterdir()) == ["part-0.parquet", "part-1.parquet"]

    assert report["deleted"] == {"deleted": 4} and report["updated"] == {"scrub_geo": 2}
    assert report["kept"] == {"protected": 1}
    assert report["targets"] == {f"file://{part0}": {"deleted": 4, "updated": 2}}
    body, rows = audit_rows(audit_dir)
    assert sorted(row["record_key"] for row in rows) == sorted(hmac_of(i) for i in deleted | scrubbed)
    assert not any(str(i).encode() in body for i in deleted | scrubbed)

    before = snapshot(data)
    second = apply(results, data, format="parquet", audit=AuditIdentity("hmac", KEY), audit_path=audit_dir)
    assert second["changed"] is False and second["targets"] == {}
    assert snapshot(data) == before


def test_parquet_users_job_dry_run_and_guard(tmp_path):
    import pyarrow.parquet as pq

    data = tmp_path / "tweets.parquet"
    write_parquet(data, list(range(1, 31)), rows_per_group=7)
    results = write_results(tmp_path / "results.jsonl", [result(1, "suspended")])  # author 1: 10 of 30
    before = snapshot(tmp_path)
    dry = apply_to_files(
        results, ChangeRules("users"), data, format="parquet", author_id_field="author_id", dry_run=True
    )
    assert dry["deleted"] == {"suspended": 10} and snapshot(tmp_path) == before
    with pytest.raises(ApplyRefused):
        apply_to_files(
            results,
            ChangeRules("users"),
            data,
            format="parquet",
            author_id_field="author_id",
            max_delete_fraction=0.3,
        )
    assert snapshot(tmp_path) == before
    apply_to_files(results, ChangeRules("users"), data, format="parquet", author_id_field="author_id")
    assert pq.read_table(data).column("author_id").to_pylist() == [i % 3 for i in range(1, 31) if i % 3 != 1]


def test_large_object_is_edited_across_blocks(tmp_path):
    """An object larger than a read block (4 MiB): records cut by block edges are matched and
    edited like any other, the rest stays byte for byte, and a broken line is named by its
    number counted across blocks."""
    base = 1265324480517361000
    records = [tweet(base + n, as_string=bool(n % 2), filler="x" * (n % 300)) for n in range(30_000)]
    raw = [line(record) for record in records]
    data = tmp_path / "big.jsonl"
    data.write_bytes(b"\n".join(raw) + b"\n")
    assert data.stat().st_size > 2 * 4 * 1024 * 1024
    deleted = set(range(0, 30_000, 97))
    scrubbed = set(range(5, 30_000, 89)) - deleted
    results = write_results(
        tmp_path / "results.jsonl",
        [
            *(result(base + n, "deleted", None) for n in sorted(deleted)),
            *(result(base + n, "scrub_geo", None) for n in sorted(scrubbed)),
        ],
    )
    report = apply(results, data)
    assert report["deleted"] == {"deleted": len(deleted)} and report["updated"] == {
        "scrub_geo": len(scrubbed)
    }
    out = data.read_bytes().split(b"\n")
    assert out[-1] == b""
    expected = [n for n in range(30_000) if n not in deleted]
    assert len(out) - 1 == len(expected)
    for got, n in zip(out[:-1], expected, strict=True):
        if n in scrubbed:
            assert json.loads(got) == {**records[n], "geo": None, "coordinates": None}
        else:
            assert got == raw[n]

    lines = data.read_bytes().split(b"\n")
    lines[25_000] = b'{"id": 1, "geo": '
    data.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=r"big\.jsonl, line 25001: "):
        apply(results, data)


@pytest.mark.parametrize("template", ["{nope}", "{created_at:%Y}/../other", "/date={created_at:%Y}", "{0}"])
def test_bad_partition_template_is_refused_before_reading(tmp_path, jsonl_data, template):
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    before = snapshot(jsonl_data)
    with pytest.raises(ApplyConfigError, match="partition_template"):
        apply(results, jsonl_data, partition_template=template)
    assert snapshot(jsonl_data) == before


def test_partitions_follow_the_utc_time_of_any_offset(tmp_path, jsonl_data):
    """23:30 at -05:00 is the next day in UTC: the tweet is looked for in date=2020-01-02."""
    results = write_results(
        tmp_path / "results.jsonl", [result(T_OTHER_DAY, "deleted", "2020-01-01T23:30:00-05:00")]
    )
    report = apply(results, jsonl_data, partition_template="date={created_at:%Y-%m-%d}")
    assert list(report["targets"]) == [f"file://{jsonl_data}/date=2020-01-02/part-0.jsonl"]


class _StopAfterFirstRewrite(logging.Logger):
    """Raises where the first rewritten object is logged: a failure between two rewrites."""

    def info(self, msg, *args, **kwargs):
        if msg.startswith("Rewrote"):
            raise OSError("disk gone")
        super().info(msg, *args, **kwargs)


def test_failed_rewrite_still_audits_the_objects_already_rewritten(tmp_path, jsonl_data):
    (jsonl_data / "date=2020-01-02" / "part-1.jsonl").write_bytes(line(tweet(T_ABSENT)) + b"\n")
    results = write_results(tmp_path / "results.jsonl", TWEETS_RESULTS)
    audit_dir = tmp_path / "audit"
    with pytest.raises(OSError, match="disk gone"):
        apply(
            results,
            jsonl_data,
            audit=AuditIdentity("hmac", KEY),
            audit_path=audit_dir,
            log=_StopAfterFirstRewrite("test"),
        )
    _, rows = audit_rows(audit_dir)
    assert {row["target"] for row in rows} == {f"file://{jsonl_data}/date=2020-01-01/part-0.jsonl"}
    assert len(rows) == 4
    assert str(T_ABSENT).encode() in (jsonl_data / "date=2020-01-02" / "part-1.jsonl").read_bytes()
