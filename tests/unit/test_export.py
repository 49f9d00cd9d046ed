"""Export of an archive's IDs (step 2) from SQLite tables and local JSONL / Parquet data sets.

The expected ID sets are computed here from the rows the test writes, never read back from the
code under test.
"""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_xcompliance.archives import FileArchive, SqlArchive
from airflow_provider_xcompliance.exceptions import ApplyConfigError, DataFormatError, InvalidIdError
from airflow_provider_xcompliance.export.files import export_file_ids
from airflow_provider_xcompliance.export.sql import export_sql_ids

# (id, author_id, edit_root_id): 101 and 102 are versions of the chain rooted at 100 (not stored)
TWEETS = [(101, 7, 100), (102, 7, 100), (200, 8, None), (300, 7, None), (9223372036854775807, 9, None)]
USERS = [7, 10, 11]


def ids_of(path) -> list[int]:
    text = path.read_text()
    assert text.endswith("\n") and "\n\n" not in text  # canonical: one ID per line
    return sorted(int(line) for line in text.splitlines())


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "archive.db")
    conn.execute("CREATE TABLE tweets (id INTEGER, author_id INTEGER, edit_root_id INTEGER, text TEXT)")
    conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.executemany("INSERT INTO tweets VALUES (?, ?, ?, 'x')", TWEETS)
    conn.executemany("INSERT INTO users VALUES (?, 'u')", [(u,) for u in USERS])
    conn.commit()
    yield conn
    conn.close()


ARCHIVE = SqlArchive(
    conn_id="archive_db",
    table="tweets",
    author_id_column="author_id",
    edit_root_column="edit_root_id",
    users_table="users",
)


def test_tweets_are_every_stored_version_and_each_chains_first_id(db, tmp_path):
    report = export_sql_ids(db, ARCHIVE, "tweets", tmp_path / "out" / "tweets.txt", batch_size=2)
    expected = sorted({t[0] for t in TWEETS} | {t[2] for t in TWEETS if t[2]})
    assert ids_of(tmp_path / "out" / "tweets.txt") == expected
    assert report["ids"] == len(expected) and report["job_type"] == "tweets"
    assert report["bytes"] == (tmp_path / "out" / "tweets.txt").stat().st_size
    assert report["archive"] == "archive_db:tweets"


def test_users_are_the_distinct_authors_and_the_users_table(db, tmp_path):
    export_sql_ids(db, ARCHIVE, "users", tmp_path / "users.txt")
    assert ids_of(tmp_path / "users.txt") == sorted({t[1] for t in TWEETS} | set(USERS))


def test_null_ids_are_no_ids(db, tmp_path):
    db.execute("INSERT INTO tweets VALUES (400, NULL, NULL, 'x')")
    export_sql_ids(db, ARCHIVE, "users", tmp_path / "users.txt")
    assert ids_of(tmp_path / "users.txt") == sorted({t[1] for t in TWEETS} | set(USERS))


@pytest.mark.parametrize("bad", ["12a", "-5", "9223372036854775808", "1.5"])
def test_a_stored_value_that_is_no_id_fails_with_its_row_and_nothing_is_written(db, tmp_path, bad):
    db.execute("UPDATE tweets SET id = ? WHERE id = 300", (bad if bad != "1.5" else 1.5,))
    (stored,) = db.execute(  # as the database writes it as text (a REAL for the too-large one)
        "SELECT CAST(id AS VARCHAR(32)) FROM tweets WHERE author_id = 7 AND edit_root_id IS NULL"
    ).fetchone()
    target = tmp_path / "tweets.txt"
    with pytest.raises(
        InvalidIdError, match=r"archive_db:tweets \(tweets\.id, tweets\.edit_root_id\), row"
    ) as e:
        export_sql_ids(db, ARCHIVE, "tweets", target)
    assert e.value.value == stored
    assert not target.exists() and list(tmp_path.iterdir()) == [tmp_path / "archive.db"]


def test_a_missing_column_is_named_before_anything_is_read(db, tmp_path):
    archive = SqlArchive(conn_id="archive_db", table="tweets", author_id_column="writer_id")
    with pytest.raises(ApplyConfigError, match=r"Table tweets has no column 'writer_id'"):
        export_sql_ids(db, archive, "users", tmp_path / "users.txt")
    assert not (tmp_path / "users.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": "tweets; DROP TABLE users"}, "table 'tweets; DROP TABLE users' is not a plain SQL name"),
        ({"table": "tweets", "geo_columns": ("lat", "lon)")}, "geo column 'lon\\)'"),
        ({"table": "tweets", "dependents": {"media": "tweet id"}}, "dependents column of media 'tweet id'"),
        ({"table": "tweets", "edit_root_column": "1root"}, "edit_root_column '1root'"),
    ],
)
def test_names_are_checked_when_the_archive_is_described(kwargs, message):
    with pytest.raises(ApplyConfigError, match=message):
        SqlArchive(conn_id="archive_db", **kwargs)


def test_an_archive_without_user_ids_cannot_export_a_users_job(db, tmp_path):
    with pytest.raises(ApplyConfigError, match="holds no user IDs"):
        export_sql_ids(db, SqlArchive(conn_id="db", table="tweets"), "users", tmp_path / "u.txt")


# --- data sets -------------------------------------------------------------------------------

RECORDS = [
    {"id": "101", "author_id": "7", "edit_history_tweet_ids": ["100", "101"], "text": "a"},
    {"id": "102", "author_id": "7", "edit_history_tweet_ids": ["100", "101", "102"]},
    {"id": 200, "author_id": 8},  # numbers, as some SDKs store them
    {"id": "300", "author_id": "7", "edit_history_tweet_ids": ["300"], "geo": {"place_id": "p"}},
]


def write_jsonl(folder, records, name="part-0.jsonl"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_jsonl_data_set_tweets_include_the_edit_history(tmp_path):
    write_jsonl(tmp_path / "data" / "date=2024-01-01", RECORDS[:2])
    write_jsonl(tmp_path / "data" / "date=2024-01-02", RECORDS[2:] + [{}])  # a record without IDs
    archive = FileArchive(data_path=str(tmp_path / "data"), edit_history_field="edit_history_tweet_ids")
    report = export_file_ids(archive, "tweets", tmp_path / "tweets.txt")
    stored = [int(r["id"]) for r in RECORDS] + [
        int(i) for r in RECORDS for i in r.get("edit_history_tweet_ids", ())
    ]
    assert ids_of(tmp_path / "tweets.txt") == sorted(stored)  # duplicates as stored: harmless to X
    assert report["ids"] == len(stored)


def test_jsonl_users_are_the_authors(tmp_path):
    write_jsonl(tmp_path / "data", RECORDS)
    archive = FileArchive(data_path=str(tmp_path / "data"), author_id_field="author_id")
    export_file_ids(archive, "users", tmp_path / "users.txt")
    assert ids_of(tmp_path / "users.txt") == sorted(int(r["author_id"]) for r in RECORDS)


def test_jsonl_bad_id_names_the_object_line_and_field(tmp_path):
    write_jsonl(tmp_path / "data", [RECORDS[0], {"id": "0123"}])
    archive = FileArchive(data_path=str(tmp_path / "data"))
    with pytest.raises(InvalidIdError, match=r"part-0\.jsonl, field 'id', line 2: '0123'.*leading zeros"):
        export_file_ids(archive, "tweets", tmp_path / "tweets.txt")
    assert not (tmp_path / "tweets.txt").exists()


def test_jsonl_broken_line_is_a_data_format_error(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.jsonl").write_text('{"id": "1"}\n{"id": \n')
    with pytest.raises(DataFormatError, match=r"x\.jsonl, line 2: not a JSON object"):
        export_file_ids(FileArchive(data_path=str(tmp_path / "data")), "tweets", tmp_path / "t.txt")


def test_parquet_reads_the_id_columns(tmp_path):
    (tmp_path / "data").mkdir()
    table = pa.table(
        {
            "id": pa.array([101, 102, 200], pa.int64()),
            "author_id": pa.array(["7", None, "8"]),
            "edit_history_tweet_ids": pa.array([["100", "101"], ["100", "101", "102"], None]),
            "text": ["a", "b", "c"],
        }
    )
    pq.write_table(table, tmp_path / "data" / "part.parquet", row_group_size=2)
    archive = FileArchive(
        data_path=str(tmp_path / "data"),
        format="parquet",
        author_id_field="author_id",
        edit_history_field="edit_history_tweet_ids",
    )
    export_file_ids(archive, "tweets", tmp_path / "tweets.txt")
    assert ids_of(tmp_path / "tweets.txt") == sorted([101, 102, 200, 100, 101, 100, 101, 102])
    export_file_ids(archive, "users", tmp_path / "users.txt")
    assert ids_of(tmp_path / "users.txt") == [7, 8]


def test_parquet_bad_value_names_its_row(tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"id": pa.array([5, 6, -7], pa.int64())}), tmp_path / "data" / "p.parquet")
    archive = FileArchive(data_path=str(tmp_path / "data"), format="parquet")
    with pytest.raises(InvalidIdError, match=r"p\.parquet, field 'id', line 3: '-7'"):
        export_file_ids(archive, "tweets", tmp_path / "t.txt")


def test_parquet_missing_column_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"tweet_id": [1]}), tmp_path / "data" / "p.parquet")
    with pytest.raises(DataFormatError, match=r"has no column 'id' \(it has: tweet_id\)"):
        export_file_ids(
            FileArchive(data_path=str(tmp_path / "data"), format="parquet"), "tweets", tmp_path / "t"
        )


def test_file_archive_checks_its_format():
    with pytest.raises(ApplyConfigError, match="format must be one of jsonl, parquet"):
        FileArchive(data_path="/data", format="csv")
