"""The hook against the emulator with its ID files and results in a real SeaweedFS S3 server."""

from __future__ import annotations

import json

import pytest

from airflow_provider_xcompliance.emulator import expected_results
from airflow_provider_xcompliance.exceptions import XComplianceError
from tests.support.hook_on_emulator import wait_until_done


def test_s3_round_trip_and_atomic_failure(hook, emulator, seaweed, s3_bucket, monkeypatch, tmp_path):
    """IDs read from S3, results written to S3; a download that keeps breaking leaves neither
    an object nor an unfinished multipart upload behind."""
    for name, value in seaweed.connection_env("seaweed_hook").items():
        monkeypatch.setenv(name, value)
    s3 = seaweed.client()
    ids = b"".join(b"%d\n" % (10**18 + i * 997) for i in range(400_000))  # ~8 MiB
    s3.put_object(Bucket=s3_bucket, Key="in/ids.txt", Body=ids)
    job = hook.create_job("tweets", resumable=True)
    assert hook.upload_ids(job, f"s3://seaweed_hook@{s3_bucket}/in/ids.txt")["ids"] == 400_000
    wait_until_done(hook, job.id)

    target = f"s3://seaweed_hook@{s3_bucket}/out/results.jsonl"
    emulator.inject_fault("download", kind="drop", after_bytes=20_000, times=10)
    with pytest.raises(XComplianceError):
        hook.download_results(job.id, target)
    assert s3.list_objects_v2(Bucket=s3_bucket, Prefix="out/").get("KeyCount") == 0
    assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")

    emulator.clear_faults()
    summary = hook.download_results(job.id, target)
    body = s3.get_object(Bucket=s3_bucket, Key="out/results.jsonl")["Body"].read()
    expected = list(expected_results(ids.decode().split(), "tweets"))
    assert [json.loads(line) for line in body.splitlines()] == expected
    assert summary["lines"] == len(expected) and summary["path"] == target
