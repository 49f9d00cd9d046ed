"""The typed hand-off from download to apply, and the refusal of results of the other job type.

A users results file applied as tweets would delete the tweets whose IDs equal those user IDs
(tweet and user IDs of 2006-2010 overlap as numbers): it must be refused with nothing changed.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_xcompliance.apply.handoff import (
    ResultsToApply,
    check_results_job_type,
    results_to_apply,
)
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from airflow_provider_xcompliance.operators.apply import XComplianceApplyToFilesOperator


def test_a_summary_gives_path_job_and_type():
    summary = {"path": "s3://b/r.jsonl", "job_id": 17, "job_type": "users", "lines": 3}
    assert results_to_apply(summary, None, None) == ResultsToApply("s3://b/r.jsonl", "17", "users")
    assert results_to_apply(summary, None, "99").job_id == "99"  # the task's own job_id wins
    assert results_to_apply(None, "/r.jsonl", "5") == ResultsToApply("/r.jsonl", "5", None)


@pytest.mark.parametrize(
    ("results", "path", "message"),
    [
        (None, None, "one of them"),
        ({"path": "/a"}, "/b", "one of them"),
        ("/a.jsonl", None, "not str"),
        ({"job_id": "1"}, None, "a mapping with 'path'"),
    ],
)
def test_bad_hand_offs_are_refused(results, path, message):
    with pytest.raises(ApplyConfigError, match=message):
        results_to_apply(results, path, None)


def test_the_other_job_type_is_refused_naming_both():
    results = ResultsToApply("/r.jsonl", "17", "users")
    with pytest.raises(ApplyConfigError, match=r"/r\.jsonl of job 17 are users results .* applies tweets"):
        check_results_job_type(results, "tweets")
    check_results_job_type(results, "users")
    check_results_job_type(ResultsToApply("/r.jsonl"), "tweets")  # nothing known: nothing to refuse


def data_set(tmp_path):
    (tmp_path / "data").mkdir()
    records = [{"id": "10", "author_id": "1"}, {"id": "11", "author_id": "2"}]
    (tmp_path / "data" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "r.jsonl").write_text(
        json.dumps(
            {"id": "10", "action": "delete", "reason": "deleted", "created_at": "2024-01-01T00:00:00.000Z"}
        )
        + "\n"
    )
    return tmp_path / "data" / "t.jsonl"


def operator(tmp_path, results, job_type="tweets"):
    return XComplianceApplyToFilesOperator(
        task_id="apply",
        job_type=job_type,
        results=results,
        data_path=str(tmp_path / "data"),
        author_id_field="author_id" if job_type == "users" else None,
    )


def test_the_operator_refuses_users_results_as_tweets_and_changes_nothing(tmp_path):
    data = data_set(tmp_path)
    before = data.read_bytes()
    summary = {"path": str(tmp_path / "r.jsonl"), "job_id": "7", "job_type": "users"}
    with pytest.raises(ApplyConfigError, match="are users results .* applies tweets results"):
        operator(tmp_path, summary).execute({"run_id": "r"})
    assert data.read_bytes() == before


def test_the_operator_applies_a_summary_of_its_job_type(tmp_path):
    data = data_set(tmp_path)
    summary = {"path": str(tmp_path / "r.jsonl"), "job_id": "7", "job_type": "tweets"}
    report = operator(tmp_path, summary).execute({"run_id": "r"})
    assert [json.loads(line)["id"] for line in data.read_text().splitlines()] == ["11"]
    assert report["job_id"] == "7" and report["deleted"] == {"deleted": 1}


def test_the_operator_needs_results_or_a_path():
    with pytest.raises(ApplyConfigError, match="one of them"):
        XComplianceApplyToFilesOperator(task_id="apply", job_type="tweets", data_path="/data")
