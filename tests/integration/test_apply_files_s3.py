"""Applying results to JSON Lines and Parquet data sets in a real S3 (SeaweedFS), no mocks."""

from __future__ import annotations

import json

from airflow_provider_xcompliance.apply.audit import AuditIdentity
from tests.support.apply_files import (
    KEY,
    T_DELETED,
    T_OTHER_DAY,
    T_PLAIN,
    T_SCRUBBED,
    apply,
    hmac_of,
    line,
    result,
    tweet,
    write_parquet,
    write_results,
)


def test_jsonl_in_s3(seaweed, s3_bucket, monkeypatch, tmp_path):
    for name, value in seaweed.connection_env("seaweed_apply").items():
        monkeypatch.setenv(name, value)
    s3 = seaweed.client()
    flagged_day = b"".join(line(tweet(i)) + b"\n" for i in (T_PLAIN, T_DELETED, T_SCRUBBED))
    objects = {
        "data/date=2020-01-01/part-0.jsonl": flagged_day,
        "data/date=2020-01-01/part-1.jsonl": line(tweet(T_PLAIN + 1)) + b"\n",
        "data/date=2020-01-02/part-0.jsonl": line(tweet(T_OTHER_DAY)) + b"\n",
        "data/date=2020-01-03/part-0.jsonl": b"not JSON: never read\n",
    }
    for key, body in objects.items():
        s3.put_object(Bucket=s3_bucket, Key=key, Body=body)
    heads = {key: s3.head_object(Bucket=s3_bucket, Key=key) for key in objects}
    results = write_results(
        tmp_path / "results.jsonl", [result(T_DELETED, "deleted"), result(T_SCRUBBED, "scrub_geo")]
    )

    data = f"s3://seaweed_apply@{s3_bucket}/data"
    report = apply(
        results, data, audit=AuditIdentity("hmac", KEY), audit_path=f"s3://seaweed_apply@{s3_bucket}/audit"
    )

    changed = "data/date=2020-01-01/part-0.jsonl"
    body = s3.get_object(Bucket=s3_bucket, Key=changed)["Body"].read()
    kept, scrubbed = body.splitlines()
    assert kept == line(tweet(T_PLAIN))
    assert json.loads(scrubbed) == {**tweet(T_SCRUBBED), "geo": None, "coordinates": None}
    for key in objects:
        if key != changed:
            head = s3.head_object(Bucket=s3_bucket, Key=key)
            assert (head["ETag"], head["LastModified"]) == (heads[key]["ETag"], heads[key]["LastModified"]), (
                key
            )
    assert report["targets"] == {f"{data}/date=2020-01-01/part-0.jsonl": {"deleted": 1, "updated": 1}}
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys[:1] == [k for k in keys if k.startswith("audit/")] and len(keys) == len(objects) + 1
    assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    audit = s3.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read()
    assert sorted(json.loads(row)["record_key"] for row in audit.splitlines()) == sorted(
        [hmac_of(T_DELETED), hmac_of(T_SCRUBBED)]
    )

    assert apply(results, data)["changed"] is False
    assert s3.get_object(Bucket=s3_bucket, Key=changed)["Body"].read() == body


def test_parquet_in_s3(seaweed, s3_bucket, monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    for name, value in seaweed.connection_env("seaweed_apply").items():
        monkeypatch.setenv(name, value)
    s3 = seaweed.client()
    write_parquet(tmp_path / "a.parquet", [1, 2, 3, 4], rows_per_group=2)
    write_parquet(tmp_path / "b.parquet", [5, 6], rows_per_group=2)
    s3.upload_file(str(tmp_path / "a.parquet"), s3_bucket, "tweets/a.parquet")
    s3.upload_file(str(tmp_path / "b.parquet"), s3_bucket, "tweets/b.parquet")
    head = s3.head_object(Bucket=s3_bucket, Key="tweets/b.parquet")
    results = write_results(
        tmp_path / "results.jsonl", [result(2, "deleted", None), result(3, "scrub_geo", None)]
    )

    report = apply(results, f"s3://seaweed_apply@{s3_bucket}/tweets", format="parquet")
    assert report["targets"] == {
        f"s3://seaweed_apply@{s3_bucket}/tweets/a.parquet": {"deleted": 1, "updated": 1}
    }
    s3.download_file(s3_bucket, "tweets/a.parquet", str(tmp_path / "out.parquet"))
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == [1, 3, 4]
    assert table.column("geo").to_pylist() == [{"place_id": "p1"}, None, {"place_id": "p4"}]
    assert table.schema.equals(pq.read_schema(tmp_path / "a.parquet"), check_metadata=True)
    assert s3.head_object(Bucket=s3_bucket, Key="tweets/b.parquet")["ETag"] == head["ETag"]
    assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
