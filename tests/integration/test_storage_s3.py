"""Atomic writes leave nothing that grows when an attempt is killed: the next attempt aborts its S3
multipart upload (in a real SeaweedFS; its partial local file: tests/unit/test_storage.py)."""

from __future__ import annotations

from airflow_provider_xcompliance.object_storage import atomic_writer, to_path


def test_an_s3_multipart_upload_left_by_a_killed_attempt_is_aborted(seaweed, s3_bucket, monkeypatch):
    for name, value in seaweed.connection_env("seaweed_storage").items():
        monkeypatch.setenv(name, value)
    s3 = seaweed.client()
    stale = s3.create_multipart_upload(Bucket=s3_bucket, Key="results/tweets.jsonl")["UploadId"]
    other = s3.create_multipart_upload(Bucket=s3_bucket, Key="results/tweets.jsonl.other")["UploadId"]

    with atomic_writer(to_path(f"s3://seaweed_storage@{s3_bucket}/results/tweets.jsonl")) as file:
        file.write(b'{"id":"1"}\n')

    assert s3.get_object(Bucket=s3_bucket, Key="results/tweets.jsonl")["Body"].read() == b'{"id":"1"}\n'
    open_uploads = s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert {u["UploadId"] for u in open_uploads} == {other} != {stale}  # another key's upload is left alone
