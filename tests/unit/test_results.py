"""Summaries of JSON Lines results, fed block by block."""

import json

import pytest

from airflow_provider_xcompliance.exceptions import InvalidResultsError
from airflow_provider_xcompliance.results import ResultsSummary

LINES = [
    {
        "id": "1265324480517361664",
        "action": "delete",
        "created_at": "2019-10-29T17:02:47.000Z",
        "redacted_at": "2020-07-29T17:02:47.000Z",
        "reason": "deleted",
    },
    {
        "id": "1265324480517361664",
        "action": "delete",
        "created_at": "2019-10-29T17:02:47+00:00",
        "reason": "deleted",
    },
    {"id": "20", "action": "scrub_geo", "reason": "scrub_geo"},
    {"id": "21", "action": "future_action", "reason": "a_new_reason"},
]


def test_summary_counts_in_any_block_cut():
    data = b"".join(json.dumps(line).encode() + b"\n" for line in LINES)
    for cut in (0, 1, 50, len(data) - 1, len(data)):
        summary = ResultsSummary("r")
        summary.feed(data[:cut])
        summary.feed(data[cut:])
        summary.finish()
        assert summary.as_dict() == {
            "lines": 4,
            "bytes": len(data),
            "by_action": {"delete": 2, "future_action": 1, "scrub_geo": 1},
            "by_reason": {"a_new_reason": 1, "deleted": 2, "scrub_geo": 1},
        }


def test_empty_results_mean_nothing_to_do():
    summary = ResultsSummary("r")
    summary.finish()
    assert summary.as_dict() == {"lines": 0, "bytes": 0, "by_action": {}, "by_reason": {}}


def test_bad_line_is_reported_with_its_number():
    summary = ResultsSummary("results of job 7")
    summary.feed(b'{"id": "1", "reason": "deleted"}\n\n{"id": "2"}\n<html>')
    with pytest.raises(InvalidResultsError, match=r"results of job 7, line 4: '<html>'"):
        summary.finish()
