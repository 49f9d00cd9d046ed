"""Atomic writes leave nothing that grows when an attempt is killed: the next attempt replaces
its partial file (or aborts its S3 multipart upload: tests/integration/test_storage_s3.py)."""

from __future__ import annotations

import os

import pytest

from airflow_provider_xcompliance.object_storage import atomic_writer, to_path


def test_a_local_partial_file_left_by_a_killed_attempt_is_written_over(tmp_path):
    target = tmp_path / "results.jsonl"
    leftover = tmp_path / ".results.jsonl.partial"
    leftover.write_bytes(b"x" * 1000)  # what a SIGKILLed attempt leaves behind

    with atomic_writer(to_path(target)) as file:
        file.write(b'{"id":"1"}\n')
    assert target.read_bytes() == b'{"id":"1"}\n'
    assert sorted(os.listdir(tmp_path)) == ["results.jsonl"]


def test_a_failed_local_write_leaves_neither_target_nor_partial(tmp_path):
    target = tmp_path / "results.jsonl"
    with pytest.raises(RuntimeError), atomic_writer(to_path(target)) as file:
        file.write(b"half")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
