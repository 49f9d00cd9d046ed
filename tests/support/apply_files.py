"""Data sets of JSON Lines and Parquet objects, results files, and the apply call the tests of
tests/unit/test_apply_files.py (real files) and tests/integration/test_apply_files_s3.py (a real
S3) make."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path

from airflow_provider_xcompliance.apply.files import apply_to_files
from airflow_provider_xcompliance.apply.rules import ChangeRules

KEY = b"audit-key-for-tests-0123456789ab"
DAY = "2020-01-01T10:00:00.000Z"
GEO = ("geo", "coordinates")

# Tweet IDs of the data set: 19 digits, as X's are.
T_DELETED = 1265324480517361601
T_SCRUBBED = 1265324480517361602
T_PROTECTED = 1265324480517361603
T_TWICE = 1265324480517361604  # flagged scrub_geo and deleted: delete wins
T_NO_GEO = 1265324480517361605  # flagged scrub_geo but has no geo data: nothing to change
T_PLAIN = 1265324480517361606
T_OTHER_DAY = 1265324480517361607
T_ABSENT = 1265324480517361699  # flagged but not in the data


def line(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def tweet(tweet_id: int, *, as_string: bool = True, author: int = 42, geo: bool = True, **extra) -> dict:
    record = {
        "id": str(tweet_id) if as_string else tweet_id,
        "text": f"tweet {tweet_id} é",
        "author_id": author,
    }
    if geo:
        record["geo"] = {"place_id": "01a9a39529b27f36"}
        record["coordinates"] = [-73.99, 40.73]
    return {**record, **extra}


def result(record_id: int, reason: str, created_at: str | None = DAY) -> dict:
    row = {"id": str(record_id), "action": "delete", "reason": reason}
    if created_at:
        row["created_at"] = created_at
    return row


def write_results(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(line(row) + b"\n" for row in rows))
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file under ``folder``: its bytes, inode, mtime_ns and permission bits."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            files[str(path.relative_to(folder))] = (
                path.read_bytes(),
                info.st_ino,
                info.st_mtime_ns,
                stat.S_IMODE(info.st_mode),
            )
    return files


def apply(results: Path, data: Path, **options):
    options.setdefault("geo_fields", GEO)
    options.setdefault("partition_template", "date={created_at:%Y-%m-%d}")
    options.setdefault("job_id", "1500000000000000001")
    options.setdefault("run_id", "manual__1")
    rules = options.pop("rules", ChangeRules("tweets", {"protected": "keep"}))
    return apply_to_files(results, rules, data, **options)


def audit_rows(folder: Path) -> tuple[bytes, list[dict]]:
    (audit_file,) = folder.iterdir()
    body = audit_file.read_bytes()
    return body, [json.loads(row) for row in body.splitlines()]


def hmac_of(record_id: int) -> str:
    return hmac.new(KEY, str(record_id).encode(), hashlib.sha256).hexdigest()


def write_parquet(path: Path, ids: list, rows_per_group: int, string_ids: bool = False) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    geo_type = pa.struct([("place_id", pa.string())])
    schema = pa.schema(
        [
            pa.field("id", pa.string() if string_ids else pa.int64()),
            pa.field("text", pa.string()),
            pa.field("author_id", pa.int64()),
            pa.field("geo", geo_type),
            pa.field("coordinates", pa.list_(pa.float64())),
        ],
        metadata={b"origin": b"test data set"},
    )
    table = pa.table(
        {
            "id": [str(i) for i in ids] if string_ids else ids,
            "text": [f"tweet {i}" for i in ids],
            "author_id": [i % 3 for i in ids],
            "geo": [{"place_id": f"p{i}"} for i in ids],
            "coordinates": [[1.0, float(i % 100)] for i in ids],
        },
        schema=schema,
    )
    pq.write_table(table, path, row_group_size=rows_per_group, compression="zstd")
