"""XComplianceApplyOperator: one operator for every archive kind."""

from __future__ import annotations

import json

import pytest

from airflow_provider_xcompliance.archives import FileArchive, SqlArchive
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from airflow_provider_xcompliance.operators.apply import XComplianceApplyOperator


def test_a_file_archive_is_applied_as_a_data_set(tmp_path):
    (tmp_path / "data").mkdir()
    rows = [{"id": "1", "geo": {"p": 1}}, {"id": "2", "geo": {"p": 2}}, {"id": "3"}]
    (tmp_path / "data" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "action": "delete", "reason": r, "created_at": "2024-01-01T00:00:00.000Z"})
            + "\n"
            for i, r in (("1", "deleted"), ("2", "scrub_geo"))
        )
    )
    archive = FileArchive(data_path=str(tmp_path / "data"), geo_fields=("geo",))
    op = XComplianceApplyOperator(
        task_id="apply", job_type="tweets", archive=archive, results_path=str(tmp_path / "r.jsonl")
    )
    report = op.execute({"run_id": "r"})
    kept = [json.loads(line) for line in (tmp_path / "data" / "t.jsonl").read_text().splitlines()]
    assert kept == [{"id": "2", "geo": None}, {"id": "3"}]
    assert report["deleted"] == {"deleted": 1} and report["updated"] == {"scrub_geo": 1}


def test_the_sql_archive_gives_the_applier_its_tables():
    archive = SqlArchive(
        conn_id="db",
        table="tweets",
        author_id_column="author_id",
        edit_root_column="root",
        dependents={"media": "tweet_id"},
        geo_dependents={"places": "tweet_id"},
        user_dependents={"bios": "uid"},
        users_table="users",
    )
    tweets = [(c.table, c.column, c.change, c.through) for c in archive.target("tweets").changes("tweets")]
    assert tweets == [
        ("media", "tweet_id", "delete", None),
        ("places", "tweet_id", "delete", None),
        ("tweets", "id", "delete", None),
    ]
    users = [(c.table, c.column, c.through) for c in archive.target("users").changes("users")]
    assert users == [
        ("bios", "uid", None),
        ("media", "tweet_id", ("tweets", "id", "author_id")),
        ("places", "tweet_id", ("tweets", "id", "author_id")),
        ("tweets", "author_id", None),
        ("users", "id", None),
    ]


def test_edit_chains_of_data_sets_are_refused_until_supported():
    archive = FileArchive(data_path="/data", edit_history_field="edit_history_tweet_ids")
    with pytest.raises(ApplyConfigError, match="not supported yet"):
        XComplianceApplyOperator(task_id="apply", job_type="tweets", archive=archive, results_path="/r")


def test_the_archive_must_be_one():
    with pytest.raises(ApplyConfigError, match="SqlArchive or a FileArchive, not dict"):
        XComplianceApplyOperator(
            task_id="apply", job_type="tweets", archive={"table": "t"}, results_path="/r"
        )
