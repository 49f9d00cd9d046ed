"""Reading and writing object storage (local files, S3, GCS, Azure) through ``ObjectStoragePath``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from airflow.sdk import ObjectStoragePath

BLOCK_SIZE = 4 * 1024 * 1024  # reads of ID files and spools: large enough for C-speed checks
# What an object store's writer buffers before it sends a part: S3's smallest part size, since
# s3fs and botocore hold several copies of a part while it is sent (peak RSS grows with it).
PART_SIZE = 5 * 1024 * 1024
LOCAL_PROTOCOLS = ("file", "local", "")

log = logging.getLogger(__name__)

Location = str | os.PathLike | ObjectStoragePath


def to_path(location: Location) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URL (``s3://conn@bucket/key``, ``file:///x``) or a local path."""
    if isinstance(location, ObjectStoragePath):
        return location
    text = os.fspath(location)
    if "://" not in text:
        text = "file://" + os.path.abspath(os.path.expanduser(text))
    return ObjectStoragePath(text)


def read_blocks(path: ObjectStoragePath, size: int = BLOCK_SIZE) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(size):
            yield block


class LineTooLong(ValueError):
    """A line runs past the longest the reader accepts (a file without line feeds, say)."""


def read_lines(path: ObjectStoragePath, max_line: int, size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """The lines of an object, without their line feeds, read in large blocks from any object
    store. A line longer than ``max_line`` raises ``LineTooLong`` with
    its number, so a file without line feeds is never held whole."""
    tail = b""
    number = 0
    for block in read_blocks(path, size):
        lines = (tail + block if tail else block).split(b"\n")
        tail = lines.pop()
        yield from lines
        number += len(lines)
        if len(tail) > max_line:
            raise LineTooLong(f"line {number + 1} is longer than {max_line} bytes")
    if tail:
        yield tail


@contextmanager
def atomic_writer(path: ObjectStoragePath) -> Iterator[IO[bytes]]:
    """Open ``path`` for writing so that it appears complete or not at all.

    Local files are written beside the target, flushed to disk and renamed over it; object
    stores get an uncommitted upload (an S3 multipart upload, a GCS resumable session) that
    becomes visible only on commit and is discarded if anything fails. What a killed attempt
    leaves (a partial file, an S3 multipart upload of the same key) is replaced or aborted by the
    next one, so retries leave nothing that grows. Two writers of one target at once are not
    supported (no task does that).

    Airflow's hook-level lineage sees ``path`` as an output either way: object stores are
    written through ``ObjectStoragePath.open``, whose file reports each write; a local file is
    reported once it is in place, under its own name (its hidden partial file never is).
    """
    if path.protocol in LOCAL_PROTOCOLS:
        target = path.path
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        # One name per target: an attempt killed mid-write leaves its partial file behind, and
        # the next attempt writes over it instead of adding another.
        partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial")
        try:
            # The builtin open, not path.open: fsspec's uncommitted local file is a temporary
            # file elsewhere (a copy, not a rename, across file systems) whose commit resets the
            # permission bits; and path.open's lineage would name the partial file.
            with open(partial, "wb") as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        report_output(path)
        return

    _abort_stale_uploads(path)
    # Parts of 5 MiB: s3fs would otherwise buffer 50 MiB and copy it whole for each part.
    # ObjectStoragePath.open passes autocommit and block_size to the file system's open, and
    # its lineage wrapper passes commit() and discard() through to the file.
    file = path.open("wb", autocommit=False, block_size=PART_SIZE)
    try:
        yield file
        file.close()
        file.commit()
    except BaseException:
        file.discard()
        raise


def _abort_stale_uploads(path: ObjectStoragePath) -> None:
    """Abort the S3 multipart uploads of this very key that earlier, killed attempts left open
    (S3 keeps and bills their parts until aborted). GCS resumable sessions and Azure's
    uncommitted blocks expire on their own within a week."""
    if path.protocol not in ("s3", "s3a") or not hasattr(path.fs, "call_s3"):
        return
    bucket, key = path.bucket, path.key
    try:
        answer = path.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
    except Exception:  # listing may be forbidden; the write itself does not need it
        log.debug("Could not list the multipart uploads of %s", path, exc_info=True)
        return
    for upload in answer.get("Uploads", []):
        if upload.get("Key") == key:
            log.info("Aborting an unfinished multipart upload of %s left by an earlier attempt", path)
            path.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"])


def report_output(path: ObjectStoragePath) -> None:
    """Tell Airflow's hook-level lineage that ``path`` was written, as ``path.open`` would
    (a no-op unless a lineage reader, such as OpenLineage, is registered). Lineage never fails
    a write that is already in place."""
    try:
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

        get_hook_lineage_collector().add_output_asset(context=path, uri=str(path))
    except Exception:
        log.debug("Could not report %s to the hook lineage collector", path, exc_info=True)
